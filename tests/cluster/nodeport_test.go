//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

// clusterNodeNames are the Nodes of the two-node tests, made in TestMain;
// each test gives them their sandbox addresses.
var clusterNodeNames = []string{"node1", "node2"}

const (
	nodePort        = 30080
	healthCheckPort = 32000
)

// nsCluster is the north-south story in cluster mode: two sandbox nodes
// registered as Nodes node1 and node2 with their LAN addresses, one agent
// per node in the node's netns reaching the API server through a relay on
// the node's own 127.0.0.1, and one backend pod per node.
type nsCluster struct {
	*world // ns, client, kubectl: the namespace of the test
	c      *sandbox.Cluster
	agents []*sandbox.Process
	// pods[i] is the pod on node i+1; namesrv[i] its name server.
	pods    []*sandbox.Host
	namesrv []*sandbox.Process
}

func newNSCluster(t *testing.T) *nsCluster {
	t.Helper()
	if cpErr != nil {
		if sandbox.InCI() {
			t.Fatalf("control plane unavailable under CI=true: %v", cpErr)
		}
		t.Skipf("control plane unavailable: %v", cpErr)
	}
	c := sandbox.NewCluster(t, 2)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	w := &nsCluster{world: &world{client: cp.Client, socklb: bins[socklbPkg], ns: namespaceFor(t.Name())}, c: c}
	for _, n := range c.Nodes {
		w.registerNode(t, n)
	}
	w.createNamespace(t)
	kubeconfigs := t.TempDir()
	for _, n := range c.Nodes {
		w.startAgent(t, n, cp.RelayedKubeconfig(t, n.Host.Netns, filepath.Join(kubeconfigs, n.Host.Name+".kubeconfig")))
	}
	for _, n := range c.Nodes {
		pod := c.AddPod(t, n.Index, fmt.Sprintf("web-%c", 'a'+n.Index-1))
		w.namesrv = append(w.namesrv, c.StartNameServer(t, pod, []int{8080}, nil))
		w.pods = append(w.pods, pod)
		_, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
			Namespace: w.ns, Name: pod.Name, Labels: map[string]string{"app": "web"}, NodeName: n.Host.Name, IP: pod.IPv4.String(),
			ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// registerNode writes to the Node object of n (made in TestMain) the
// addresses a kubelet would report.
func (w *nsCluster) registerNode(t *testing.T, n *sandbox.ClusterNode) {
	t.Helper()
	if !slices.Contains(clusterNodeNames, n.Host.Name) {
		t.Fatalf("node %s is not one TestMain registered (%v)", n.Host.Name, clusterNodeNames)
	}
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
		{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
		{Type: corev1.NodeHostName, Address: n.Host.Name},
	}
	node, err := controlplane.EnsureNodeWithAddresses(t.Context(), w.client, n.Host.Name, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(node.Status.Addresses, addrs) {
		t.Fatalf("node %s has addresses %v, want %v", n.Host.Name, node.Status.Addresses, addrs)
	}
}

func (w *nsCluster) createNamespace(t *testing.T) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}
	if _, err := w.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", w.ns, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := controlplane.DeleteNamespace(ctx, w.client, w.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// startAgent runs socklb agent in cluster mode inside n's netns. Generic
// XDP for the reason tests/e2e/nodeport_test.go gives: native XDP_TX on
// veth holds frames until the next packet arrives.
func (w *nsCluster) startAgent(t *testing.T, n *sandbox.ClusterNode, kubeconfig string) {
	t.Helper()
	args := []string{w.socklb, "agent", "--kubeconfig", kubeconfig, "--node-name", n.Host.Name,
		"--cgroup", n.Cgroup, "--bpffs", n.PinDir, "--xdp-mode", "generic", "--log-level", "debug"}
	// node1 names its device; node2 leaves it to the default, the devices
	// carrying the addresses its Node object gives.
	if n.Index == 1 {
		args = append(args, "--devices", "eth0")
	}
	a := w.c.Start(t, n.Host, false, args...)
	w.agents = append(w.agents, a)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent on %s:\n%s", n.Host.Name, a.Stderr())
		}
	})
}

