package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/monitor"
	"github.com/socklb/socklb/tests/sandbox"
)

const (
	dnsVIP    = "10.96.0.70"
	emptyVIP  = "10.96.0.71"
	stickyVIP = "10.96.0.72"
)

// monitorEvents parses the JSON lines a monitor printed so far.
func monitorEvents(t *testing.T, p *sandbox.Process) []monitor.Event {
	t.Helper()
	var out []monitor.Event
	for _, line := range strings.Split(p.Stdout(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e monitor.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			continue // a line still being written
		}
		out = append(out, e)
	}
	return out
}

// startMonitor runs socklb monitor on the node and waits until it watches.
func (n *node) startMonitor(t *testing.T, args ...string) *sandbox.Process {
	t.Helper()
	p := n.sb.Start(t, n.sb.Node, false, append([]string{n.socklb, "monitor", "-o", "json", "--bpffs", n.sb.PinDir}, args...)...)
	if err := p.WaitStderr("watching", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// stopMonitor interrupts it and checks that it left the hooks unwatched.
func (n *node) stopMonitor(t *testing.T, p *sandbox.Process) {
	t.Helper()
	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("monitor exited with %v; stderr: %s", err, p.Stderr())
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(n.sb.PinDir, lbmap.MonitorConfigMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var cfg lbmap.MonitorConfig
	if err := m.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled != 0 {
		t.Errorf("the monitor stopped but left the hooks writing events")
	}
}

// probeProcess runs one sockprobe in the client pod and returns its pid
// and results.
func (n *node) probeProcess(t *testing.T, args ...string) (int, []sandbox.ProbeResult) {
	t.Helper()
	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	p := n.sb.Start(t, n.client, true, append([]string{bin}, args...)...)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("sockprobe did not finish")
	}
	rs, err := sandbox.ProbeResults(p.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	return p.Pid(), rs
}

// waitEvent waits for the monitor to print an event of pid.
func waitEvent(t *testing.T, p *sandbox.Process, pid int) monitor.Event {
	t.Helper()
	if err := p.WaitOutput(fmt.Sprintf(`"pid":%d,`, pid), 5*time.Second); err != nil {
		t.Fatalf("the monitor showed no decision of pid %d: %v", pid, err)
	}
	for _, e := range monitorEvents(t, p) {
		if e.PID == uint32(pid) {
			return e
		}
	}
	t.Fatalf("no parsable event of pid %d in %q", pid, p.Stdout())
	return monitor.Event{}
}

// socklb monitor shows a connect with its process and the backend it was
// given, filters by Service, shows refusals, and leaves the hooks silent
// when it stops.
func TestMonitor(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]))
	n.write(t, "dns.yaml", serviceYAML("dns", []string{dnsVIP}, dnsPort)+
		sliceYAML("dns", "dns-1", "IPv4", []servicePort{dnsPort}, ready(pods[0])))
	n.write(t, "empty.yaml", serviceYAML("empty", []string{emptyVIP}, httpPort))
	n.write(t, "sticky.yaml", serviceYAML("sticky", []string{stickyVIP}, httpPort)+affinitySpec(60)+
		sliceYAML("sticky", "sticky-1", "IPv4", []servicePort{httpPort}, ready(pods[0]), ready(pods[1])))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	n.waitFrontend(t, dnsVIP+":53", "UDP", addrs(5353, pods[0])...)
	n.waitFrontend(t, emptyVIP+":80", "TCP")
	n.waitFrontend(t, stickyVIP+":80", "TCP", addrs(8080, pods...)...)
	podAddr := map[string]string{}
	for _, p := range pods {
		podAddr[p.Name] = p.IPv4.String()
	}

	t.Run("a connect, with its pid, command and backend; another Service filtered out", func(t *testing.T) {
		mon := n.startMonitor(t, "--service", "default/web")
		dnsPid, _ := n.probeProcess(t, "udp", "--addr", dnsVIP+":53")
		pid, rs := n.probeProcess(t, "tcp", "--addr", vip+":80")
		requireAllOK(t, rs)
		e := waitEvent(t, mon, pid)
		want := monitor.Event{Hook: "connect", PID: uint32(pid), Comm: "sockprobe", Service: "default/web:http", Protocol: "TCP",
			Frontend: vip + ":80", Backend: podAddr[rs[0].Backend] + ":8080", Verdict: "translated"}
		e.Time, e.Cookie, e.NetnsCookie = time.Time{}, 0, 0
		if e != want {
			t.Errorf("event\n%+v\nwant\n%+v", e, want)
		}
		n.stopMonitor(t, mon)
		for _, e := range monitorEvents(t, mon) {
			if e.PID == uint32(dnsPid) || !strings.HasPrefix(e.Service, "default/web:") {
				t.Errorf("--service default/web showed %+v", e)
			}
		}
	})

	t.Run("a refused connect: no endpoints", func(t *testing.T) {
		mon := n.startMonitor(t)
		pid, _ := n.probeProcess(t, "tcp", "--addr", emptyVIP+":80")
		e := waitEvent(t, mon, pid)
		if e.Verdict != "refused-no-endpoints" || e.Backend != "" || e.Service != "default/empty:http" {
			t.Errorf("event %+v, want a refusal for no endpoints of default/empty:http and no backend", e)
		}
		n.stopMonitor(t, mon)
	})

	t.Run("sessionAffinity: the first connect picks, the next is an affinity hit to the same backend", func(t *testing.T) {
		mon := n.startMonitor(t, "--service", "default/sticky")
		firstPid, first := n.probeProcess(t, "tcp", "--addr", stickyVIP+":80")
		requireAllOK(t, first)
		secondPid, second := n.probeProcess(t, "tcp", "--addr", stickyVIP+":80")
		requireAllOK(t, second)
		e1, e2 := waitEvent(t, mon, firstPid), waitEvent(t, mon, secondPid)
		if e1.Verdict != "translated" {
			t.Errorf("first connect: verdict %q, want translated (no affinity entry yet): %+v", e1.Verdict, e1)
		}
		if e2.Verdict != "affinity-hit" || e2.Backend != e1.Backend {
			t.Errorf("second connect: verdict %q to %s, want affinity-hit to %s: %+v", e2.Verdict, e2.Backend, e1.Backend, e2)
		}
		n.stopMonitor(t, mon)
	})

	t.Run("nobody watching: no event is written", func(t *testing.T) {
		n.probeProcess(t, "tcp", "--addr", vip+":80", "--count", "20")
		mon := n.startMonitor(t)
		pid, _ := n.probeProcess(t, "tcp", "--addr", vip+":80")
		waitEvent(t, mon, pid)
		if evs := monitorEvents(t, mon); len(evs) != 1 {
			t.Errorf("the monitor started after 20 unwatched connects showed %d events, want only the one made while it watched: %+v", len(evs), evs)
		}
		n.stopMonitor(t, mon)
	})
}
