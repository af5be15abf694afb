package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

// standaloneServices is the scale of the standalone benchmark: the
// hardening issue's 30,000 Services, each with one slice of three
// endpoints.
const (
	standaloneServices = 30000
	standaloneChanges  = 20
	// standaloneSyncPeriod brings the periodic full sync, whose peak the
	// benchmark reports, within the run.
	standaloneSyncPeriod = 15 * time.Second
)

// diagnoseFlag names a directory for what explains the figures, per
// layout, after the changes: the agent's heap profile, its mappings, Go's
// memory figures and the agent's log.
var (
	diagnoseFlag = flag.String("standalone.diagnose", "", "directory to save the agent's heap profile, mappings, Go memory figures and log in after the changes (default: none)")
	// coldCPUFlag is apart: symbolizing a profile reads much of the binary,
	// which the RSS figures then count.
	coldCPUFlag    = flag.Bool("standalone.cold-cpu-profile", false, "save the CPU profile of the cold start in the -standalone.diagnose directory (RSS figures then count the profiling)")
	changesCPUFlag = flag.Bool("standalone.changes-cpu-profile", false, "save the CPU profile of the first 8 s of changes in the -standalone.diagnose directory (RSS figures then count the profiling)")
)

// BenchmarkStandalone30000 runs the real agent on a directory of 30,000
// Services (one file per Service, and ten files of 3,000) with its maps
// in the sandbox's pin directory, and reports the cold start (the process
// started to the first full sync written), the agent's CPU seconds then
// and its RSS once that sync's garbage went back to the OS, the time from a one-file change to its sync, the RSS after
// 10 and after 20 changes and the CPU seconds they took, and the peak RSS
// (VmHWM) after the next periodic full sync. Figures, not
// assertions: the targets are a cold start within 3 s, a change within
// 1 s, and RSS flat across changes and at most 150 MiB.
func BenchmarkStandalone30000(b *testing.B) {
	for _, layout := range []struct {
		name  string
		files int
		// goMemLimit is the soft memory limit the agent gives the Go
		// runtime: none, or what it sets in a pod limited to 160Mi (90%).
		goMemLimit string
	}{
		{"one-file-per-service", standaloneServices, ""},
		{"ten-multi-document-files", 10, ""},
		{"ten-multi-document-files/pod-limit-160Mi", 10, "144MiB"},
	} {
		b.Run(layout.name, func(b *testing.B) {
			if layout.goMemLimit != "" {
				b.Setenv("GOMEMLIMIT", layout.goMemLimit) // the agent inherits it
			}
			for b.Loop() {
				n := newNode(b)
				files := writeStandaloneDir(b, n.dir, layout.files)
				fig := runStandalone(b, n, files)
				b.ReportMetric(fig.coldS, "cold-start-s")
				b.ReportMetric(fig.coldRSS, "rss-MiB-cold")
				b.ReportMetric(fig.coldCPU, "cpu-s-cold")
				b.ReportMetric(fig.changesCPU, "cpu-s-20-changes")
				b.ReportMetric(fig.changeP50, "change-p50-ms")
				b.ReportMetric(fig.changeMax, "change-max-ms")
				b.ReportMetric(fig.halfwayRSS, "rss-MiB-after-10")
				b.ReportMetric(fig.afterRSS, "rss-MiB-after-20")
				b.ReportMetric(fig.peakRSS, "peak-rss-MiB")
				b.ReportMetric(fig.resyncS, "resync-s")
				b.ReportMetric(fig.heapGoal, "heap-goal-MiB")
			}
		})
	}
}

type standaloneFigures struct {
	coldS, coldRSS, changeP50, changeMax, afterRSS, peakRSS, resyncS float64
	// halfwayRSS is the RSS after half the changes: beside afterRSS, it
	// says whether RSS stays flat once the heap has reached its target.
	halfwayRSS float64
	// coldCPU is the agent's CPU seconds up to its first sync, changesCPU
	// those the 20 changes took: what a lower collector target costs.
	coldCPU, changesCPU float64
	// heapGoal is the Go heap goal after the resync's collection, twice
	// the heap it found live: what the agent holds, without the
	// collector's headroom and the noise RSS has.
	heapGoal float64
}