// views is `socklb inspect services -o json` on n's pin directory.
func (w *nsCluster) views(t *testing.T, n *sandbox.ClusterNode) ([]inspect.ServiceView, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := w.c.Run(t, ctx, n.Host, false, w.socklb, "inspect", "services", "-o", "json", "--bpffs", n.PinDir)
	if err != nil {
		return nil, fmt.Sprintf("%v: %s", err, out)
	}
	var views []inspect.ServiceView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		return nil, fmt.Sprintf("decode inspect output: %v: %s", err, out)
	}
	return views, out
}

// waitFrontends waits until n's maps hold every frontend of want with
// exactly its backends (as sandbox.BackendSet lists them, default scope).
func (w *nsCluster) waitFrontends(t *testing.T, n *sandbox.ClusterNode, want map[string][]string) []inspect.ServiceView {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		views, raw := w.views(t, n)
		missing := 0
		for frontend, backends := range want {
			i := slices.IndexFunc(views, func(v inspect.ServiceView) bool { return v.Frontend == frontend && v.Protocol == "TCP" })
			if i < 0 || !slices.Equal(sandbox.BackendSet(views[i]), backends) {
				missing++
			}
		}
		if missing == 0 {
			return views
		}
		last = raw
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s's maps never held %v; last inspect:\n%s", n.Host.Name, want, last)
	return nil
}

// waitSlice waits for the endpointslice controller's slice of web to list
// exactly want.
func (w *nsCluster) waitSlice(t *testing.T, want []string) {
	t.Helper()
	// As long as TestAPIServerOutage waits: after an outage the
	// controller-manager's informers may take that long to list again.
	deadline := time.Now().Add(90 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = w.sliceAddresses(t, "web"); slices.Equal(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the EndpointSlice of web lists %v, want %v\n%s", got, want, cp.LogTails(40))
}

// through probes count TCP connects from the outside client to addr.
func (w *nsCluster) through(t *testing.T, addr netip.AddrPort, count int, extra ...string) (map[string]int, int, []sandbox.ProbeResult) {
	t.Helper()
	args := append([]string{"tcp", "--addr", addr.String(), "--count", fmt.Sprint(count)}, extra...)
	rs := w.c.Probe(t, w.c.Client, false, args...)
	got, failed := map[string]int{}, 0
	for _, r := range rs {
		if r.OK {
			got[r.Backend]++
		} else if failed++; failed == 1 {
			got["error: "+r.Err]++
		}
	}
	return got, failed, rs
}

// health GETs the health check port of node from the outside client.
func (w *nsCluster) health(t *testing.T, n *sandbox.ClusterNode) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := "http://" + netip.AddrPortFrom(n.IPv4, healthCheckPort).String() + "/"
	out, err := w.c.Run(t, ctx, w.c.Client, false, "curl", "-s", "-w", "\n%{http_code}", "--max-time", "5", url)
	// The body is several lines of JSON; -w puts the code on the last one.
	out = strings.TrimSpace(out)
	body, code := "", out
	if i := strings.LastIndex(out, "\n"); i >= 0 {
		body, code = out[:i], out[i+1:]
	}
	if err != nil && code == "" {
		code = err.Error()
	}
	return strings.TrimSpace(code), body
}

// hostNetwork is what the test must leave alone in the machine's own
// network namespace: its links (with any XDP program), addresses and routes.
func hostNetwork(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list the machine's links: %v", err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		xdp := "none"
		if a.Xdp != nil && a.Xdp.Attached {
			xdp = fmt.Sprint(a.Xdp.ProgId)
		}
		out = append(out, fmt.Sprintf("link %d %s %s xdp=%s", a.Index, a.Name, a.Flags, xdp))
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list the machine's addresses: %v", err)
	}
	for _, a := range addrs {
		out = append(out, fmt.Sprintf("addr %d %s", a.LinkIndex, a.IPNet))
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("list the machine's routes: %v", err)
	}
	for _, r := range routes {
		out = append(out, fmt.Sprintf("route table=%d %s", r.Table, r))
	}
	slices.Sort(out)
	return out
}

