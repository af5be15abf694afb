//go:build bench

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

// coldStartTimeout bounds the wait for a proxy to program everything:
// kube-proxy iptables took 100 s to 5 minutes for 10,000 Services on this
// machine, depending on its load.
const coldStartTimeout = 45 * time.Minute

// session runs one contender at one scale: start, cold start, the
// measurements, stop and cleanup.
func (h *harness) session(t *testing.T, name string, scale, round, changes int) Session {
	s := Session{Scale: scale, Round: round, Contender: name, Values: map[string]float64{}}
	if name == noProxy {
		h.measureTraffic(t, &s, false)
		return s
	}
	proxy := h.startProxy(t, name, scale, &s)
	// A proxy that has not programmed every Service has no traffic
	// figures; what it cost to get nowhere is still one, and the run goes
	// on with the next contender.
	if s.NotProgrammedAfter == 0 {
		h.measureTraffic(t, &s, true)
		if name == socklbName {
			h.measureBPFStats(t, &s)
		}
		s.Propagation = h.measurePropagation(t, name, changes)
	}
	rss, cpu, err := processCost(proxy.Pid())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s.Values[rssMiB], s.Values[cpuSeconds] = rss, cpu
	if proxy.Exited() {
		t.Fatalf("%s exited during the session: %v\n%s", name, proxy.Wait(), tail(proxy.Stderr(), 3000))
	}
	if s.NotProgrammedAfter > 0 {
		// Its iptables-restore or nft is still at work, and would
		// outlive it and commit rules after stopProxy's flush.
		children, err := childPIDs(proxy.Pid())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, pid := range children {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	h.stopProxy(t, name, proxy)
	keepLog(t, s, proxy)
	if name == socklbName {
		agentProgramming(proxy.Stdout()+proxy.Stderr(), &s)
	}
	return s
}

// childPIDs is the processes pid started that still run, from every
// thread's children list.
func childPIDs(pid int) ([]int, error) {
	lists, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(lists) == 0 {
		return nil, fmt.Errorf("listing the children of process %d: no /proc/%d/task/*/children", pid, pid)
	}
	var out []int
	for _, list := range lists {
		data, err := os.ReadFile(list)
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(f); err == nil {
				out = append(out, child)
			}
		}
	}
	return out, nil
}

// agentProgramming reads socklb's own programming latency of every
// incremental sync from its log, to tell its share of the change →
// datapath time from the API server's and the client's.
func agentProgramming(log string, s *Session) {
	var latencies []float64
	for _, line := range strings.Split(log, "\n") {
		var entry struct {
			Msg         string   `json:"msg"`
			Full        bool     `json:"full"`
			Programming *float64 `json:"programming_latency"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != "synced" || entry.Full || entry.Programming == nil {
			continue
		}
		latencies = append(latencies, *entry.Programming*1000)
	}
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	s.Values[agentProgP50], s.Values[agentProgP99] = percentile(latencies, 50), percentile(latencies, 99)
}

// keepLog writes the proxy's output to -bench.logs, named after the
// session: socklb's "synced" lines carry each sync's duration and
// programming latency, kube-proxy's its sync times.
func keepLog(t *testing.T, s Session, proxy *sandbox.Process) {
	if *logsFlag == "" {
		return
	}
	if err := os.MkdirAll(*logsFlag, 0o755); err != nil {
		t.Fatalf("creating %s: %v", *logsFlag, err)
	}
	name := fmt.Sprintf("%d-round%d-%s.log", s.Scale, s.Round, strings.ReplaceAll(s.Contender, " ", "-"))
	if err := os.WriteFile(filepath.Join(*logsFlag, name), []byte(proxy.Stdout()+proxy.Stderr()), 0o644); err != nil {
		t.Fatalf("keeping the log of %s: %v", s.Contender, err)
	}
}

// startProxy starts the contender inside the node namespace and returns
// once the last Service answers, recording the cold start, or after
// coldStartTimeout with s.NotProgrammedAfter set.
func (h *harness) startProxy(t *testing.T, name string, scale int, s *Session) *sandbox.Process {
	last := h.vips[scale-1] + ":80"
	// Before the proxy: a connect to an unprogrammed ClusterIP dies at
	// the node (no route), so each attempt waits out its short timeout.
	watch := h.c.Start(t, h.clients[0], true, h.sockprobe, "watch", "--addr", last,
		"--duration", coldStartTimeout.String(), "--max", "100000000", "--timeout", "25ms", "--interval", "1ms")
	defer watch.Kill()
	argv := h.proxyArgv(name)
	started := time.Now()
	proxy := h.c.Start(t, h.node.Host, false, argv...)
	changes := newChangeReader(watch)
	answered, err := changes.waitFor("", started.UnixNano(), coldStartTimeout, func(waited time.Duration) {
		progress("%s: waiting for %d Services to be programmed (%s)", name, scale, waited.Round(time.Second))
	})
	if errors.Is(err, errNotAnswered) {
		s.NotProgrammedAfter = coldStartTimeout
		progress("%s: svc-%d still not programmed after %s: stopping it", name, scale-1, coldStartTimeout)
		return proxy
	}
	if err != nil {
		t.Fatalf("%s never programmed svc-%d: %v\n%s", name, scale-1, err, tail(proxy.Stderr(), 3000))
	}
	s.Values[coldStart] = time.Duration(answered - started.UnixNano()).Seconds()
	progress("%s: cold start %.2f s for %d Services", name, s.Values[coldStart], scale)
	return proxy
}

func (h *harness) proxyArgv(name string) []string {
	switch name {
	case socklbName:
		// Generic XDP, as tests/cluster does: native XDP_TX on veth holds
		// frames until the next packet arrives.
		return []string{h.socklb, "agent", "--kubeconfig", h.kubeconfig, "--node-name", nodeName,
			"--cgroup", h.node.Cgroup, "--bpffs", h.node.PinDir, "--devices", "eth0", "--xdp-mode", "generic", "--log-level", "info"}
	case iptablesName, nftablesName:
		mode := map[string]string{iptablesName: "iptables", nftablesName: "nftables"}[name]
		return []string{h.kubeProxy, "--kubeconfig", h.kubeconfig, "--hostname-override", nodeName,
			"--proxy-mode", mode, "--cluster-cidr", clusterCIDR,
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
			// The conntrack limit is machine-wide: leave it and the
			// per-namespace timeouts as they are.
			"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
			"--nodeport-addresses", "primary"}
	}
	panic("unknown contender " + name)
}

// stopProxy stops the contender and removes everything it left in the node
// namespace, failing the run if something stays. kube-proxy's rules go with
// one flush of the namespace's nf_tables ruleset, which holds both its
// iptables-nft and its nftables rules: the node had no rules of its own, so
// this is what re-creating the namespace would do to netfilter, and it takes
// a second where kube-proxy --cleanup took over two minutes at 10,000
// Services on this machine.
func (h *harness) stopProxy(t *testing.T, name string, proxy *sandbox.Process) {
	proxy.Kill()
	ctx, cancel := boundedCtx(t, 5*time.Minute)
	defer cancel()
	node := h.node.Host
	var steps [][]string
	if name == socklbName {
		steps = append(steps, []string{h.socklb, "cleanup", "--bpffs", h.node.PinDir, "--cgroup", h.node.Cgroup})
	}
	steps = append(steps, []string{"nft", "flush", "ruleset"}, []string{"conntrack", "-F"})
	for _, argv := range steps {
		if out, err := h.c.Run(t, ctx, node, false, argv...); err != nil {
			t.Fatalf("%s: %v: %v\n%s", name, argv, err, out)
		}
	}
	// kube-proxy may turn route_localnet on (localhost NodePorts).
	if err := writeSysctl(node, "net/ipv4/conf/all/route_localnet", "0"); err != nil {
		t.Fatal(err)
	}
	if err := h.leftovers(t); err != nil {
		t.Fatalf("%s left something behind: %v", name, err)
	}
}

// leftovers reports kube-proxy rules or socklb pins and programs still in
// the node namespace or on its cgroup.
func (h *harness) leftovers(t *testing.T) error {
	ctx, cancel := boundedCtx(t, time.Minute)
	defer cancel()
	node := h.node.Host
	var found []string
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out, err := h.c.Run(t, ctx, node, false, argv...)
		if err != nil {
			return fmt.Errorf("%v: %w", argv, err)
		}
		if rules := kubeProxyRules(out); len(rules) > 0 {
			found = append(found, fmt.Sprintf("%v shows kube-proxy's rules:\n%s", argv, tail(strings.Join(rules, "\n"), 2000)))
		}
		if argv[0] == "nft" && strings.TrimSpace(out) != "" {
			found = append(found, "the nf_tables ruleset is not empty:\n"+tail(out, 2000))
		}
	}
	if _, err := os.Stat(h.node.PinDir); err == nil {
		found = append(found, "socklb's pin directory "+h.node.PinDir+" exists")
	}
	cg, err := h.c.Run(t, ctx, node, false, "bpftool", "cgroup", "show", h.node.Cgroup)
	if err != nil {
		return fmt.Errorf("bpftool cgroup show: %w", err)
	}
	if strings.TrimSpace(cg) != "" {
		found = append(found, "programs on the cgroup:\n"+cg)
	}
	net, err := h.c.Run(t, ctx, node, false, "bpftool", "net", "show")
	if err != nil {
		return fmt.Errorf("bpftool net show: %w", err)
	}
	if attached := attachedNetPrograms(net); len(attached) > 0 {
		found = append(found, "XDP or tc programs: "+strings.Join(attached, "; "))
	}
	if len(found) > 0 {
		return fmt.Errorf("%s", strings.Join(found, "\n"))
	}
	return nil
}

// kubeProxyRules are the lines of a ruleset dump naming kube-proxy's
// chains or tables.
func kubeProxyRules(dump string) []string {
	var rules []string
	for _, line := range strings.Split(dump, "\n") {
		if strings.Contains(line, "KUBE-") || strings.Contains(line, "kube-proxy") {
			rules = append(rules, line)
		}
	}
	return rules
}

// attachedNetPrograms are the entry lines of `bpftool net show`, whose
// section headers ("xdp:", "tc:", ...) are all it prints when nothing is
// attached.
func attachedNetPrograms(out string) []string {
	var entries []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasSuffix(line, ":") {
			continue
		}
		entries = append(entries, line)
	}
	return entries
}

// processCost is a process's resident memory (MiB) and CPU seconds: its
// own, its waited-for children's (kube-proxy's iptables-restore, nft) and
// those of the children still running. A kube-proxy stopped for not
// programming in time has not reaped its iptables-restore, whose CPU is
// then in no figure of the parent: at 30,000 Services, 45 minutes of it
// against kube-proxy's own 6.5 s. The memory is the process's own.
func processCost(pid int) (rss, cpu float64, err error) {
	if rss, err = sandbox.ProcStatusMiB(pid, "VmRSS"); err != nil {
		return 0, 0, fmt.Errorf("reading the proxy's RSS: %w", err)
	}
	if cpu, err = sandbox.ProcCPUSeconds(pid); err != nil {
		return 0, 0, fmt.Errorf("reading the proxy's CPU time: %w", err)
	}
	children, err := childPIDs(pid)
	if err != nil {
		return 0, 0, err
	}
	for _, child := range children {
		// One that ended since the list was read is in neither figure:
		// a few milliseconds lost, not the run.
		if c, err := sandbox.ProcCPUSeconds(child); err == nil {
			cpu += c
		}
	}
	return rss, cpu, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
