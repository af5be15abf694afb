package e2e

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// The Service semantics beyond plain balancing, through the real hooks:
// session affinity, internalTrafficPolicy, topology hints, fail fast, SCTP.
// The agent runs as node "test-node".

const thisNode = "test-node"

// startAgentWith starts the standalone agent as startAgent does, with extra
// flags.
func (n *node) startAgentWith(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{n.socklb, "agent", "--from-dir", n.dir, "--cgroup", n.sb.Cgroup, "--bpffs", n.sb.PinDir,
		"--node-name", thisNode, "--log-level", "debug"}, extra...)
	n.agent = n.sb.Start(t, n.sb.Node, false, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", n.agent.Stderr())
		}
	})
}

// placed is an endpoint with its node, zone hints and node hints.
type placed struct {
	h                  *sandbox.Host
	node               string
	forZones, forNodes []string
}

func placedYAML(eps ...placed) string {
	var b strings.Builder
	for _, e := range eps {
		fmt.Fprintf(&b, "- addresses: [%q]\n  nodeName: %s\n  conditions: {ready: true, serving: true, terminating: false}\n", e.h.IPv4, e.node)
		if len(e.forZones)+len(e.forNodes) == 0 {
			continue
		}
		b.WriteString("  hints:\n")
		if len(e.forZones) > 0 {
			b.WriteString("    forZones:\n")
			for _, z := range e.forZones {
				fmt.Fprintf(&b, "    - {name: %s}\n", z)
			}
		}
		if len(e.forNodes) > 0 {
			b.WriteString("    forNodes:\n")
			for _, nn := range e.forNodes {
				fmt.Fprintf(&b, "    - {name: %s}\n", nn)
			}
		}
	}
	return b.String()
}

