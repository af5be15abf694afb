package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/probe"
	"github.com/socklb/socklb/tests/sandbox"
)

// nsWorld is two nodes, each with one backend pod and its own agent over
// the same objects, and an outside client on their LAN.
type nsWorld struct {
	c       *sandbox.Cluster
	socklb  string
	dir     string
	agents  []*sandbox.Process
	namesrv map[string]*sandbox.Process
	webA    *sandbox.Host // on node1
	webB    *sandbox.Host // on node2
	webC    *sandbox.Host // on node2, in no slice until a test adds it
}

const (
	lbIP         = "203.0.113.7"
	allowedExtIP = "203.0.113.8"
	refusedExtIP = "203.0.113.9"
)

func newNSWorld(t testing.TB) *nsWorld {
	t.Helper()
	c := sandbox.NewCluster(t, 2)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	w := &nsWorld{c: c, socklb: bins[socklbPkg], dir: t.TempDir(), namesrv: map[string]*sandbox.Process{}}
	w.webA = c.AddPod(t, 1, "web-a")
	w.webB = c.AddPod(t, 2, "web-b")
	// Made here, with the world's t: a pod removed at the end of a subtest
	// would take the cluster's processes with it.
	w.webC = c.AddPod(t, 2, "web-c")
	for _, h := range []*sandbox.Host{w.webA, w.webB, w.webC} {
		p := c.Start(t, h, false, bins[sandbox.NameSrvPkg], "--name", h.Name, "--log-peers",
			"--tcp", "[::]:8080", "--udp", "[::]:5353", "--echo", "[::]:7777")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("namesrv on %s: %v", h.Name, err)
		}
		w.namesrv[h.Name] = p
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", h.Name, p.Stderr())
			}
		})
	}
	c.RouteVia(t, netip.MustParsePrefix("203.0.113.0/24"), 1)
	w.writeObjects(t, w.webA, w.webB)
	// Generic XDP: on veth, native XDP_TX frames sat in the peer's queue
	// until the next packet kicked it (seen here on 6.18: a first SYN-ACK
	// from a remote backend left node1 only with the retransmission a
	// second later), which no real NIC does. The program is the same in
	// both modes; pkg/datapath's fixtures and tests/sandbox's XDP test
	// cover native mode.
	for _, n := range c.Nodes {
		a := c.Start(t, n.Host, false, w.socklb, "agent", "--from-dir", w.dir,
			"--cgroup", n.Cgroup, "--bpffs", n.PinDir, "--node-name", n.Host.Name,
			"--devices", "eth0", "--xdp-mode", "generic", "--external-ip-allow", allowedExtIP+"/32", "--log-level", "debug")
		w.agents = append(w.agents, a)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent on %s:\n%s", n.Host.Name, a.Stderr())
			}
		})
	}
	for _, n := range c.Nodes {
		w.waitFrontend(t, n, netip.AddrPortFrom(n.IPv4, 30080).String(), "TCP", 2)
	}
	return w
}

func endpointYAML(h *sandbox.Host, node string) string {
	return fmt.Sprintf("- addresses: [%q]\n  nodeName: %s\n  conditions: {ready: true}\n", h.IPv4, node)
}

func endpoint6YAML(h *sandbox.Host, node string) string {
	return fmt.Sprintf("- addresses: [%q]\n  nodeName: %s\n  conditions: {ready: true}\n", h.IPv6, node)
}

