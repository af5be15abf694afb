//go:build bench

package bench

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sorted []int64
		p      float64
		want   int64
	}{
		{"empty is zero", nil, 50, 0},
		{"one value", []int64{7}, 99, 7},
		{"median of ten is the fifth", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5},
		{"p99 of a hundred is the 99th", seq(100), 99, 99},
		{"p100 is the largest", seq(100), 100, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %d, want %d", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

func TestRatioPairsEachSessionWithItsOwnDirect(t *testing.T) {
	r := &Results{Sessions: []Session{
		{Scale: 10, Round: 1, Contender: socklbName, Values: map[string]float64{latFirstP50: 110, latDirectP50: 100}},
		{Scale: 10, Round: 2, Contender: socklbName, Values: map[string]float64{latFirstP50: 240, latDirectP50: 200}},
		{Scale: 10, Round: 3, Contender: socklbName, Values: map[string]float64{latFirstP50: 100, latDirectP50: 100}},
		{Scale: 10, Round: 1, Contender: iptablesName, Values: map[string]float64{latFirstP50: 999, latDirectP50: 1}},
	}}
	for _, tc := range []struct {
		name      string
		key       string
		want      Spread
		wantFound bool
	}{
		{"latency over the same session's direct", latFirstP50, Spread{Median: 1.1, Min: 1.0, Max: 1.2, N: 3}, true},
		{"a direct figure has no ratio", latDirectP50, Spread{}, false},
		{"a figure nobody measured", tputVIP, Spread{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found := r.Ratio(10, socklbName, tc.key)
			if found != tc.wantFound || !closeSpread(got, tc.want) {
				t.Errorf("Ratio(%s) = %+v, %t; want %+v, %t", tc.key, got, found, tc.want, tc.wantFound)
			}
		})
	}
}

func closeSpread(a, b Spread) bool {
	near := func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 }
	return near(a.Median, b.Median) && near(a.Min, b.Min) && near(a.Max, b.Max) && a.N == b.N
}

func TestPropagationPoolsTheRounds(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	r := &Results{Sessions: []Session{
		{Scale: 1000, Round: 1, Contender: nftablesName, Propagation: ms(10, 30, 20)},
		{Scale: 1000, Round: 2, Contender: nftablesName, Propagation: ms(40, 50, 60)},
	}}
	p50, p99, rounds, n := r.Propagation(1000, nftablesName)
	if p50 != 30*time.Millisecond || p99 != 60*time.Millisecond || n != 6 || rounds.Min != 20 || rounds.Max != 50 {
		t.Errorf("Propagation = p50 %s, p99 %s, rounds %+v, %d changes; want 30ms, 60ms, 20–50, 6", p50, p99, rounds, n)
	}
}

func TestFormatNumber(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      float64
		digits int
		want   string
	}{
		{"small", 12, 0, "12"},
		{"thousands", 30000, 0, "30,000"},
		{"millions with decimals", 1234567.891, 2, "1,234,567.89"},
		{"negative", -4500, 0, "-4,500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatNumber(tc.v, tc.digits); got != tc.want {
				t.Errorf("formatNumber(%v, %d) = %q, want %q", tc.v, tc.digits, got, tc.want)
			}
		})
	}
}

func TestParseScales(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"quick", "10,1000", []int{10, 1000}, false},
		{"spaces", "10, 1000", []int{10, 1000}, false},
		{"not ascending", "1000,10", nil, true},
		{"not a number", "ten", nil, true},
		{"zero", "0", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseScales(tc.in)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("parseScales(%q) = %v, %v; want %v, error %t", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRotatedStartsEachRoundOneFurther(t *testing.T) {
	seen := map[string]bool{}
	for round := 1; round <= len(contenders); round++ {
		order := rotated(round)
		if len(order) != len(contenders) {
			t.Fatalf("round %d runs %v, want all of %v", round, order, contenders)
		}
		seen[order[0]] = true
	}
	if len(seen) != len(contenders) {
		t.Errorf("rounds 1..%d start with %v: some contender never goes first", len(contenders), seen)
	}
}

func TestKubeProxyRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		dump string
		want int
	}{
		{"empty", "", 0},
		{"the firewall chain kube-proxy --cleanup leaves", ":KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\n", 2},
		{"a Service chain", ":KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n", 2},
		{"the nftables table", "table ip kube-proxy {\n}\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kubeProxyRules(tc.dump); len(got) != tc.want {
				t.Errorf("kubeProxyRules found %q, want %d lines", got, tc.want)
			}
		})
	}
}

func TestAttachedNetPrograms(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want int
	}{
		{"nothing attached", "xdp:\n\ntc:\n\nflow_dissector:\n\nnetfilter:\n\n", 0},
		{"an XDP program", "xdp:\neth0(2) generic id 42\n\ntc:\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := attachedNetPrograms(tc.out); len(got) != tc.want {
				t.Errorf("attachedNetPrograms = %q, want %d entries", got, tc.want)
			}
		})
	}
}

