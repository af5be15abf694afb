//go:build controlplane

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/sandbox"
)

// startKubeProxy runs kube-proxy in iptables mode in the node's network
// namespace, as its DaemonSet would on the node, and waits for its rules of
// the web Service. Conntrack sizes and timeouts are left alone: those
// sysctls are not all per namespace, and the machine's are not the test's.
func (m *migrationNode) startKubeProxy(t *testing.T) {
	t.Helper()
	m.kubeProxy = m.c.Start(t, m.node.Host, false, m.cp.KubeProxyPath,
		"--kubeconfig", m.kubeconfig, "--hostname-override", m.node.Host.Name, "--proxy-mode", "iptables",
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-proxy log:\n%s", m.kubeProxy.Stderr())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts := m.ruleCounts(t)
		if counts.clusterIP >= 0 && counts.nodePort >= 0 {
			return
		}
		if m.kubeProxy.Exited() || time.Now().After(deadline) {
			t.Fatalf("kube-proxy never wrote its rules for %s:80 and NodePort %d (exited: %v); nat table:\n%s",
				m.clusterIP, migrationNodePort, m.kubeProxy.Exited(), m.natTable(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopKubeProxy stops kube-proxy as deleting its DaemonSet does; its rules
// stay, as docs/migration.md says.
func (m *migrationNode) stopKubeProxy(t *testing.T) {
	t.Helper()
	m.kubeProxy.Kill()
	if counts := m.ruleCounts(t); counts.clusterIP < 0 || counts.nodePort < 0 {
		t.Fatalf("kube-proxy's rules went with the process; the migration guide says they stay until kube-proxy --cleanup:\n%s", m.natTable(t))
	}
}

// kubeProxyCleanup runs kube-proxy --cleanup on the node and checks that no
// rule of kube-proxy's is left but the filter table's KUBE-FIREWALL chain,
// which --cleanup leaves (it drops packets to 127.0.0.0/8 from elsewhere;
// kubelet used to make it too), as docs/migration.md says.
func (m *migrationNode) kubeProxyCleanup(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := m.c.Run(t, ctx, m.node.Host, false, m.cp.KubeProxyPath, "--cleanup"); err != nil {
		t.Fatalf("kube-proxy --cleanup: %v\n%s", err, out)
	}
	all, err := m.c.Run(t, ctx, m.node.Host, false, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, "KUBE-") && !strings.Contains(line, "KUBE-FIREWALL") {
			left = append(left, line)
		}
	}
	if len(left) > 0 {
		t.Fatalf("kube-proxy --cleanup left rules behind:\n%s\nall of iptables-save:\n%s", strings.Join(left, "\n"), all)
	}
}

// startSocklb runs the agent in cluster mode on the node and waits until
// its maps hold the Service's ClusterIP and NodePort frontends. Generic XDP
// for the reason tests/e2e/nodeport_test.go gives.
func (m *migrationNode) startSocklb(t *testing.T) {
	t.Helper()
	m.agent = m.c.Start(t, m.node.Host, false, m.socklb, "agent", "--kubeconfig", m.kubeconfig,
		"--node-name", m.node.Host.Name, "--cgroup", m.node.Cgroup, "--bpffs", m.node.PinDir,
		"--devices", "eth0", "--xdp-mode", "generic")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", m.agent.Stderr())
		}
	})
	want := []string{m.clusterIP + ":80", fmt.Sprintf("%s:%d", m.node.IPv4, migrationNodePort)}
	backend := fmt.Sprintf("%s:8080", m.web.IPv4)
	deadline := time.Now().Add(45 * time.Second)
	for {
		views, raw := m.inspect(t)
		found := 0
		for _, v := range views {
			if slices.Contains(want, v.Frontend) && v.Protocol == "TCP" && slices.Equal(sandbox.BackendSet(v), []string{backend}) {
				found++
			}
		}
		if found == len(want) {
			return
		}
		if m.agent.Exited() || time.Now().After(deadline) {
			t.Fatalf("the agent's maps never held %v with backend %s (exited: %v); last inspect:\n%s", want, backend, m.agent.Exited(), raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeSocklb stops the agent (its programs stay attached) and then runs
// socklb cleanup, the rollback's order.
func (m *migrationNode) removeSocklb(t *testing.T) {
	t.Helper()
	m.agent.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := m.c.Run(t, ctx, m.node.Host, false, m.socklb, "cleanup", "--bpffs", m.node.PinDir); err != nil {
		t.Fatalf("socklb cleanup: %v\n%s", err, out)
	}
}

func (m *migrationNode) inspect(t *testing.T) ([]inspect.ServiceView, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := m.c.Run(t, ctx, m.node.Host, false, m.socklb, "inspect", "services", "-o", "json", "--bpffs", m.node.PinDir)
	if err != nil {
		return nil, err.Error()
	}
	var views []inspect.ServiceView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		return nil, fmt.Sprintf("decode inspect output: %v: %s", err, out)
	}
	return views, out
}

// checkTranslator connects from the pod to the ClusterIP and from outside
// to the NodePort, three times each; every connect must reach web, and
// kube-proxy's rule counters must have counted them exactly when want says
// its rules translate.
func (m *migrationNode) checkTranslator(t *testing.T, step string, want translator) {
	t.Helper()
	before := m.ruleCounts(t)
	paths := []struct {
		name     string
		from     *sandbox.Host
		inCgroup bool
		addr     string
		count    func(ruleCounts) int64
	}{
		{"pod to ClusterIP", m.client, true, m.clusterIP + ":80", func(c ruleCounts) int64 { return c.clusterIP }},
		{"outside client to NodePort", m.c.Client, false, fmt.Sprintf("%s:%d", m.node.IPv4, migrationNodePort), func(c ruleCounts) int64 { return c.nodePort }},
	}
	for _, p := range paths {
		rs := m.c.Probe(t, p.from, p.inCgroup, "tcp", "--addr", p.addr, "--count", "3")
		if seen := sandbox.RequireAllOK(t, rs); seen[m.web.Name] != 3 {
			t.Errorf("step %q, %s: 3 connects reached %v, want web every time", step, p.name, seen)
		}
	}
	after := m.ruleCounts(t)
	for _, p := range paths {
		b, a := p.count(before), p.count(after)
		switch {
		case want == byKubeProxy && (a < 0 || a-b < 3):
			t.Errorf("step %q, %s: want %s to translate, but its rule counted %d of 3 connects (rule present: %v)", step, p.name, want, a-b, a >= 0)
		case want == bySocklb && a >= 0 && a != b:
			t.Errorf("step %q, %s: want %s to translate, but kube-proxy's rule counted %d of 3 connects", step, p.name, want, a-b)
		}
	}
}

// ruleCounts are the packet counters of kube-proxy's rules for the web
// Service: the ClusterIP's in KUBE-SERVICES and the NodePort's in
// KUBE-NODEPORTS, -1 for a rule that is not there. The nat table sees only
// a connection's first packet, so each counts connections.
type ruleCounts struct{ clusterIP, nodePort int64 }

func (m *migrationNode) ruleCounts(t *testing.T) ruleCounts {
	t.Helper()
	table := m.natTable(t)
	clusterIPRule := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A KUBE-SERVICES -d ` + regexp.QuoteMeta(m.clusterIP) + `/32 .*--dport 80 `)
	// Not the rule for NodePorts on 127.0.0.0/8 ("-d 127.0.0.0/8"), which
	// comes first.
	nodePortRule := regexp.MustCompile(`(?m)^\[(\d+):\d+\] -A KUBE-NODEPORTS -p tcp .*--dport ` + strconv.Itoa(migrationNodePort) + ` -j KUBE-EXT-`)
	count := func(re *regexp.Regexp) int64 {
		match := re.FindStringSubmatch(table)
		if match == nil {
			return -1
		}
		n, err := strconv.ParseInt(match[1], 10, 64)
		if err != nil {
			t.Fatalf("parsing the counter of %q: %v", match[0], err)
		}
		return n
	}
	return ruleCounts{clusterIP: count(clusterIPRule), nodePort: count(nodePortRule)}
}

// natTable is iptables-save's nat table with counters, in the node's
// namespace.
func (m *migrationNode) natTable(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := m.c.Run(t, ctx, m.node.Host, false, "iptables-save", "-c", "-t", "nat")
	if err != nil {
		t.Fatalf("iptables-save in %s: %v", m.node.Host.Name, err)
	}
	return out
}