// writeObjects writes every Service of the world, web's slice holding webEps.
func (w *nsWorld) writeObjects(t testing.TB, webEps ...*sandbox.Host) {
	t.Helper()
	var eps, eps6 strings.Builder
	for _, h := range webEps {
		node := "node1"
		if strings.Contains(h.Netns, "node2") {
			node = "node2"
		}
		eps.WriteString(endpointYAML(h, node))
		eps6.WriteString(endpoint6YAML(h, node))
	}
	sliceOf := func(service, name, family, ports, endpoints string) string {
		return fmt.Sprintf("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: %s\n  namespace: default\n  labels: {kubernetes.io/service-name: %s}\naddressType: %s\nports:\n%sendpoints:\n%s",
			name, service, family, ports, endpoints)
	}
	slice := func(service, ports, endpoints string) string {
		return sliceOf(service, service+"-1", "IPv4", ports, endpoints)
	}
	webPorts := "- {name: http, port: 8080, protocol: TCP}\n- {name: dns, port: 5353, protocol: UDP}\n- {name: echo, port: 7777, protocol: TCP}\n"
	httpPorts := "- {name: http, port: 8080, protocol: TCP}\n"
	both := endpointYAML(w.webA, "node1") + endpointYAML(w.webB, "node2")
	objects := `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  clusterIPs: [10.96.0.50, "fd00:96::50"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30080}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP, nodePort: 30053}
  - {name: echo, port: 7777, targetPort: 7777, protocol: TCP, nodePort: 30077}
` + slice("web", webPorts, eps.String()) + sliceOf("web", "web-6", "IPv6", webPorts, eps6.String()) + `---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.51
  clusterIPs: [10.96.0.51]
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30081}
` + slice("local", httpPorts, endpointYAML(w.webA, "node1")) + `---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.52
  clusterIPs: [10.96.0.52]
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30082}
status:
  loadBalancer:
    ingress: [{ip: ` + lbIP + `}]
` + slice("lb", httpPorts, both) + `---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  clusterIP: 10.96.0.53
  clusterIPs: [10.96.0.53]
  externalIPs: [` + allowedExtIP + `, ` + refusedExtIP + `]
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
` + slice("ext", httpPorts, both) + `---
apiVersion: v1
kind: Service
metadata: {name: only-a, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.54
  clusterIPs: [10.96.0.54]
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30090}
` + slice("only-a", httpPorts, endpointYAML(w.webA, "node1")) + `---
apiVersion: v1
kind: Service
metadata: {name: only-b, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.55
  clusterIPs: [10.96.0.55]
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30091}
` + slice("only-b", httpPorts, endpointYAML(w.webB, "node2"))
	tmp := filepath.Join(w.dir, ".objects.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(objects), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, "objects.yaml")); err != nil {
		t.Fatal(err)
	}
}

