package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// The per-CPU counters, read from the pins through lbmap, count what the
// connect hook did to frontends, and nothing for other addresses.
func TestCountersCountTranslatedAndRefused(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a")
	n.writeWeb(t, ready(pods[0]))
	n.write(t, "empty.yaml", serviceYAML("empty", []string{"10.96.0.51"}, httpPort)+
		sliceYAML("empty", "empty-1", "IPv4", []servicePort{httpPort}, endpoint{addr: "10.244.0.99"}))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[0])...)
	n.waitFrontend(t, "10.96.0.51:80", "TCP")

	before := readCounters(t, n.sb.PinDir)
	requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "5"))
	refused := n.probe(t, "tcp", "--addr", "10.96.0.51:80", "--count", "3", "--timeout", "2s")
	for _, r := range refused {
		if want := refusedErrno(t); r.OK || r.Errno != want {
			t.Fatalf("connect to a Service without endpoints: %+v, want %s", r, want)
		}
	}
	// Not a frontend: no reason, no count.
	requireAllOK(t, n.probe(t, "tcp", "--addr", addrs(8080, pods[0])[0], "--count", "2"))
	after := readCounters(t, n.sb.PinDir)

	want := maps.Clone(before)
	want["translated"] += 5
	want["no_backend"] += 3
	if !maps.Equal(after, want) {
		t.Errorf("counters went from %v to %v, want %v", before, after, want)
	}
}

func readCounters(t *testing.T, pinDir string) map[string]uint64 {
	t.Helper()
	m, err := lbmap.OpenPinned(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := lbmap.ReadCounters(m.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An agent of this version restarts over the pins an agent before the
// attach table left (links named after the bare program, no counters map)
// while a client keeps connecting: it takes every link over in place, so no
// connect fails, and renames the pins.
func TestAgentRestartOverLegacyPins(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	loop := n.sb.Start(t, n.client, true, bin, "tcp-loop", "--addr", vip+":80", "--duration", "5s", "--max", "20000", "--interval", "2ms")
	time.Sleep(500 * time.Millisecond)
	if err := n.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.agent.Done()
	links := filepath.Join(n.sb.PinDir, "links")
	hooks := []string{"connect4", "connect6", "getpeername4", "getpeername6", "recvmsg4", "recvmsg6", "sendmsg4", "sendmsg6"}
	for _, hook := range hooks {
		if err := os.Rename(filepath.Join(links, "cgroup-"+hook), filepath.Join(links, hook)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(n.sb.PinDir, lbmap.CountersMap)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	n.startAgent(t)
	if err := n.agent.WaitStderr("source synced", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	requireLoopUnbroken(t, loop)
	entries, err := os.ReadDir(links)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for _, hook := range hooks {
		want = append(want, "cgroup-"+hook)
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("after the restart links are pinned as %v, want %v", got, want)
	}
	// The programs now count into the counters map the new agent pinned.
	if c := readCounters(t, n.sb.PinDir); c["translated"] == 0 {
		// The loop ended before the restart completed only if it was slow.
		requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "1"))
		if c = readCounters(t, n.sb.PinDir); c["translated"] == 0 {
			t.Errorf("counters after the restart: %v, want translated connects counted", c)
		}
	}
}
