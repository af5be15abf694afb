package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/probe"
)

// ProbeResult is one line of sockprobe tcp, udp or udp-connected.
type ProbeResult = probe.Result

// LoopSummary is the single line of sockprobe tcp-loop.
type LoopSummary = probe.Summary

// ProbeResults parses sockprobe's JSON lines.
func ProbeResults(out string) ([]ProbeResult, error) {
	var rs []ProbeResult
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var r ProbeResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return rs, fmt.Errorf("sockprobe line %q: %w", line, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// ParseLoopSummary parses the output of sockprobe tcp-loop.
func ParseLoopSummary(out string) (LoopSummary, error) {
	var s LoopSummary
	line := strings.TrimSpace(out)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		return s, fmt.Errorf("sockprobe summary %q: %w", out, err)
	}
	return s, nil
}

// Backends counts successful results by backend name.
func Backends(rs []ProbeResult) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.OK {
			m[r.Backend]++
		}
	}
	return m
}

// Probe runs sockprobe with args (e.g. "tcp", "--addr", "10.96.0.50:80",
// "--count", "10") on h (nil: the node), inside the sandbox cgroup when
// inCgroup, and returns its parsed lines. Any error running or parsing it
// fails the test. It is bounded by a 2-minute timeout.
func (s *Sandbox) Probe(t testing.TB, h *Host, inCgroup bool, args ...string) []ProbeResult {
	t.Helper()
	return runProbe(t, args, func(ctx context.Context, argv []string) (string, error) {
		return s.Run(t, ctx, h, inCgroup, argv...)
	})
}

// runProbe runs sockprobe args through run, bounded by 2 minutes, and
// parses its lines; any error fails the test.
func runProbe(t testing.TB, args []string, run func(ctx context.Context, argv []string) (string, error)) []ProbeResult {
	t.Helper()
	bin := Binaries(t, SockProbePkg)[SockProbePkg]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := run(ctx, append([]string{bin}, args...))
	if err != nil {
		t.Fatalf("sandbox: sockprobe %v: %v", args, err)
	}
	rs, err := ProbeResults(out)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	return rs
}