// waitFrontend waits until node's maps hold frontend with n active backends.
func (w *nsWorld) waitFrontend(t testing.TB, n *sandbox.ClusterNode, frontend, proto string, backends int) inspect.ServiceView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := w.c.Run(t, ctx, n.Host, false, w.socklb, "inspect", "services", "-o", "json", "--bpffs", n.PinDir)
		cancel()
		last = out + fmt.Sprint(err)
		var views []inspect.ServiceView
		if err == nil && json.Unmarshal([]byte(out), &views) == nil {
			for _, v := range views {
				if v.Frontend == frontend && v.Protocol == proto && v.Active == backends {
					return v
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never held %s/%s with %d backends; last inspect: %s", n.Host.Name, frontend, proto, backends, last)
	return inspect.ServiceView{}
}

// probeFrom runs sockprobe on h (outside any cgroup unless inCgroup).
func (w *nsWorld) probeFrom(t testing.TB, h *sandbox.Host, inCgroup bool, args ...string) []sandbox.ProbeResult {
	t.Helper()
	return w.c.Probe(t, h, inCgroup, args...)
}

// backendCounts counts the answers by backend; the failures, if any, are
// counted under the first one's error, so that a failing case says why.
func backendCounts(rs []sandbox.ProbeResult) (map[string]int, int) {
	got, failed := map[string]int{}, 0
	for _, r := range rs {
		if r.OK {
			got[r.Backend]++
			continue
		}
		if failed == 0 {
			got["error: "+r.Err]++
		}
		failed++
	}
	return got, failed
}

func TestNodePortFromOutside(t *testing.T) {
	w := newNSWorld(t)
	client := w.c.Client
	node1, node2 := w.c.Nodes[0], w.c.Nodes[1]

	for _, n := range w.c.Nodes {
		t.Run("TCP through "+n.Host.Name+" reaches pods on both nodes", func(t *testing.T) {
			rs := w.probeFrom(t, client, false, "tcp", "--addr", netip.AddrPortFrom(n.IPv4, 30080).String(), "--count", "60")
			got, failed := backendCounts(rs)
			if failed > 0 || got["web-a"] == 0 || got["web-b"] == 0 {
				t.Errorf("60 connects through %s: %v, %d failed; want both pods and no failure", n.Host.Name, got, failed)
			}
			for _, r := range rs {
				if r.OK && r.Peer != netip.AddrPortFrom(n.IPv4, 30080).String() {
					t.Errorf("the client saw its peer as %s, want the NodePort it connected to", r.Peer)
					break
				}
			}
		})
		t.Run("UDP through "+n.Host.Name+" reaches pods on both nodes", func(t *testing.T) {
			seen := map[string]int{}
			for range 20 { // each run is a new socket, so a new flow
				rs := w.probeFrom(t, client, false, "udp", "--addr", netip.AddrPortFrom(n.IPv4, 30053).String(), "--count", "2")
				got, failed := backendCounts(rs)
				if failed > 0 || len(got) != 1 {
					t.Fatalf("one UDP socket through %s: %v, %d failed; want one backend for the flow", n.Host.Name, got, failed)
				}
				for b := range got {
					seen[b]++
				}
				if rs[0].From != netip.AddrPortFrom(n.IPv4, 30053).String() {
					t.Fatalf("the reply came from %s, want the NodePort %s", rs[0].From, netip.AddrPortFrom(n.IPv4, 30053))
				}
			}
			if seen["web-a"] == 0 || seen["web-b"] == 0 {
				t.Errorf("20 UDP flows through %s went to %v, want both pods", n.Host.Name, seen)
			}
		})
	}

	for _, n := range w.c.Nodes {
		t.Run("IPv6 through "+n.Host.Name, func(t *testing.T) {
			rs := w.probeFrom(t, client, false, "tcp", "--addr", netip.AddrPortFrom(n.IPv6, 30080).String(), "--count", "40")
			if got, failed := backendCounts(rs); failed > 0 || got["web-a"] == 0 || got["web-b"] == 0 {
				t.Errorf("40 IPv6 connects through %s: %v, %d failed; want both pods", n.Host.Name, got, failed)
			}
		})
	}

	t.Run("externalTrafficPolicy Local keeps the client address and stays local", func(t *testing.T) {
		rs := w.probeFrom(t, client, false, "tcp", "--addr", netip.AddrPortFrom(node1.IPv4, 30081).String(), "--count", "20")
		if got, failed := backendCounts(rs); failed > 0 || got["web-a"] != 20 {
			t.Errorf("20 connects to node1:30081: %v, %d failed; want all on web-a, node1's only endpoint", got, failed)
		}
		if log := w.namesrv[w.webA.Name].Stderr(); !strings.Contains(log, "tcp peer=198.51.100.100:") {
			t.Errorf("web-a never saw the client's own address 198.51.100.100 as its peer:\n%s", log)
		}
		rs = w.probeFrom(t, client, false, "tcp", "--addr", netip.AddrPortFrom(node2.IPv4, 30081).String(), "--count", "2", "--timeout", "1s")
		if got, failed := backendCounts(rs); failed != len(rs) {
			t.Errorf("node2 has no local endpoint of local, yet node2:30081 answered: %v", got)
		}
	})

	t.Run("health check port says which node has a local endpoint", func(t *testing.T) {
		for _, tc := range []struct {
			node *sandbox.ClusterNode
			want string
		}{{node1, "200"}, {node2, "503"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err := w.c.Run(t, ctx, client, false, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
				"http://"+netip.AddrPortFrom(tc.node.IPv4, 32000).String()+"/")
			cancel()
			if strings.TrimSpace(out) != tc.want {
				t.Errorf("health check of local on %s: %q (%v), want %s", tc.node.Host.Name, out, err, tc.want)
			}
		}
	})

	t.Run("LoadBalancer IP", func(t *testing.T) {
		rs := w.probeFrom(t, client, false, "tcp", "--addr", lbIP+":80", "--count", "20")
		if got, failed := backendCounts(rs); failed > 0 || got["web-a"]+got["web-b"] != 20 {
			t.Errorf("20 connects to the LoadBalancer IP: %v, %d failed", got, failed)
		}
	})

	t.Run("external IPs: the allowed one works, the other is refused", func(t *testing.T) {
		rs := w.probeFrom(t, client, false, "tcp", "--addr", allowedExtIP+":80", "--count", "10")
		if got, failed := backendCounts(rs); failed > 0 || got["web-a"]+got["web-b"] != 10 {
			t.Errorf("10 connects to the allowed external IP: %v, %d failed", got, failed)
		}
		rs = w.probeFrom(t, client, false, "tcp", "--addr", refusedExtIP+":80", "--count", "1", "--timeout", "1s")
		if got, failed := backendCounts(rs); failed != len(rs) {
			t.Errorf("the external IP outside --external-ip-allow answered: %v", got)
		}
		if log := w.agents[0].Stderr(); !strings.Contains(log, refusedExtIP) || !strings.Contains(log, "default/ext") {
			t.Errorf("no log line names Service default/ext and %s", refusedExtIP)
		}
	})

	t.Run("a long transfer keeps its backend while endpoints change", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := w.c.Run(t, ctx, client, false, sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg],
				"tcp-stream", "--addr", netip.AddrPortFrom(node1.IPv4, 30077).String(), "--duration", "3s", "--interval", "10ms")
			done <- result{out, err}
		}()
		time.Sleep(500 * time.Millisecond)
		w.writeObjects(t, w.webA, w.webB, w.webC) // three endpoints now
		w.waitFrontend(t, node1, netip.AddrPortFrom(node1.IPv4, 30077).String(), "TCP", 3)
		time.Sleep(300 * time.Millisecond)
		w.writeObjects(t, w.webA, w.webB)
		r := <-done
		var s probe.Stream
		if err := json.Unmarshal([]byte(r.out), &s); err != nil {
			t.Fatalf("tcp-stream: %v %v", r.out, r.err)
		}
		if s.Err != "" || s.Messages < 50 || !slices.Contains([]string{"web-a", "web-b"}, s.Backend) {
			t.Errorf("stream through node1:30077 while the slice changed twice: %+v; want many echoes from one pod and no error", s)
		}
	})

	t.Run("a node process reaches nodeIP:NodePort and 127.0.0.1:NodePort", func(t *testing.T) {
		for _, addr := range []string{netip.AddrPortFrom(node1.IPv4, 30080).String(), "127.0.0.1:30080"} {
			rs := w.probeFrom(t, node1.Host, true, "tcp", "--addr", addr, "--count", "20")
			if got, failed := backendCounts(rs); failed > 0 || got["web-a"]+got["web-b"] != 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, _ := w.c.Run(t, ctx, node1.Host, false, w.socklb, "inspect", "services", "--bpffs", node1.PinDir)
				cancel()
				t.Errorf("20 connects from node1 to %s: %v, %d failed; node1 holds:\n%s", addr, got, failed, out)
			}
		}
	})

	t.Run("inspect flows lists outside flows with their backend and SNAT", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := w.c.Run(t, ctx, node1.Host, false, w.socklb, "inspect", "flows", "-o", "json", "--bpffs", node1.PinDir)
		if err != nil {
			t.Fatal(err)
		}
		var flows []inspect.FlowView
		if err := json.Unmarshal([]byte(out), &flows); err != nil {
			t.Fatalf("inspect flows -o json: %v\n%s", err, out)
		}
		remote, local := 0, 0
		for _, f := range flows {
			if f.Frontend != netip.AddrPortFrom(node1.IPv4, 30080).String() || !strings.HasPrefix(f.Client, "198.51.100.100:") {
				continue
			}
			switch {
			case f.Backend == netip.AddrPortFrom(w.webB.IPv4, 8080).String() && strings.HasPrefix(f.SNAT, node1.IPv4.String()+":"):
				remote++
			case f.Backend == netip.AddrPortFrom(w.webA.IPv4, 8080).String() && f.SNAT == "":
				local++
			}
		}
		if remote == 0 || local == 0 {
			t.Errorf("node1's flows to %s:30080: %d to web-b with SNAT, %d to web-a without; want some of each:\n%s", node1.IPv4, remote, local, out)
		}
	})

	t.Run("no iptables or nftables rule on any node", func(t *testing.T) {
		w.c.NoFirewallRules(t)
	})
}
