//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

var (
	scalesFlag   = flag.String("bench.scales", "10,1000,10000,30000", "Service counts, ascending, comma-separated")
	roundsFlag   = flag.Int("bench.rounds", 3, "rounds per scale; every contender runs once per round")
	connectsFlag = flag.Int("bench.connects", 2000, "new connections per latency target and round")
	changesFlag  = flag.Int("bench.changes", 50, "EndpointSlice changes per contender and scale, spread over the rounds")
	outFlag      = flag.String("bench.out", "", "directory for benchmarks.md and the plots (default: the repository's docs/)")
	commandFlag  = flag.String("bench.command", "make bench", "the command the report says reproduces it")
	noteFlag     = flag.String("bench.note", "", "a note for the report (say what else ran on the machine)")
	logsFlag     = flag.String("bench.logs", "", "directory to keep every proxy session's log in (default: not kept)")
)

// contenders in the order of round 1; later rounds rotate it.
var contenders = []string{noProxy, socklbName, iptablesName, nftablesName}

func progress(format string, args ...any) {
	fmt.Printf("[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func parseScales(s string) ([]int, error) {
	var scales []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("parsing -bench.scales %q: %q is not a positive count", s, f)
		}
		if len(scales) > 0 && n <= scales[len(scales)-1] {
			return nil, fmt.Errorf("parsing -bench.scales %q: counts must ascend", s)
		}
		scales = append(scales, n)
	}
	return scales, nil
}

// rotated is the contender order of round (1-based): each round starts one
// further along, so no contender always runs first or after the same one.
func rotated(round int) []string {
	k := (round - 1) % len(contenders)
	return append(append([]string(nil), contenders[k:]...), contenders[:k]...)
}

// TestCompareProxies is the whole benchmark: one control plane and one node
// for every contender, Services grown scale by scale, every contender
// measured once per round.
func TestCompareProxies(t *testing.T) {
	scales, err := parseScales(*scalesFlag)
	if err != nil {
		t.Fatal(err)
	}
	if *roundsFlag < 1 || *connectsFlag < 100 || *changesFlag < 1 {
		t.Fatalf("-bench.rounds %d, -bench.connects %d, -bench.changes %d: want at least 1, 100 and 1", *roundsFlag, *connectsFlag, *changesFlag)
	}
	sandbox.Require(t)
	started := time.Now()
	info := machineInfo(t)
	binDir, err := controlplane.Binaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	progress("starting the control plane")
	cp, err := controlplane.Start(t.Context(), controlplane.Options{BinDir: binDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	h := newHarness(t, cp)
	results := &Results{}
	stop := stopOnSignal(t)
	changesPerSession := (*changesFlag + *roundsFlag - 1) / *roundsFlag
run:
	for _, scale := range scales {
		if stop() {
			break
		}
		from := len(h.vips)
		took := h.growServices(t, scale)
		info.Notes = append(info.Notes, fmt.Sprintf("%s Services: writing %s more and their EndpointSlices (%d client-go writers at once) took %s; %s",
			formatNumber(float64(scale), 0), formatNumber(float64(scale-from), 0), serviceWriters, took.Round(time.Second), h.settle(t)))
		for round := 1; round <= *roundsFlag; round++ {
			for _, name := range rotated(round) {
				if stop() {
					info.Notes = append(info.Notes, fmt.Sprintf("Stopped by a signal before %s, round %d, at %d Services: the tables hold what was measured until then.", name, round, scale))
					break run
				}
				if n, after := results.NotProgrammed(scale, name); n > 0 {
					progress("scale %d, round %d/%d: %s not run: it had not programmed %d Services after %s in an earlier round", scale, round, *roundsFlag, name, scale, after)
					results.Sessions = append(results.Sessions, Session{Scale: scale, Round: round, Contender: name, Values: map[string]float64{}, NotRun: true})
					continue
				}
				progress("scale %d, round %d/%d: %s", scale, round, *roundsFlag, name)
				s := h.session(t, name, scale, round, changesPerSession)
				results.Sessions = append(results.Sessions, s)
				progress("scale %d, round %d/%d: %s done: %s", scale, round, *roundsFlag, name, summary(s))
			}
		}
	}
	info.Took = time.Since(started)
	writeReport(t, results, info)
	// The raw sessions, for a reader who wants other cuts of the run.
	if raw, err := json.Marshal(results.Sessions); err == nil {
		fmt.Printf("sessions: %s\n", raw)
	}
}

// stopOnSignal makes SIGINT and SIGTERM end the run after the current
// session: the report is still written, and every cleanup runs.
func stopOnSignal(t *testing.T) func() bool {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	t.Cleanup(func() { signal.Stop(signals) })
	stopping := false
	return func() bool {
		select {
		case sig := <-signals:
			progress("%s: stopping after this session, then writing the report", sig)
			stopping = true
		default:
		}
		return stopping
	}
}

func summary(s Session) string {
	var parts []string
	for _, k := range []string{coldStart, latDirectP50, latFirstP50, latLastP99, rateDirect, rateVIP, tputDirect, tputVIP, npDirect, npVIP, rssMiB, cpuSeconds, connect4Xlat, sendmsg4Xlat} {
		if v, ok := s.Values[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%.4g", k, v))
		}
	}
	if len(s.Propagation) > 0 {
		parts = append(parts, fmt.Sprintf("changes=%d", len(s.Propagation)))
	}
	return strings.Join(parts, " ")
}

func writeReport(t *testing.T, results *Results, info RunInfo) {
	dir := *outFlag
	if dir == "" {
		root, err := sandbox.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "docs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating %s: %v", dir, err)
	}
	plots, err := WritePlots(dir, results)
	if err != nil {
		t.Fatal(err)
	}
	info.Plots = plots
	var md bytes.Buffer
	if err := WriteMarkdown(&md, results, info); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(path, md.Bytes(), 0o644); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	progress("wrote %s and %v", path, plots)
	fmt.Print(md.String())
}

func machineInfo(t *testing.T) RunInfo {
	info := RunInfo{
		Command: *commandFlag, Started: time.Now(), Rounds: *roundsFlag, Cores: runtime.NumCPU(),
		Kernel: firstLine("/proc/sys/kernel/osrelease"), LoadBefore: firstLine("/proc/loadavg"),
		CPU: "unknown CPU",
	}
	if cpuinfo, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(cpuinfo), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				info.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	if meminfo, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(meminfo), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		info.MemoryGB = kb / (1 << 20)
	}
	if fields := strings.Fields(info.LoadBefore); len(fields) >= 3 {
		info.LoadBefore = strings.Join(fields[:3], " ")
	}
	if *noteFlag != "" {
		info.Notes = append(info.Notes, *noteFlag)
	}
	return info
}

func firstLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
}

// boundedCtx is ctx with a deadline, for one measurement step.
func boundedCtx(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