func nodePortOf(n *sandbox.ClusterNode) netip.AddrPort { return netip.AddrPortFrom(n.IPv4, nodePort) }

// A NodePort Service made with kubectl, its pods on two nodes each running
// its own agent in cluster mode: node1:NodePort and node2:NodePort reach
// both pods from outside; as an externalTrafficPolicy: Local LoadBalancer
// each node answers with its own pod only, and the health check port says
// which node has one.
func TestNodePortAcrossNodes(t *testing.T) {
	before := hostNetwork(t)
	w := newNSCluster(t)
	node1, node2 := w.c.Nodes[0], w.c.Nodes[1]
	webA, webB := w.pods[0], w.pods[1]
	both := addrs(8080, webA, webB)

	w.kubectl(t, "create", "service", "nodeport", "web", "--tcp=80:8080", fmt.Sprintf("--node-port=%d", nodePort))
	w.waitSlice(t, both)
	vip := w.clusterIP(t, "web")
	for _, n := range w.c.Nodes {
		views := w.waitFrontends(t, n, map[string][]string{
			nodePortOf(n).String():                                    both,
			fmt.Sprintf("127.0.0.1:%d", nodePort):                     both,
			netip.AddrPortFrom(netip.MustParseAddr(vip), 80).String(): both,
		})
		for _, v := range views {
			if !strings.HasPrefix(v.Service, w.ns+"/") {
				continue
			}
			// An IPv4-only Service has no frontend on the node's IPv6
			// address, and no node serves another node's address.
			if strings.HasPrefix(v.Frontend, "[") || strings.HasPrefix(v.Frontend, "198.51.100.") && v.Frontend != nodePortOf(n).String() {
				t.Errorf("%s programs %s, which is not one of its IPv4 NodePort frontends", n.Host.Name, v.Frontend)
			}
		}
	}

	for _, n := range w.c.Nodes {
		t.Run("TCP through "+n.Host.Name+" reaches pods on both nodes", func(t *testing.T) {
			remote := 1 - (n.Index - 1) // the pod on the other node
			logged := len(w.namesrv[remote].Stderr())
			got, failed, rs := w.through(t, nodePortOf(n), 60)
			if failed > 0 || got[webA.Name] == 0 || got[webB.Name] == 0 {
				t.Errorf("60 connects through %s: %v, %d failed; want both pods and no failure", nodePortOf(n), got, failed)
			}
			// The other node's pod answers the node that SNATed the flow.
			if log := w.namesrv[remote].Stderr()[logged:]; !strings.Contains(log, "tcp peer="+n.IPv4.String()+":") {
				t.Errorf("%s never saw %s's address as its peer:\n%s", w.pods[remote].Name, n.Host.Name, log)
			}
			for _, r := range rs {
				if r.OK && r.Peer != nodePortOf(n).String() {
					t.Errorf("the client saw its peer as %s, want the NodePort %s", r.Peer, nodePortOf(n))
					break
				}
			}
		})
	}

	w.kubectl(t, "patch", "service", "web", "-p",
		fmt.Sprintf(`{"spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":%d}}`, healthCheckPort))
	w.waitFrontends(t, node1, map[string][]string{nodePortOf(node1).String(): addrs(8080, webA)})
	w.waitFrontends(t, node2, map[string][]string{nodePortOf(node2).String(): addrs(8080, webB)})

	t.Run("externalTrafficPolicy Local: each node answers with its own pod and keeps the client address", func(t *testing.T) {
		for i, n := range w.c.Nodes {
			pod := w.pods[i]
			logged := len(w.namesrv[i].Stderr())
			if got, failed, _ := w.through(t, nodePortOf(n), 20); failed > 0 || got[pod.Name] != 20 {
				t.Errorf("20 connects through %s: %v, %d failed; want all on %s, its only local pod", nodePortOf(n), got, failed, pod.Name)
			}
			if log := w.namesrv[i].Stderr()[logged:]; strings.Count(log, "tcp peer=198.51.100.100:") != 20 {
				t.Errorf("%s did not see the client's own address 198.51.100.100 as the peer of all 20 connections:\n%s", pod.Name, log)
			}
		}
	})

	if err := controlplane.SetPodReady(t.Context(), w.client, w.ns, webB.Name, false); err != nil {
		t.Fatal(err)
	}
	w.waitSlice(t, addrs(8080, webA))
	w.waitFrontends(t, node2, map[string][]string{nodePortOf(node2).String(): nil})

	t.Run("with node2's pod not ready only node1 answers", func(t *testing.T) {
		if got, failed, _ := w.through(t, nodePortOf(node1), 20); failed > 0 || got[webA.Name] != 20 {
			t.Errorf("20 connects through %s: %v, %d failed; want all on web-a", nodePortOf(node1), got, failed)
		}
		if got, failed, rs := w.through(t, nodePortOf(node2), 2, "--timeout", "1s"); len(rs) != 2 || failed != len(rs) {
			t.Errorf("node2 has no ready local endpoint, yet %s answered: %v", nodePortOf(node2), got)
		}
	})

	t.Run("health check port answers 200 on node1 and 503 on node2", func(t *testing.T) {
		for _, tc := range []struct {
			node      *sandbox.ClusterNode
			code      string
			endpoints string
		}{{node1, "200", `"localEndpoints": 1`}, {node2, "503", `"localEndpoints": 0`}} {
			code, body := w.health(t, tc.node)
			if code != tc.code || !strings.Contains(body, tc.endpoints) || !strings.Contains(body, w.ns) {
				t.Errorf("health check of web on %s: %s %q; want %s, %s and the Service's namespace %s", tc.node.Host.Name, code, body, tc.code, tc.endpoints, w.ns)
			}
		}
	})

	t.Run("an externalIP outside --external-ip-allow gets a Warning Event", func(t *testing.T) {
		// The agents run without --external-ip-allow: every externalIP is
		// refused (CVE-2020-8554), said on the Service itself.
		w.kubectl(t, "create", "service", "clusterip", "hijack", "--tcp=80:8080")
		w.kubectl(t, "patch", "service", "hijack", "-p", `{"spec":{"externalIPs":["203.0.113.9"]}}`)
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := w.kubectl(t, "get", "events", "--field-selector", "involvedObject.name=hijack,reason=ExternalIPRefused",
				"-o", "jsonpath={range .items[*]}{.type} {.source.host}: {.message}{\"\\n\"}{end}")
			if strings.Contains(out, "Warning") && strings.Contains(out, "203.0.113.9") {
				t.Logf("events:\n%s", out)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ExternalIPRefused Warning Event on Service hijack within 30s; events: %q", out)
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, n := range w.c.Nodes {
			views, _ := w.views(t, n)
			for _, v := range views {
				if strings.HasPrefix(v.Frontend, "203.0.113.9:") {
					t.Errorf("%s programmed the refused externalIP: %+v", n.Host.Name, v)
				}
			}
		}
	})

	t.Run("no iptables or nftables rule on any node", func(t *testing.T) {
		w.c.NoFirewallRules(t)
	})

	t.Run("the machine's own network is untouched", func(t *testing.T) {
		if after := hostNetwork(t); !slices.Equal(before, after) {
			t.Errorf("the machine's links, addresses or routes changed during the test:\nbefore:\n%s\nafter:\n%s",
				strings.Join(before, "\n"), strings.Join(after, "\n"))
		}
	})
}