// standaloneService is Service i and its slice, as ten or 30,000 files
// hold them.
func standaloneService(i int, clusterIP string) string {
	name := fmt.Sprintf("svc-%05d", i)
	ep := func(third int) endpoint {
		return endpoint{addr: fmt.Sprintf("10.%d.%d.%d", 200+third, i/250, i%250+1), ready: true, serving: true}
	}
	return serviceYAML(name, []string{clusterIP}, httpPort) + sliceYAML(name, name+"-1", "IPv4", []servicePort{httpPort}, ep(0), ep(1), ep(2))
}

func standaloneClusterIP(i int) string { return fmt.Sprintf("10.100.%d.%d", i/250, i%250+1) }

// writeStandaloneDir writes the Services into files files and returns
// each file's first Service, by file name.
func writeStandaloneDir(b *testing.B, dir string, files int) map[string]int {
	b.Helper()
	per := standaloneServices / files
	first := map[string]int{}
	for f := range files {
		var content strings.Builder
		for i := f * per; i < (f+1)*per; i++ {
			content.WriteString(standaloneService(i, standaloneClusterIP(i)))
			content.WriteString("---\n")
		}
		name := fmt.Sprintf("part-%05d.yaml", f)
		first[name] = f * per
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return first
}

func runStandalone(b *testing.B, n *node, files map[string]int) standaloneFigures {
	b.Helper()
	var fig standaloneFigures
	started := time.Now()
	n.agent = n.sb.Start(b, n.sb.Node, false, n.socklb, "agent",
		"--from-dir", n.dir, "--cgroup", n.sb.Cgroup, "--bpffs", n.sb.PinDir,
		"--node-name", "test-node", "--sync-period", standaloneSyncPeriod.String(),
		// A periodic sync that finds nothing to do logs at debug level.
		"--log-level", "debug", "--profiling")
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("agent log (tail):\n%s", lastLines(n.agent.Stderr(), 30))
		}
	})
	saveColdProfile := func() {}
	if *diagnoseFlag != "" && *coldCPUFlag {
		saveColdProfile = cpuProfile(b, n, "cold")
	}
	cold := n.waitSync(b, 0, 2*time.Minute, func(l syncLine) bool { return l.Full && l.Frontends == standaloneServices })
	fig.coldS = time.Since(started).Seconds()
	fig.coldCPU = procCPU(b, n.agent.Pid())
	saveColdProfile()
	// The first sync's garbage goes back to the OS beside the agent, just
	// after the sync line: the RSS is read once it has.
	if err := n.agent.WaitStderr(`"msg":"returned the first sync's garbage to the OS"`, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	fig.coldRSS = procMiB(b, n.agent.Pid(), "VmRSS")

	saveChangesProfile := func() {}
	if *diagnoseFlag != "" && *changesCPUFlag {
		saveChangesProfile = cpuProfile(b, n, "changes")
	}
	changesFrom := procCPU(b, n.agent.Pid())
	names := slices.Sorted(maps.Keys(files))
	var changes []float64
	seen := cold
	current := map[string]string{} // each changed file's first clusterIP
	for name, i := range files {
		current[name] = standaloneClusterIP(i)
	}
	for c := range standaloneChanges {
		name := names[c*len(names)/standaloneChanges]
		path := filepath.Join(n.dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		// The file's first Service moves to another clusterIP.
		ip := fmt.Sprintf("10.101.0.%d", c+1)
		next := strings.Replace(string(data), current[name], ip, 2)
		current[name] = ip
		at := time.Now()
		n.write(b, name, next)
		seen = n.waitSync(b, seen+1, 30*time.Second, func(l syncLine) bool { return !l.Full && l.ServicesChanged > 0 })
		changes = append(changes, float64(time.Since(at).Microseconds())/1000)
		if c+1 == standaloneChanges/2 {
			fig.halfwayRSS = procMiB(b, n.agent.Pid(), "VmRSS")
		}
	}
	fig.afterRSS = procMiB(b, n.agent.Pid(), "VmRSS")
	fig.changesCPU = procCPU(b, n.agent.Pid()) - changesFrom
	saveChangesProfile()
	if *diagnoseFlag != "" {
		base := filepath.Join(*diagnoseFlag, strings.ReplaceAll(b.Name(), "/", "_"))
		if err := os.WriteFile(base+".log", []byte(n.agent.Stderr()), 0o644); err != nil {
			b.Fatal(err)
		}
		saveHeapProfile(b, n, base+".heap")
	}
	slices.Sort(changes)
	fig.changeP50, fig.changeMax = changes[len(changes)/2], changes[len(changes)-1]

	resync := n.waitSync(b, seen+1, 2*standaloneSyncPeriod, func(l syncLine) bool { return l.Full })
	fig.resyncS = n.syncLines(b)[resync].Took
	fig.peakRSS = procMiB(b, n.agent.Pid(), "VmHWM")
	metrics := scrape(b, n, "http://"+loggedAddress(b, n.agent, "serving metrics")+"/metrics")
	fig.heapGoal = metrics.value(b, "go_memstats_next_gc_bytes", "") / (1 << 20)
	return fig
}

// cpuProfile starts the agent's CPU profile of the next 8 s and returns
// what saves it, named after the benchmark and what, in the
// -standalone.diagnose directory.
func cpuProfile(b *testing.B, n *node, what string) (save func()) {
	url := "http://" + loggedAddress(b, n.agent, "serving metrics") + "/debug/pprof/profile?seconds=8"
	profile := make(chan []byte, 1)
	go func() {
		_, body := get(b, n, url)
		profile <- []byte(body)
	}()
	return func() {
		path := filepath.Join(*diagnoseFlag, strings.ReplaceAll(b.Name(), "/", "_")+"."+what+".cpu")
		if err := os.WriteFile(path, <-profile, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// saveHeapProfile writes the agent's heap profile to path, after a
// collection so that it shows what is live.
func saveHeapProfile(b *testing.B, n *node, path string) {
	b.Helper()
	url := "http://" + loggedAddress(b, n.agent, "serving metrics") + "/debug/pprof/heap?gc=1"
	code, body := get(b, n, url)
	if code != 200 {
		b.Fatalf("GET %s = %d", url, code)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	// The mappings say what of the RSS is not Go heap.
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", n.agent.Pid()))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path+".smaps", smaps, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("heap profile in %s, mappings in %[1]s.smaps, Go's memory figures in %[1]s.memstats", path)
	// The Go runtime's own figures, in the log: a benchmark's log keeps
	// only its first lines.
	metrics := scrape(b, n, "http://"+loggedAddress(b, n.agent, "serving metrics")+"/metrics")
	var figures strings.Builder
	for _, name := range []string{"go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes"} {
		fmt.Fprintf(&figures, "%s %.1f MiB\n", name, metrics.value(b, name, "")/(1<<20))
	}
	if err := os.WriteFile(path+".memstats", []byte(figures.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// syncLine is what the benchmark reads of the agent's "synced" log line.
type syncLine struct {
	Msg             string  `json:"msg"`
	Full            bool    `json:"full"`
	Frontends       int     `json:"frontends"`
	ServicesChanged int     `json:"services_changed"`
	Took            float64 `json:"took"`
}

func (n *node) syncLines(b *testing.B) []syncLine {
	b.Helper()
	var out []syncLine
	for _, line := range strings.Split(n.agent.Stderr(), "\n") {
		var l syncLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "synced" {
			out = append(out, l)
		}
	}
	return out
}

// waitSync waits for a "synced" line from the from-th on that ok accepts
// and returns its index.
func (n *node) waitSync(b *testing.B, from int, timeout time.Duration, ok func(syncLine) bool) int {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		lines := n.syncLines(b)
		for i := from; i < len(lines); i++ {
			if ok(lines[i]) {
				return i
			}
		}
		if n.agent.Exited() {
			b.Fatalf("the agent exited:\n%s", lastLines(n.agent.Stderr(), 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("no sync line as wanted from the %d-th within %s", from, timeout)
	return 0
}

// procMiB reads a memory figure (VmRSS, VmHWM) of process pid in MiB.
func procCPU(b *testing.B, pid int) float64 {
	b.Helper()
	cpu, err := sandbox.ProcCPUSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

func procMiB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	mib, err := sandbox.ProcStatusMiB(pid, field)
	if err != nil {
		b.Fatal(err)
	}
	return mib
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
