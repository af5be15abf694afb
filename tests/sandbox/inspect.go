package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/inspect"
)

// InspectServices runs `socklb inspect services -o json` on the sandbox's
// pin directory, the way an operator reads the datapath.
func (s *Sandbox) InspectServices(t testing.TB, socklb string) ([]inspect.ServiceView, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.Run(t, ctx, s.Node, false, socklb, "inspect", "services", "-o", "json", "--bpffs", s.PinDir)
	if err != nil {
		return nil, err
	}
	var views []inspect.ServiceView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		return nil, fmt.Errorf("decode inspect output: %w", err)
	}
	return views, nil
}

// BackendSet lists a frontend's backend addresses sorted, active ones first,
// then "|" and the terminating ones when there are any.
func BackendSet(v inspect.ServiceView) []string {
	var active, terminating []string
	for _, b := range v.Backends {
		if b.State == "active" {
			active = append(active, b.Address)
		} else {
			terminating = append(terminating, b.Address)
		}
	}
	slices.Sort(active)
	slices.Sort(terminating)
	if len(terminating) > 0 {
		return append(append(active, "|"), terminating...)
	}
	return active
}

// WaitFrontend waits until the maps show frontend ("10.96.0.50:80") with
// exactly the backends want (as BackendSet writes them) and returns it.
func (s *Sandbox) WaitFrontend(t testing.TB, socklb, frontend, proto string, want ...string) inspect.ServiceView {
	t.Helper()
	// Generous: after an API server outage client-go's informers back off
	// for up to 30 s before they list again.
	deadline := time.Now().Add(45 * time.Second)
	last := "no such frontend"
	for time.Now().Before(deadline) {
		views, err := s.InspectServices(t, socklb)
		if err != nil {
			last = err.Error()
		}
		for _, v := range views {
			if v.Frontend != frontend || v.Protocol != proto {
				continue
			}
			got := BackendSet(v)
			if slices.Equal(got, want) {
				return v
			}
			last = strings.Join(got, ",")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("frontend %s/%s never showed backends %v (last seen: %s)", frontend, proto, want, last)
	return inspect.ServiceView{}
}

// RequireAllOK fails the test on any failed probe and returns the number of
// answers per backend name.
func RequireAllOK(t testing.TB, rs []ProbeResult) map[string]int {
	t.Helper()
	for _, r := range rs {
		if !r.OK {
			t.Fatalf("probe %d failed: %s (%s)", r.I, r.Err, r.Errno)
		}
	}
	return Backends(rs)
}
