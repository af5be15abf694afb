package e2e

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

const vip = "10.96.0.50"

// TCP connects to the ClusterIP reach every ready backend, and getpeername
// shows the ClusterIP, not the pod.
func TestTCPReachesEveryBackend(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]), ready(pods[2]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	rs := n.probe(t, "tcp", "--addr", vip+":80", "--count", "60")
	seen := requireAllOK(t, rs)
	if got, want := slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(names(pods...))); !slices.Equal(got, want) {
		t.Errorf("60 connects reached %v, want every backend %v", seen, want)
	}
	for _, r := range rs {
		if r.Peer != vip+":80" {
			t.Fatalf("getpeername = %q, want the ClusterIP %s:80", r.Peer, vip)
		}
	}
}

// An unconnected UDP socket sends to one backend and sees replies come from
// the VIP (recvmsg hook); a connected one likewise, through getpeername.
func TestUDP(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c")
	dns := servicePort{name: "dns", port: 53, targetPort: "5353", protocol: "UDP", slicePort: 5353}
	n.write(t, "dns.yaml", serviceYAML("dns", []string{vip}, dns)+
		sliceYAML("dns", "dns-1", "IPv4", []servicePort{dns}, ready(pods[0]), ready(pods[1]), ready(pods[2])))
	n.startAgent(t)
	n.waitFrontend(t, vip+":53", "UDP", addrs(5353, pods...)...)

	cases := []struct {
		name string
		mode string
		addr func(sandbox.ProbeResult) string
	}{
		{"unconnected: recvfrom sees the VIP", "udp", func(r sandbox.ProbeResult) string { return r.From }},
		{"connected: getpeername sees the VIP", "udp-connected", func(r sandbox.ProbeResult) string { return r.Peer }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := map[string]int{}
			for range 8 {
				rs := n.probe(t, tc.mode, "--addr", vip+":53", "--count", "5")
				seen := requireAllOK(t, rs)
				if len(seen) != 1 {
					t.Fatalf("one socket's datagrams reached %v, want one backend per socket", seen)
				}
				for _, r := range rs {
					if got := tc.addr(r); got != vip+":53" {
						t.Fatalf("reply address = %q, want the VIP %s:53", got, vip)
					}
				}
				for k, v := range seen {
					all[k] += v
				}
			}
			if len(all) < 2 {
				t.Errorf("8 sockets all went to %v; backends are picked per socket at random", all)
			}
		})
	}
}

func TestIPv6(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	vip6 := "fd00:96::50"
	n.write(t, "web6.yaml", serviceYAML("web6", []string{vip6}, httpPort)+
		sliceYAML("web6", "web6-1", "IPv6", []servicePort{httpPort}, ready6(pods[0]), ready6(pods[1])))
	n.startAgent(t)
	n.waitFrontend(t, "["+vip6+"]:80", "TCP", fmt.Sprintf("[%s]:8080", pods[0].IPv6), fmt.Sprintf("[%s]:8080", pods[1].IPv6))

	rs := n.probe(t, "tcp", "--addr", "["+vip6+"]:80", "--count", "40")
	if seen := requireAllOK(t, rs); len(seen) != 2 {
		t.Errorf("40 connects over IPv6 reached %v, want both backends", seen)
	}
	for _, r := range rs {
		if r.Peer != "["+vip6+"]:80" {
			t.Fatalf("getpeername = %q, want the IPv6 ClusterIP", r.Peer)
		}
	}
}

// An IPv6 socket that connects to the IPv4-mapped form of an IPv4 ClusterIP
// (as dual-stack runtimes do) reaches the IPv4 backends, and sees the VIP.
func TestIPv4MappedFromIPv6Socket(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	mapped := "[::ffff:" + vip + "]:80"
	rs := n.probe(t, "tcp", "--addr", mapped, "--count", "30")
	if seen := requireAllOK(t, rs); len(seen) != 2 {
		t.Errorf("30 connects from an IPv6 socket reached %v, want both backends", seen)
	}
	for _, r := range rs {
		if r.Peer != mapped {
			t.Fatalf("getpeername = %q, want %s", r.Peer, mapped)
		}
	}
}

// Two ports of one Service go to their own target ports; a named targetPort
// is resolved through the slice's port name.
func TestPorts(t *testing.T) {
	n := newNode(t)
	pod := n.sb.AddPod(t, "pod-a")
	bin := sandbox.Binaries(t, sandbox.NameSrvPkg)[sandbox.NameSrvPkg]
	for _, port := range []string{"8080", "9090"} {
		p := n.sb.Start(t, pod, false, bin, "--name", "port-"+port, "--tcp", "[::]:"+port)
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	web := servicePort{name: "web", port: 80, targetPort: "8080", protocol: "TCP", slicePort: 8080}
	admin := servicePort{name: "admin", port: 81, targetPort: "admin-port", protocol: "TCP", slicePort: 9090}
	n.write(t, "multi.yaml", serviceYAML("multi", []string{vip}, web, admin)+
		sliceYAML("multi", "multi-1", "IPv4", []servicePort{web, admin}, ready(pod)))
	n.startAgent(t)
	n.waitFrontend(t, vip+":81", "TCP", addrs(9090, pod)...)

	cases := []struct {
		name, addr, backend string
	}{
		{"numeric targetPort", vip + ":80", "port-8080"},
		{"named targetPort", vip + ":81", "port-9090"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := requireAllOK(t, n.probe(t, "tcp", "--addr", tc.addr, "--count", "5"))
			if seen[tc.backend] != 5 {
				t.Errorf("connects to %s reached %v, want %s", tc.addr, seen, tc.backend)
			}
		})
	}
}