func TestMarkdownSaysWhatIsMissingAndMissed(t *testing.T) {
	r := &Results{Sessions: []Session{
		{Scale: 1000, Round: 1, Contender: socklbName, Values: map[string]float64{
			latDirectP50: 100, latFirstP50: 120, latDirectP99: 200, latFirstP99: 200, tputDirect: 10, tputVIP: 10, rssMiB: 40, connect4Xlat: 1500,
		}},
		{Scale: 1000, Round: 1, Contender: iptablesName, Values: map[string]float64{rssMiB: 60}},
	}}
	var out bytes.Buffer
	if err := WriteMarkdown(&out, r, RunInfo{Command: "make bench-quick", Rounds: 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"make bench-quick",
		"| socklb new-connection latency ÷ direct ≤ 1.05, p50 and p99, every scale | worst 1.20× (first_p50 at 1,000 Services) | **no** |",
		"(at 1,000 Services; 10,000 not in this run)",
		"| connect4 ≤ 1.0 µs per translated call (at 1,000 Services; 10,000 not in this run) | 1500 ns | **no** |",
		"socklb 40 MiB, kube-proxy iptables 60 MiB | yes |",
		"sendmsg4 ≤ 0.5 µs per translated call (at 1,000 Services; 10,000 not in this run) | 0 ns | not measured |",
		"## 1,000 Services",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestColdStartCellSaysWhichRoundsRanOut(t *testing.T) {
	done := func(round int, cold float64) Session {
		return Session{Scale: 30000, Round: round, Contender: iptablesName, Values: map[string]float64{coldStart: cold}}
	}
	ranOut := func(round int) Session {
		return Session{Scale: 30000, Round: round, Contender: iptablesName, Values: map[string]float64{}, NotProgrammedAfter: 45 * time.Minute}
	}
	notRun := func(round int) Session {
		return Session{Scale: 30000, Round: round, Contender: iptablesName, Values: map[string]float64{}, NotRun: true}
	}
	for _, tc := range []struct {
		name     string
		sessions []Session
		want     string
	}{
		{"every round programmed", []Session{done(1, 10), done(2, 12)}, "11.00 (10.00–12.00)"},
		{"the only round ran out", []Session{ranOut(1)}, "not done after 45m0s in 1 of 1 rounds"},
		{"one of two rounds ran out", []Session{done(1, 2400), ranOut(2)}, "2,400.00; not done after 45m0s in 1 of 2 rounds"},
		{"the first round ran out and the second was not run", []Session{ranOut(1), notRun(2)}, "not done after 45m0s in 1 of 2 rounds; not run again in the other 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Results{Sessions: tc.sessions}
			if got := r.coldStartCell(30000, iptablesName); got != tc.want {
				t.Errorf("coldStartCell = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAgentProgramming(t *testing.T) {
	full := `{"msg":"synced","full":true,"programming_latency":0.9}`
	inc := func(seconds string) string {
		return `{"msg":"synced","full":false,"programming_latency":` + seconds + `}`
	}
	for _, tc := range []struct {
		name     string
		log      string
		p50, p99 float64
		found    bool
	}{
		{"no sync lines", "starting\n{\"msg\":\"source synced\"}", 0, 0, false},
		{"the full sync is the cold start, not a change", full, 0, 0, false},
		{"incremental syncs in milliseconds", strings.Join([]string{full, inc("0.001"), "not json", inc("0.002"), inc("0.010")}, "\n"), 2, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Session{Values: map[string]float64{}}
			agentProgramming(tc.log, &s)
			p50, ok := s.Values[agentProgP50]
			if ok != tc.found || p50 != tc.p50 || s.Values[agentProgP99] != tc.p99 {
				t.Errorf("agentProgramming = p50 %v, p99 %v (found %t); want %v, %v (%t)", p50, s.Values[agentProgP99], ok, tc.p50, tc.p99, tc.found)
			}
		})
	}
}

func TestChildPIDsFindsWhatAProcessStarted(t *testing.T) {
	sh := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Process.Kill(); sh.Wait() })
	var children []int
	for range 100 {
		var err error
		if children, err = childPIDs(sh.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if len(children) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(children) != 2 {
		t.Fatalf("childPIDs(sh) = %v, want its two sleeps", children)
	}
	for _, pid := range children {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestProcessCostCountsTheChildrenStillRunning(t *testing.T) {
	// A child that spins while its parent only waits, as iptables-restore
	// does under kube-proxy; bounded by its loop count and by the kill.
	sh := exec.Command("sh", "-c", `sh -c 'i=0; while [ $i -lt 5000000 ]; do i=$((i+1)); done' & wait`)
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Process.Kill(); sh.Wait() })
	var childCPU float64
	for range 500 {
		children, err := childPIDs(sh.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(children) == 1 {
			if childCPU, err = sandbox.ProcCPUSeconds(children[0]); err != nil {
				t.Fatal(err)
			}
			if childCPU >= 0.2 {
				t.Cleanup(func() { syscall.Kill(children[0], syscall.SIGKILL) })
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if childCPU < 0.2 {
		t.Fatalf("the spinning child used %.2f s of CPU in 5 s, want 0.2", childCPU)
	}
	_, cpu, err := processCost(sh.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu < childCPU {
		t.Errorf("processCost(parent) CPU = %.2f s, want at least the running child's %.2f s", cpu, childCPU)
	}
}