// writeService writes web (vip:80/TCP -> 8080 and vip:53/UDP -> 5353) with
// the spec lines extra and one slice of eps.
func (n *node) writeService(t testing.TB, extra string, eps ...placed) {
	t.Helper()
	endpoints := placedYAML(eps...)
	if endpoints == "" {
		endpoints = "[]\n"
	}
	n.write(t, "web.yaml", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: %s
  clusterIPs: [%s]
%s  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 5353, protocol: UDP}
endpoints:
%s`, vip, vip, extra, endpoints))
}

func affinitySpec(timeout int) string {
	return fmt.Sprintf("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: %d}}\n", timeout)
}

func onThisNode(hs ...*sandbox.Host) []placed {
	var out []placed
	for _, h := range hs {
		out = append(out, placed{h: h, node: thisNode})
	}
	return out
}

// oneBackend fails unless every probe succeeded at one backend, and names it.
func oneBackend(t testing.TB, what string, rs []sandbox.ProbeResult) string {
	t.Helper()
	seen := requireAllOK(t, rs)
	if len(seen) != 1 {
		t.Fatalf("%s reached %v, want one backend", what, seen)
	}
	for b := range seen {
		return b
	}
	return ""
}

// sessionAffinity ClientIP: every connect of one pod within the timeout
// reaches one backend, over TCP and over new UDP sockets; once the timeout
// has passed with no connect, the entry is replaced and the pick is free
// again; a backend that leaves the set is replaced at once.
func TestSessionAffinity(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c", "pod-d")
	const timeout = 1 // second
	n.writeService(t, affinitySpec(timeout), onThisNode(pods...)...)
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	t.Run("within the timeout: 40 connects, one backend", func(t *testing.T) {
		oneBackend(t, "40 TCP connects", n.probe(t, "tcp", "--addr", vip+":80", "--count", "40", "--interval", "10ms"))
	})
	t.Run("within the timeout: UDP sockets stick too", func(t *testing.T) {
		first := ""
		for i := range 6 {
			b := oneBackend(t, "one UDP socket", n.probe(t, "udp", "--addr", vip+":53", "--count", "2"))
			if i == 0 {
				first = b
			} else if b != first {
				t.Fatalf("UDP socket %d reached %s, the first %s: want every socket of the pod on one backend", i, b, first)
			}
		}
	})
	t.Run("a UDP socket that keeps sending keeps the pod's entry fresh", func(t *testing.T) {
		for round := range 3 {
			time.Sleep(timeout*time.Second + 300*time.Millisecond)
			// 1.6 s of datagrams, longer than the timeout, every 400 ms.
			first := oneBackend(t, "a sending UDP socket", n.probe(t, "udp", "--addr", vip+":53", "--count", "5", "--interval", "400ms"))
			if next := oneBackend(t, "a new UDP socket", n.probe(t, "udp", "--addr", vip+":53", "--count", "1")); next != first {
				t.Fatalf("round %d: a new socket reached %s right after the sending one's %s: its datagrams did not keep the entry", round, next, first)
			}
		}
	})
	t.Run("after the timeout the pick is free again", func(t *testing.T) {
		seen := map[string]int{}
		for range 8 {
			time.Sleep(timeout*time.Second + 300*time.Millisecond)
			seen[oneBackend(t, "3 connects", n.probe(t, "tcp", "--addr", vip+":80", "--count", "3"))]++
		}
		// Eight free picks among four backends all alike: (1/4)^7, 6e-5.
		if len(seen) < 2 {
			t.Errorf("8 rounds, each after the timeout, all reached %v: the affinity never expired", seen)
		}
	})
	t.Run("a backend that leaves the set is replaced", func(t *testing.T) {
		stuck := oneBackend(t, "10 connects", n.probe(t, "tcp", "--addr", vip+":80", "--count", "10"))
		var rest []*sandbox.Host
		for _, p := range pods {
			if p.Name != stuck {
				rest = append(rest, p)
			}
		}
		n.writeService(t, affinitySpec(timeout), onThisNode(rest...)...)
		n.waitFrontend(t, vip+":80", "TCP", addrs(8080, rest...)...)
		now := oneBackend(t, "10 connects after the removal", n.probe(t, "tcp", "--addr", vip+":80", "--count", "10"))
		if now == stuck {
			t.Errorf("connects still reached %s after it left the set", stuck)
		}
		n.writeService(t, affinitySpec(timeout), onThisNode(pods...)...)
		n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	})
}

// Two pods are two clients: each sticks to its own backend, under its own
// network namespace's entry.
func TestSessionAffinityPerPod(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c")
	other := n.sb.AddPod(t, "client-2")
	n.writeService(t, affinitySpec(600), onThisNode(pods...)...)
	n.startAgent(t)
	view := n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	for _, c := range []*sandbox.Host{n.client, other} {
		oneBackend(t, "20 connects from "+c.Name, n.sb.Probe(t, c, true, "tcp", "--addr", vip+":80", "--count", "20"))
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(n.sb.PinDir, lbmap.AffinityMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cookies := map[uint64]uint32{}
	var k lbmap.AffinityKey
	var v lbmap.AffinityValue
	for it := m.Iterate(); it.Next(&k, &v); {
		if k.ServiceId == view.ServiceID {
			cookies[k.NetnsCookie] = v.BackendId
		}
	}
	if len(cookies) != 2 || slices.Contains(slices.Collect(maps.Keys(cookies)), 0) {
		t.Errorf("affinity entries of the frontend by netns cookie: %v, want one for each of the two pods", cookies)
	}
}

// A Service without affinity keeps its per-connection pick: the flag alone
// turns the affinity lookup on.
func TestNoAffinityWithoutTheFlag(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeService(t, "", onThisNode(pods...)...)
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "40")); len(seen) != 2 {
		t.Errorf("40 connects without affinity reached %v, want both pods", seen)
	}
}

// internalTrafficPolicy Local: only this node's endpoints; with none, a
// connect is refused at once.
func TestInternalTrafficPolicyLocal(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	local, remote := placed{h: pods[0], node: thisNode}, placed{h: pods[1], node: "other-node"}
	n.writeService(t, "  internalTrafficPolicy: Local\n", local, remote)
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[0])...)

	t.Run("a local endpoint: only it", func(t *testing.T) {
		if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "30")); seen["pod-a"] != 30 {
			t.Errorf("30 connects reached %v, want all at the local pod-a", seen)
		}
	})
	t.Run("no local endpoint: refused at once, TCP and UDP", func(t *testing.T) {
		n.writeService(t, "  internalTrafficPolicy: Local\n", remote)
		n.waitFrontend(t, vip+":80", "TCP")
		requireRefused(t, n, "tcp", vip+":80")
		requireRefused(t, n, "udp", vip+":53")
	})
	t.Run("Cluster again: every endpoint", func(t *testing.T) {
		n.writeService(t, "", local, remote)
		n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
		if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "40")); len(seen) != 2 {
			t.Errorf("40 connects reached %v, want both pods", seen)
		}
	})
}

// requireRefused fails unless one probe of mode to addr fails with
// the refusal errno (refusedErrno: ECONNREFUSED from 5.18) within half a second.
func requireRefused(t testing.TB, n *node, mode, addr string) {
	t.Helper()
	rs := n.probe(t, mode, "--addr", addr, "--count", "1", "--timeout", "3s")
	if want := refusedErrno(t); len(rs) != 1 || rs[0].OK || rs[0].Errno != want {
		t.Fatalf("%s to %s: %+v, want %s", mode, addr, rs, want)
	}
	if rs[0].DurUS > 500_000 {
		t.Errorf("%s to %s: refused after %d µs, want at once", mode, addr, rs[0].DurUS)
	}
}

// Topology: the hints for this node's zone (--zone) and node are followed,
// and every endpoint is used when they do not allow it.
func TestTopologyHints(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c")
	a, b, c := pods[0], pods[1], pods[2]
	n.writeService(t, "")
	n.startAgentWith(t, "--zone", "zone-a")
	cases := []struct {
		name string
		eps  []placed
		want []*sandbox.Host
	}{
		{"PreferSameZone: the zone's endpoints", []placed{
			{h: a, node: "n-a", forZones: []string{"zone-a"}},
			{h: b, node: "n-b", forZones: []string{"zone-a"}},
			{h: c, node: "n-c", forZones: []string{"zone-b"}}}, []*sandbox.Host{a, b}},
		{"fallback: an endpoint without a hint", []placed{
			{h: a, node: "n-a", forZones: []string{"zone-a"}},
			{h: b, node: "n-b"},
			{h: c, node: "n-c", forZones: []string{"zone-b"}}}, []*sandbox.Host{a, b, c}},
		{"fallback: no endpoint for this zone", []placed{
			{h: b, node: "n-b", forZones: []string{"zone-b"}},
			{h: c, node: "n-c", forZones: []string{"zone-c"}}}, []*sandbox.Host{b, c}},
		{"PreferSameNode: this node's endpoint", []placed{
			{h: a, node: thisNode, forZones: []string{"zone-a"}, forNodes: []string{thisNode}},
			{h: b, node: "n-b", forZones: []string{"zone-a"}, forNodes: []string{"n-b"}},
			{h: c, node: "n-c", forZones: []string{"zone-b"}, forNodes: []string{"n-c"}}}, []*sandbox.Host{a}},
		{"PreferSameNode without an endpoint here: the zone hints", []placed{
			{h: b, node: "n-b", forZones: []string{"zone-a"}, forNodes: []string{"n-b"}},
			{h: c, node: "n-c", forZones: []string{"zone-b"}, forNodes: []string{"n-c"}}}, []*sandbox.Host{b}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n.writeService(t, "", tc.eps...)
			n.waitFrontend(t, vip+":80", "TCP", addrs(8080, tc.want...)...)
			seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", fmt.Sprint(20*len(tc.want))))
			if got, want := slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(names(tc.want...))); !slices.Equal(got, want) {
				t.Errorf("connects reached %v, want exactly %v", seen, want)
			}
		})
	}
}

// Fail fast: a ClusterIP on a port or protocol it does not serve, and an
// address of a --service-cidr that no Service holds, are refused at once,
// over TCP and UDP; a served port still works, an address outside the
// CIDRs is left alone.
func TestFailFast(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.writeService(t, "", onThisNode(pods...)...)
	n.startAgentWith(t, "--service-cidr", "10.96.0.0/16,fd00:96::/112", "--service-cidr", "10.100.0.0/24")
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	refused := []struct{ name, mode, addr string }{
		{"TCP to a port the ClusterIP does not serve", "tcp", vip + ":81"},
		{"UDP to a port the ClusterIP does not serve", "udp", vip + ":54"},
		{"UDP to the TCP port", "udp", vip + ":80"},
		{"TCP to the UDP port", "tcp", vip + ":53"},
		{"TCP to an unallocated address", "tcp", "10.96.0.77:80"},
		{"UDP to an unallocated address", "udp", "10.96.0.77:53"},
		{"TCP to an unallocated address of the second flag", "tcp", "10.100.0.9:443"},
		{"TCP to an unallocated IPv6 address", "tcp", "[fd00:96::77]:80"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) { requireRefused(t, n, tc.mode, tc.addr) })
	}
	t.Run("the served ports still work", func(t *testing.T) {
		requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "5"))
		requireAllOK(t, n.probe(t, "udp", "--addr", vip+":53", "--count", "2"))
	})
	t.Run("outside the Service CIDRs nothing is refused", func(t *testing.T) {
		rs := n.probe(t, "tcp", "--addr", "10.97.0.1:80", "--count", "1", "--timeout", "1s")
		if len(rs) != 1 || rs[0].Errno == refusedErrno(t) {
			t.Errorf("connect outside the CIDRs: %+v, want it left alone (the client has no route: ENETUNREACH)", rs)
		}
	})
	t.Run("a Service removed: its address is unallocated, still refused", func(t *testing.T) {
		if err := os.Remove(filepath.Join(n.dir, "web.yaml")); err != nil {
			t.Fatal(err)
		}
		n.waitGone(t, vip+":80", "TCP")
		requireRefused(t, n, "tcp", vip+":80")
	})
}

// waitGone waits until the maps no longer hold frontend.
func (n *node) waitGone(t testing.TB, frontend, proto string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		views, err := n.sb.InspectServices(t, n.socklb)
		if err == nil && !slices.ContainsFunc(views, func(v inspect.ServiceView) bool { return v.Frontend == frontend && v.Protocol == proto }) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("frontend %s/%s still in the maps", frontend, proto)
}

// Without --service-cidr a wrong port on a ClusterIP is still refused, and
// an unallocated address is left alone: socklb knows no CIDR.
func TestFailFastWithoutServiceCIDR(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.writeService(t, "", onThisNode(pods...)...)
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	requireRefused(t, n, "tcp", vip+":81")
	rs := n.probe(t, "tcp", "--addr", "10.96.0.77:80", "--count", "1", "--timeout", "1s")
	if len(rs) != 1 || rs[0].Errno == refusedErrno(t) {
		t.Errorf("connect to an address of no known CIDR: %+v, want it left alone", rs)
	}
}

// SCTP: socklb translates TCP and UDP only. An SCTP port is left
// unprogrammed with one error naming the Service, and the Service's other
// ports work. This kernel may not have SCTP at all; the test says which.
func TestSCTPPortRefusedClearly(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.write(t, "sig.yaml", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: sig, namespace: default}
spec:
  clusterIP: %s
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: diameter, port: 3868, targetPort: 3868, protocol: SCTP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: sig-1
  namespace: default
  labels: {kubernetes.io/service-name: sig}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: diameter, port: 3868, protocol: SCTP}
endpoints:
- addresses: [%q]
  conditions: {ready: true}
`, vip, pods[0].IPv4))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	if err := n.agent.WaitStderr(`port \"diameter\" (3868/SCTP): protocol SCTP is not supported`, 10*time.Second); err != nil {
		t.Errorf("the agent did not say the SCTP port is left out: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := strings.Count(n.agent.Stderr(), "3868/SCTP"); got != 1 {
		t.Errorf("the SCTP port was reported %d times, want once", got)
	}
	views, err := n.sb.InspectServices(t, n.socklb)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(views, func(v inspect.ServiceView) bool { return strings.HasSuffix(v.Frontend, ":3868") }) {
		t.Errorf("an SCTP frontend is in the maps: %+v", views)
	}
	if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "5")); seen["pod-a"] != 5 {
		t.Errorf("the TCP port beside SCTP reached %v", seen)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_SCTP)
	if err == nil {
		syscall.Close(fd)
		t.Log("this kernel has SCTP: SCTP connects to the ClusterIP leave the node untranslated")
	} else if errors.Is(err, syscall.EPROTONOSUPPORT) {
		t.Log("this kernel has no SCTP (socket: EPROTONOSUPPORT): no SCTP client can exist here")
	}
}
