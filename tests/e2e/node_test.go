package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/sandbox"
)

const socklbPkg = "./cmd/socklb"

// node is one test's world: a sandbox with backend pods and a client pod, and
// a standalone agent attached to the sandbox's own cgroup and bpffs.
type node struct {
	sb       *sandbox.Sandbox
	socklb   string
	dir      string // the agent's --from-dir
	client   *sandbox.Host
	agent    *sandbox.Process
	agentLog []string
}

func newNode(t testing.TB) *node {
	t.Helper()
	sb := sandbox.New(t)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	n := &node{sb: sb, socklb: bins[socklbPkg], dir: t.TempDir()}
	n.client = sb.AddPod(t, "client")
	return n
}

// addPods starts a name server in each new pod on TCP 8080, 9090 and UDP 5353.
func (n *node) addPods(t testing.TB, names ...string) []*sandbox.Host {
	t.Helper()
	var pods []*sandbox.Host
	for _, name := range names {
		h := n.sb.AddPod(t, name)
		n.sb.StartNameServer(t, h, []int{8080, 9090}, []int{5353})
		pods = append(pods, h)
	}
	return pods
}

// write puts a file into the agent's directory atomically, as a deploy tool would.
func (n *node) write(t testing.TB, name, content string) {
	t.Helper()
	tmp := filepath.Join(n.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.dir, name)); err != nil {
		t.Fatal(err)
	}
}

func (n *node) startAgent(t testing.TB) {
	t.Helper()
	n.agent = n.sb.Start(t, n.sb.Node, false, n.socklb, "agent",
		"--from-dir", n.dir, "--cgroup", n.sb.Cgroup, "--bpffs", n.sb.PinDir,
		"--node-name", "test-node", "--log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", n.agent.Stderr())
		}
	})
}

// waitFrontend waits until the maps show frontend with exactly the backend
// addresses want (active ones, then terminating ones after a "|").
func (n *node) waitFrontend(t testing.TB, frontend, proto string, want ...string) inspect.ServiceView {
	t.Helper()
	return n.sb.WaitFrontend(t, n.socklb, frontend, proto, want...)
}

func (n *node) probe(t testing.TB, args ...string) []sandbox.ProbeResult {
	t.Helper()
	return n.sb.Probe(t, n.client, true, args...)
}

// endpoint is one endpoint of a hand-written EndpointSlice.
type endpoint struct {
	addr        string
	ready       bool
	serving     bool
	terminating bool
}

func ready(h *sandbox.Host) endpoint {
	return endpoint{addr: h.IPv4.String(), ready: true, serving: true}
}
func ready6(h *sandbox.Host) endpoint {
	return endpoint{addr: h.IPv6.String(), ready: true, serving: true}
}
func draining(h *sandbox.Host) endpoint {
	return endpoint{addr: h.IPv4.String(), serving: true, terminating: true}
}

// servicePort is one port of a Service and where its endpoints listen.
type servicePort struct {
	name       string
	port       int
	targetPort string // number or name
	protocol   string
	slicePort  int // the endpoint port the slice lists
}

func serviceYAML(name string, clusterIPs []string, ports ...servicePort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default}\nspec:\n  clusterIP: %s\n  clusterIPs: [%s]\n  selector: {app: %s}\n  ports:\n",
		name, clusterIPs[0], strings.Join(clusterIPs, ", "), name)
	for _, p := range ports {
		fmt.Fprintf(&b, "  - {name: %q, port: %d, targetPort: %s, protocol: %s}\n", p.name, p.port, p.targetPort, p.protocol)
	}
	return b.String()
}

func sliceYAML(service, sliceName, addressType string, ports []servicePort, eps ...endpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: %s\n  namespace: default\n  labels: {kubernetes.io/service-name: %s}\naddressType: %s\nports:\n",
		sliceName, service, addressType)
	for _, p := range ports {
		fmt.Fprintf(&b, "- {name: %q, port: %d, protocol: %s}\n", p.name, p.slicePort, p.protocol)
	}
	b.WriteString("endpoints:\n")
	if len(eps) == 0 {
		b.WriteString("[]\n")
	}
	for _, e := range eps {
		fmt.Fprintf(&b, "- addresses: [%q]\n  conditions: {ready: %t, serving: %t, terminating: %t}\n", e.addr, e.ready, e.serving, e.terminating)
	}
	return b.String()
}

var httpPort = servicePort{name: "http", port: 80, targetPort: "8080", protocol: "TCP", slicePort: 8080}

// writeWeb writes the Service most tests use, web at vip:80 -> 8080, with
// one EndpointSlice holding eps.
func (n *node) writeWeb(t testing.TB, eps ...endpoint) {
	t.Helper()
	n.write(t, "web.yaml", serviceYAML("web", []string{vip}, httpPort)+
		sliceYAML("web", "web-1", "IPv4", []servicePort{httpPort}, eps...))
}

func addrs(port int, hs ...*sandbox.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s:%d", h.IPv4, port))
	}
	slices.Sort(out)
	return out
}

func names(hs ...*sandbox.Host) map[string]bool {
	m := map[string]bool{}
	for _, h := range hs {
		m[h.Name] = true
	}
	return m
}

// refusedErrno is how connect() or sendmsg() to a frontend without endpoints
// fails: the hook sets ECONNREFUSED with bpf_set_retval, which cgroup
// programs have since Linux 5.18; before it a hook that refuses makes the
// call fail with EPERM (the agent probes for the helper and logs which).
func refusedErrno(t testing.TB) string {
	t.Helper()
	if sandbox.KernelAtLeast(t, "5.18") {
		return "ECONNREFUSED"
	}
	return "EPERM"
}

func requireAllOK(t testing.TB, rs []sandbox.ProbeResult) map[string]int {
	t.Helper()
	return sandbox.RequireAllOK(t, rs)
}

// requireLoopUnbroken waits for a sockprobe tcp-loop that ran across an agent
// restart, fails unless it made many connects and none failed, and returns
// its summary.
func requireLoopUnbroken(t testing.TB, loop *sandbox.Process) sandbox.LoopSummary {
	t.Helper()
	select {
	case <-loop.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("tcp-loop did not finish")
	}
	sum, err := sandbox.ParseLoopSummary(loop.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Attempts < 100 || sum.Failures != 0 {
		t.Errorf("connect loop across the restart: %d attempts, %d failures (first: %s); want many and none failed", sum.Attempts, sum.Failures, sum.FirstErr)
	}
	return sum
}
