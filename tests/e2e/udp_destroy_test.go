package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/sockdestroy"
	"github.com/socklb/socklb/tests/sandbox"
)

// completeResults parses the whole lines sockprobe printed so far.
func completeResults(t *testing.T, p *sandbox.Process) []sandbox.ProbeResult {
	t.Helper()
	out := p.Stdout()
	out = out[:strings.LastIndex(out, "\n")+1]
	rs, err := sandbox.ProbeResults(out)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// A connected UDP socket whose backend is taken out of its Service fails at
// once (the agent destroys it), while an unconnected one keeps working with
// the same source port, its next datagrams going to a live backend. On a
// kernel without bpf_sock_destroy the agent says so, and the connected
// socket keeps its backend: the documented fallback.
func TestUDPSocketToRemovedBackend(t *testing.T) {
	cases := []struct {
		name string
		keep bool // whether the other backend stays in the Service
	}{
		{"one backend removed", true},
		{"the Service becomes empty", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			pods := n.addPods(t, "pod-a", "pod-b")
			writeDNS := func(hs ...*sandbox.Host) {
				var eps []endpoint
				for _, h := range hs {
					eps = append(eps, ready(h))
				}
				slice := sliceYAML("dns", "dns-1", "IPv4", []servicePort{dnsPort}, eps...)
				slice = strings.Replace(slice, "endpoints:\n[]\n", "endpoints: []\n", 1)
				n.write(t, "dns.yaml", serviceYAML("dns", []string{vip}, dnsPort)+slice)
			}
			writeDNS(pods...)
			n.startAgent(t)
			n.waitFrontend(t, vip+":53", "UDP", addrs(5353, pods...)...)

			bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
			probeArgs := []string{"--addr", vip + ":53", "--count", "50", "--interval", "100ms", "--timeout", "1s"}
			connected := n.sb.Start(t, n.client, true, append([]string{bin, "udp-connected"}, probeArgs...)...)
			unconnected := n.sb.Start(t, n.client, true, append([]string{bin, "udp"}, probeArgs...)...)
			for _, p := range []*sandbox.Process{connected, unconnected} {
				if err := p.WaitOutput(`"ok":true`, 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			gone := completeResults(t, connected)[0].Backend
			var rest []*sandbox.Host
			for _, p := range pods {
				if p.Name != gone && tc.keep {
					rest = append(rest, p)
				}
			}
			writeDNS(rest...)
			n.waitFrontend(t, vip+":53", "UDP", addrs(5353, rest...)...)
			removed := time.Now()

			if sockdestroy.Supported() != nil {
				// The documented fallback: one line says so, the socket stays.
				if !strings.Contains(n.agent.Stderr(), "connected UDP sockets to removed backends are not destroyed") {
					t.Errorf("the agent on a kernel without bpf_sock_destroy did not say what it cannot do")
				}
				return
			}
			if err := connected.WaitOutput(`"ok":false`, 2*time.Second); err != nil {
				t.Fatalf("the connected socket to the removed backend %s got no error within 2 s of the removal: %v", gone, err)
			}
			t.Logf("the connected socket failed %v after the maps changed", time.Since(removed).Round(time.Millisecond))
			requireConnectedStopped(t, completeResults(t, connected), gone)
			if tc.keep {
				<-unconnected.Done()
				requireUnconnectedMoved(t, completeResults(t, unconnected), rest[0].Name)
			}
			if !strings.Contains(n.agent.Stderr(), "destroyed connected UDP sockets") {
				t.Errorf("the agent did not log the sockets it destroyed")
			}
		})
	}
}

// destroyedErrnos are what a destroyed UDP socket's calls fail with: the
// pending error (ECONNABORTED) to a call blocked or next in line, then, as
// the socket is no longer connected, ENOTCONN to getpeername and
// EDESTADDRREQ to send.
var destroyedErrnos = []string{"ECONNABORTED", "ENOTCONN", "EDESTADDRREQ"}

// requireConnectedStopped checks that the connected socket's first failure
// is one a destroyed socket gets and that it never answered again from the
// removed backend.
func requireConnectedStopped(t *testing.T, rs []sandbox.ProbeResult, gone string) {
	t.Helper()
	i := slices.IndexFunc(rs, func(r sandbox.ProbeResult) bool { return !r.OK })
	if i < 0 {
		t.Fatalf("no failure in %d results", len(rs))
	}
	if !slices.Contains(destroyedErrnos, rs[i].Errno) {
		t.Errorf("first failure %q (%s), want one of %v", rs[i].Err, rs[i].Errno, destroyedErrnos)
	}
	t.Logf("first failure: %s", rs[i].Err)
	for _, r := range rs[i:] {
		if r.OK && r.Backend == gone {
			t.Errorf("probe %d reached the removed backend %s after the socket was destroyed", r.I, gone)
		}
	}
}

// requireUnconnectedMoved checks that the unconnected socket never failed,
// kept one source port and ended on the backend left.
func requireUnconnectedMoved(t *testing.T, rs []sandbox.ProbeResult, live string) {
	t.Helper()
	if len(rs) != 50 {
		t.Fatalf("the unconnected probe printed %d results, want 50", len(rs))
	}
	for _, r := range rs {
		if !r.OK {
			t.Fatalf("unconnected probe %d failed: %s (%s)", r.I, r.Err, r.Errno)
		}
		if r.Local != rs[0].Local {
			t.Fatalf("unconnected probe %d went from %s, the first from %s: the socket was replaced", r.I, r.Local, rs[0].Local)
		}
	}
	if last := rs[len(rs)-1].Backend; last != live {
		t.Errorf("the unconnected socket ends on %s, want the backend left, %s", last, live)
	}
}
