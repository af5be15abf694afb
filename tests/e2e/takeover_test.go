package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

// Issue 12, finding 1: a Service added later with a running Service's
// ClusterIP and ports does not take its traffic, before or after an agent
// restart (standalone objects carry no creationTimestamp, so only the
// pinned maps tell the restarted agent who was there first); the log names
// the newcomer and the holder; a healthy Service beside them keeps
// answering over TCP and UDP, and the agent stays up.
func TestFrontendTakeoverIsRefused(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-web", "pod-aaa", "pod-healthy")
	web, aaa, healthy := pods[0], pods[1], pods[2]
	dns := servicePort{name: "dns", port: 53, targetPort: "5353", protocol: "UDP", slicePort: 5353}
	ports := []servicePort{httpPort, dns}
	const healthyVIP = "10.96.0.60"
	n.write(t, "web.yaml", serviceYAML("web", []string{vip}, ports...)+sliceYAML("web", "web-1", "IPv4", ports, ready(web)))
	n.write(t, "healthy.yaml", serviceYAML("healthy", []string{healthyVIP}, ports...)+sliceYAML("healthy", "healthy-1", "IPv4", ports, ready(healthy)))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, web)...)
	n.waitFrontend(t, healthyVIP+":53", "UDP", addrs(5353, healthy)...)

	// First by name, so the old rule (the lexically first wins) gave it web's traffic.
	n.write(t, "aaa.yaml", serviceYAML("aaa", []string{vip}, ports...)+sliceYAML("aaa", "aaa-1", "IPv4", ports, ready(aaa)))
	for _, fe := range []string{vip + ":80/TCP", vip + ":53/UDP"} {
		if err := n.agent.WaitStderr("claim frontend "+fe+": Service default/web holds it", 10*time.Second); err != nil {
			t.Fatalf("no line names the newcomer's refused claim on %s: %v", fe, err)
		}
	}
	if log := n.agent.Stderr(); !strings.Contains(log, "Service default/aaa") {
		t.Errorf("the refusal does not name the newcomer default/aaa; log:\n%s", log)
	}
	checkOnlyReaches(t, n, "with the newcomer", map[string]string{vip: "pod-web", healthyVIP: "pod-healthy"})

	if err := n.agent.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-n.agent.Done()
	n.startAgent(t)
	if err := n.agent.WaitStderr("claim frontend "+vip+":80/TCP: Service default/web holds it", 10*time.Second); err != nil {
		t.Fatalf("the restarted agent did not refuse the newcomer: %v", err)
	}
	checkOnlyReaches(t, n, "after an agent restart", map[string]string{vip: "pod-web", healthyVIP: "pod-healthy"})
	if n.agent.Exited() {
		t.Fatalf("the agent exited; log:\n%s", n.agent.Stderr())
	}
}

// checkOnlyReaches checks that TCP connects and UDP datagrams to each VIP
// reach only the pod named for it.
func checkOnlyReaches(t *testing.T, n *node, when string, want map[string]string) {
	t.Helper()
	for vip, pod := range want {
		for _, probe := range [][]string{{"tcp", "--addr", vip + ":80", "--count", "10"}, {"udp", "--addr", vip + ":53", "--count", "10"}} {
			seen := sandbox.RequireAllOK(t, n.probe(t, probe...))
			if len(seen) != 1 || seen[pod] != 10 {
				t.Errorf("%s: %s to %s reached %v, want only %s", when, probe[0], vip, seen, pod)
			}
		}
	}
}