// A frontend without a usable endpoint refuses at once, as kube-proxy's REJECT does.
func TestNoEndpointsRefuses(t *testing.T) {
	n := newNode(t)
	udp := servicePort{name: "dns", port: 53, targetPort: "5353", protocol: "UDP", slicePort: 5353}
	n.write(t, "empty.yaml", serviceYAML("empty", []string{vip}, httpPort, udp)+
		sliceYAML("empty", "empty-1", "IPv4", []servicePort{httpPort, udp}, endpoint{addr: "10.244.0.99", ready: false, serving: false}))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP")

	for _, mode := range []string{"tcp", "udp"} {
		t.Run(mode, func(t *testing.T) {
			port := map[string]string{"tcp": "80", "udp": "53"}[mode]
			rs := n.probe(t, mode, "--addr", vip+":"+port, "--count", "1", "--timeout", "2s")
			if want := refusedErrno(t); len(rs) != 1 || rs[0].OK || rs[0].Errno != want {
				t.Fatalf("%s to a Service with no endpoints: %+v, want %s", mode, rs, want)
			}
			if rs[0].DurUS > 500_000 {
				t.Errorf("refusal took %d µs; it should be immediate", rs[0].DurUS)
			}
		})
	}
}

// Once the agent applied a removal, the removed backend gets no new connection.
func TestRemovedBackendGetsNoNewConnections(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]), ready(pods[2]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	n.writeWeb(t, ready(pods[1]), ready(pods[2]))
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[1:]...)...)

	seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "60"))
	if seen["pod-a"] != 0 {
		t.Errorf("removed pod-a still got %d of 60 new connections: %v", seen["pod-a"], seen)
	}
	if len(seen) != 2 {
		t.Errorf("connections reached %v, want pod-b and pod-c", seen)
	}
}

// Terminating endpoints serve only while no endpoint is ready.
func TestTerminatingFallback(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, draining(pods[0]), draining(pods[1]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", append([]string{"|"}, addrs(8080, pods...)...)...)

	if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "30")); len(seen) != 2 {
		t.Errorf("with only terminating endpoints, connects reached %v, want both", seen)
	}

	n.writeWeb(t, draining(pods[0]), ready(pods[1]))
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[1])[0], "|", addrs(8080, pods[0])[0])
	seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "30"))
	if seen["pod-b"] != 30 {
		t.Errorf("with a ready endpoint, connects reached %v, want only the ready pod-b", seen)
	}
}

// The agent is killed and restarted while a client keeps connecting: the
// pinned datapath keeps working, no connect fails and the maps are not flushed.
func TestAgentRestartUnderLoad(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]))
	n.startAgent(t)
	before := n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	loop := n.sb.Start(t, n.client, true, bin, "tcp-loop", "--addr", vip+":80", "--duration", "6s", "--max", "20000", "--interval", "2ms")

	time.Sleep(1 * time.Second)
	if err := n.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.agent.Done()
	// With no agent at all, the pinned maps and links still hold everything.
	during := n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	time.Sleep(1 * time.Second)
	n.startAgent(t)
	if err := n.agent.WaitStderr("source synced", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	after := n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	sum := requireLoopUnbroken(t, loop)
	for _, v := range []struct {
		when string
		id   uint32
	}{{"while the agent was dead", during.ServiceID}, {"after the restart", after.ServiceID}} {
		if v.id != before.ServiceID {
			t.Errorf("service id %s = %d, want %d: the maps were rewritten", v.when, v.id, before.ServiceID)
		}
	}
	if !strings.Contains(n.agent.Stderr(), `"frontends": 1`) && !strings.Contains(n.agent.Stderr(), `"frontends":1`) {
		t.Errorf("the restarted agent did not restore the frontend from the pinned maps; log:\n%s", n.agent.Stderr())
	}
	t.Logf("connect loop: %d attempts, backends %v", sum.Attempts, sum.Backends)
}

// A malformed object is reported by name and every other Service keeps working.
func TestMalformedObjectIsIsolated(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.write(t, "good.yaml", serviceYAML("good", []string{vip}, httpPort)+
		sliceYAML("good", "good-1", "IPv4", []servicePort{httpPort}, ready(pods[0])))
	n.write(t, "bad.yaml", serviceYAML("bad", []string{"10.96.0.51"}, httpPort)+
		sliceYAML("bad", "bad-1", "IPv4", []servicePort{httpPort}, endpoint{addr: "fd00::1", ready: true, serving: true}))
	n.write(t, "broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: [oops\n")
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[0])...)
	n.waitFrontend(t, "10.96.0.51:80", "TCP")

	if seen := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "5")); seen["pod-a"] != 5 {
		t.Errorf("the good Service beside bad objects reached %v", seen)
	}
	for _, want := range []string{"default/bad-1", "broken.yaml"} {
		if err := n.agent.WaitStderr(want, 5*time.Second); err != nil {
			t.Errorf("agent log does not name %s: %v", want, err)
		}
	}
	if n.agent.Exited() {
		t.Errorf("agent exited on bad input")
	}
}

// bpftool decodes the pinned maps with field names, thanks to their BTF.
func TestBpftoolShowsFieldNames(t *testing.T) {
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		if sandbox.InCI() {
			t.Fatalf("bpftool is not installed: %v", err)
		}
		t.Skipf("bpftool is not installed: %v", err)
	}
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.writeWeb(t, ready(pods[0]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[0])...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bpftool, "map", "dump", "pinned", n.sb.PinDir+"/lb_services").CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool map dump: %v\n%s", err, out)
	}
	for _, field := range []string{`"addr"`, `"port"`, `"slot"`, `"proto"`, `"backend_id"`, `"service_id"`, `"count"`, `"terminating"`} {
		if !strings.Contains(string(out), field) {
			t.Errorf("bpftool dump lacks field %s:\n%s", field, out)
		}
	}
}
