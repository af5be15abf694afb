package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

// Long-lived unconnected UDP sockets keep their backend while many more
// short-lived ones come and go: their choice is in socket-local storage,
// which other sockets cannot evict, where the LRU map holds only 131,072
// (the issue measured 36 of 60 sockets switching after 300,000 others).
func TestUnconnectedUDPKeepsBackendUnderChurn(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b", "pod-c", "pod-d", "pod-e")
	var eps []endpoint
	for _, p := range pods {
		eps = append(eps, ready(p))
	}
	n.write(t, "dns.yaml", serviceYAML("dns", []string{vip}, dnsPort)+sliceYAML("dns", "dns-1", "IPv4", []servicePort{dnsPort}, eps...))
	n.startAgent(t)
	n.waitFrontend(t, vip+":53", "UDP", addrs(5353, pods...)...)
	if !strings.Contains(n.agent.Stderr(), `"sock_storage":true`) {
		t.Skip("documented fallback: this kernel has no socket-local storage in the socket hooks; the LRU maps hold the state")
	}
	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	var longLived []*sandbox.Process
	for range 8 {
		p := n.sb.Start(t, n.client, true, bin, "udp", "--addr", vip+":53", "--count", "2", "--interval", "12s")
		longLived = append(longLived, p)
	}
	for _, p := range longLived {
		if err := p.WaitOutput(`"ok":true`, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	churn := n.probeChurn(t, bin, 150_000)
	if churn["sent"] < 140_000 || time.Since(start) > 10*time.Second {
		t.Fatalf("the churn sent %v in %v; want 140,000+ datagrams within the long-lived sockets' 12 s pause", churn, time.Since(start))
	}
	for i, p := range longLived {
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("a long-lived probe did not finish")
		}
		rs, err := sandbox.ProbeResults(p.Stdout())
		if err != nil || len(rs) != 2 || !rs[0].OK || !rs[1].OK {
			t.Fatalf("long-lived socket %d: %v %+v", i, err, rs)
		}
		if rs[0].Backend != rs[1].Backend || rs[0].Local != rs[1].Local {
			t.Errorf("long-lived socket %d went from %s (%s) to %s (%s) after 150,000 other sockets", i, rs[0].Backend, rs[0].Local, rs[1].Backend, rs[1].Local)
		}
	}
}

// probeChurn runs sockprobe udp-churn in the client pod and returns its
// summary.
func (n *node) probeChurn(t *testing.T, bin string, count int) map[string]int64 {
	t.Helper()
	p := n.sb.Start(t, n.client, true, bin, "udp-churn", "--addr", vip+":53", "--count", fmt.Sprint(count))
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("udp-churn did not finish")
	}
	var sum map[string]int64
	if err := json.Unmarshal([]byte(p.Stdout()), &sum); err != nil {
		t.Fatalf("udp-churn output %q: %v", p.Stdout(), err)
	}
	t.Logf("churn: %v", sum)
	return sum
}
