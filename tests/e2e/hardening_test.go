package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/socklb/socklb/tests/sandbox"
)

// Issue 12's findings, end to end: one named case each, and in every case a
// healthy Service in the same directory keeps answering over TCP and UDP and
// the agent stays up. Findings 1, 5 and 6b have cases of their own, beside
// the desired-state code they concern.

// healthyFile holds the Service that must keep answering whatever else the
// directory or the pins go through: TCP vip:80 and UDP vip:53 on one pod.
const healthyFile = "healthy.yaml"

var dnsPort = servicePort{name: "dns", port: 53, targetPort: "5353", protocol: "UDP", slicePort: 5353}

func healthyYAML(pod *sandbox.Host) string {
	return serviceYAML("healthy", []string{vip}, httpPort, dnsPort) +
		sliceYAML("healthy", "healthy-1", "IPv4", []servicePort{httpPort, dnsPort}, ready(pod))
}

// hardening is one case's world: a node whose directory holds the healthy
// Service, served by the pod "healthy".
type hardening struct {
	*node
	pod       *sandbox.Host
	agentArgs []string
}

func newHardening(t *testing.T, agentArgs ...string) *hardening {
	t.Helper()
	h := &hardening{node: newNode(t), agentArgs: agentArgs}
	h.pod = h.addPods(t, "healthy")[0]
	h.write(t, healthyFile, healthyYAML(h.pod))
	h.start(t)
	h.waitFrontend(t, vip+":80", "TCP", addrs(8080, h.pod)...)
	h.waitFrontend(t, vip+":53", "UDP", addrs(5353, h.pod)...)
	return h
}

// start runs the agent as node.startAgent does, with the case's flags.
func (h *hardening) start(t *testing.T) {
	t.Helper()
	args := append([]string{h.socklb, "agent",
		"--from-dir", h.dir, "--cgroup", h.sb.Cgroup, "--bpffs", h.sb.PinDir,
		"--node-name", "test-node", "--log-level", "debug"}, h.agentArgs...)
	agent := h.sb.Start(t, h.sb.Node, false, args...)
	h.agent = agent
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", agent.Stderr())
		}
	})
	if err := agent.WaitStderr("source synced", 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// requireHealthy fails unless the healthy Service answers every TCP connect
// and every UDP datagram from its pod, and the agent is still running.
func (h *hardening) requireHealthy(t *testing.T, when string) {
	t.Helper()
	for _, p := range []struct {
		mode, addr string
	}{{"tcp", vip + ":80"}, {"udp", vip + ":53"}} {
		rs := h.probe(t, p.mode, "--addr", p.addr, "--count", "5")
		if got := sandbox.Backends(rs); got["healthy"] != 5 {
			t.Errorf("%s: the healthy Service over %s answered %v of 5 probes (%+v)", when, p.mode, got, rs)
		}
	}
	if h.agent.Exited() {
		t.Errorf("%s: the agent exited: %v", when, h.agent.Wait())
	}
}

func TestHardening(t *testing.T) {
	testCases := []struct {
		name      string
		agentArgs []string
		run       func(t *testing.T, h *hardening)
	}{
		{"finding 2: a second agent on the same pins is refused", nil, secondAgentRefused},
		{"finding 3: cleanup is refused while the agent runs", nil, cleanupRefusedWhileRunning},
		{"finding 4: a symlink out of the directory is refused and its target never logged", nil, symlinkOutRefused},
		{"finding 5: a Service of 70,000 endpoints holds 65,535 and says so", nil, tooManyBackendsCapped},
		{"finding 6a: a one-line JSON file of exactly 4,096 bytes is applied", nil, boundaryFileApplied},
		{"finding 6b: a Service port no slice port names is said", nil, unservedPortSaid},
		{"finding 7: a file rewritten slowly in place keeps its Services answering", nil, slowRewriteKeepsAnswering},
		{"finding 8: a directory removed and recreated is watched again within a second", nil, directoryRecreated},
		{"finding 9: a full services map logs one summary, not one line per retry", []string{"--map-size-services", "16"}, fullMapSummarised},
		{"finding 9: a map pin deleted by hand is repaired at the next sync", nil, deletedPinRepaired},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHardening(t, tc.agentArgs...)
			h.requireHealthy(t, "before")
			tc.run(t, h)
			h.requireHealthy(t, "after")
		})
	}
}

func secondAgentRefused(t *testing.T, h *hardening) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.sb.Run(t, ctx, h.sb.Node, false, h.socklb, "agent",
		"--from-dir", h.dir, "--cgroup", h.sb.Cgroup, "--bpffs", h.sb.PinDir, "--node-name", "second")
	if want := fmt.Sprintf("in use by pid %d", h.agent.Pid()); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second agent: %v, want a refusal saying %q", err, want)
	}
}

func cleanupRefusedWhileRunning(t *testing.T, h *hardening) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.sb.Run(t, ctx, h.sb.Node, false, h.socklb, "cleanup", "--bpffs", h.sb.PinDir)
	if err == nil || !strings.Contains(err.Error(), "stop the agent first") {
		t.Errorf("cleanup with a running agent: %v, want a refusal saying to stop the agent", err)
	}
	if _, err := os.Stat(filepath.Join(h.sb.PinDir, "lb_services")); err != nil {
		t.Errorf("a refused cleanup removed a pin: %v", err)
	}
}

func symlinkOutRefused(t *testing.T, h *hardening) {
	// The target would fail to decode, so a decoder message quoting its
	// input would carry the secret.
	const secret = "root:hunter2-do-not-log:19000:0:99999:7:::"
	target := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(target, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(h.dir, "leak.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := h.agent.WaitStderr("points out of the directory", 5*time.Second); err != nil {
		t.Fatalf("the link out of the directory was not refused with a line: %v", err)
	}
	log := h.agent.Stderr()
	if !strings.Contains(log, "leak.yaml") {
		t.Errorf("the refusal does not name the link leak.yaml; log:\n%s", log)
	}
	if strings.Contains(log, "hunter2") {
		t.Errorf("the agent log carries the link target's content")
	}
}

// boundaryList is a one-line JSON List of a Service at clusterIP and its
// EndpointSlice on pod, padded to exactly size bytes, with no newline.
func boundaryList(t *testing.T, clusterIP string, pod *sandbox.Host, size int) string {
	t.Helper()
	head := `{"apiVersion":"v1","kind":"List","items":[` +
		`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"boundary-1","namespace":"default","labels":{"kubernetes.io/service-name":"boundary"}},` +
		`"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"}],"endpoints":[{"addresses":["` + pod.IPv4.String() + `"],"conditions":{"ready":true}}]},` +
		`{"apiVersion":"v1","kind":"Service","spec":{"clusterIP":"` + clusterIP + `","ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]},` +
		`"metadata":{"name":"boundary","namespace":"default","annotations":{"pad":"`
	tail := `"}}}]}`
	content := head + strings.Repeat("x", size-len(head)-len(tail)) + tail
	if len(content) != size {
		t.Fatalf("built %d bytes, want %d", len(content), size)
	}
	return content
}

func boundaryFileApplied(t *testing.T, h *hardening) {
	const boundaryVIP = "10.96.0.60"
	h.write(t, "boundary.json", boundaryList(t, boundaryVIP, h.pod, 4096))
	h.waitFrontend(t, boundaryVIP+":80", "TCP", addrs(8080, h.pod)...)
	if got := requireAllOK(t, h.probe(t, "tcp", "--addr", boundaryVIP+":80", "--count", "5")); got["healthy"] != 5 {
		t.Errorf("the Service of the 4,096-byte file answered %v, want 5 from its pod", got)
	}
}

// slowJSON is a one-line JSON List of the Service "slow" at slowVIP (TCP 80
// and UDP 53 on pod) and its EndpointSlice, with an annotation saying which
// version it is.
func slowJSON(pod *sandbox.Host, version int) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"List","items":[`+
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"slow","namespace":"default","annotations":{"version":"%d"}},`+
		`"spec":{"clusterIP":"%s","ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"},{"name":"dns","port":53,"targetPort":5353,"protocol":"UDP"}]}},`+
		`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"slow-1","namespace":"default","labels":{"kubernetes.io/service-name":"slow"}},`+
		`"addressType":"IPv4","ports":[{"name":"http","port":8080,"protocol":"TCP"},{"name":"dns","port":5353,"protocol":"UDP"}],`+
		`"endpoints":[{"addresses":["%s"],"conditions":{"ready":true}}]}]}`, version, slowVIP, pod.IPv4)
}

const slowVIP = "10.96.0.63"

func slowRewriteKeepsAnswering(t *testing.T, h *hardening) {
	path := filepath.Join(h.dir, "slow.json")
	h.write(t, "slow.json", slowJSON(h.pod, 1))
	h.waitFrontend(t, slowVIP+":80", "TCP", addrs(8080, h.pod)...)
	h.waitFrontend(t, slowVIP+":53", "UDP", addrs(5353, h.pod)...)

	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	tcp := h.sb.Start(t, h.client, true, bin, "tcp-loop", "--addr", slowVIP+":80", "--duration", "4s", "--interval", "5ms")
	udp := h.sb.Start(t, h.client, true, bin, "udp", "--addr", slowVIP+":53", "--count", "60", "--interval", "50ms")

	// Rewritten in place: truncated, then written in chunks with pauses
	// longer than the source's debounce, so it is read half-written.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	time.Sleep(300 * time.Millisecond) // the empty file is seen
	for chunk := range slicesChunk([]byte(slowJSON(h.pod, 2)), 96) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*sandbox.Process{tcp, udp} {
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("a probe did not finish")
		}
	}
	// The source either waited for the writer to close the file or read it
	// half-written and kept the last good version: either way it met a
	// half-written file.
	if h.agent.WaitStderr("wait for the file to be written", 0) != nil {
		if err := h.agent.WaitStderr("keep the last good version of the file", time.Second); err != nil {
			t.Errorf("the file was never met half-written, so the case shows nothing: %v", err)
		}
	}
	sum, err := sandbox.ParseLoopSummary(tcp.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Attempts < 100 || sum.Failures != 0 {
		t.Errorf("TCP during the slow write: %d attempts, %d failed (first: %s); want many, none failed", sum.Attempts, sum.Failures, sum.FirstErr)
	}
	rs, err := sandbox.ProbeResults(udp.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if got := sandbox.Backends(rs); len(rs) != 60 || got["healthy"] != 60 {
		t.Errorf("UDP during the slow write: %v of %d datagrams answered, want 60 of 60", got, len(rs))
	}
}

// slicesChunk yields b in pieces of n bytes.
func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

func directoryRecreated(t *testing.T, h *hardening) {
	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	if err := h.agent.WaitStderr("directory is gone", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.requireHealthy(t, "while the directory is gone")

	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.write(t, healthyFile, healthyYAML(h.pod))
	h.write(t, "reborn.yaml", serviceYAML("reborn", []string{"10.96.0.61"}, httpPort)+
		sliceYAML("reborn", "reborn-1", "IPv4", []servicePort{httpPort}, ready(h.pod)))
	h.waitFrontend(t, "10.96.0.61:80", "TCP", addrs(8080, h.pod)...)
	// A second, plus what one run of socklb inspect takes to see it.
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("a Service in the recreated directory took %v to be programmed, want about a second at most", took)
	}
}

func fullMapSummarised(t *testing.T, h *hardening) {
	// The healthy Service holds 4 of the 16 entries (two frontends, each a
	// master and a slot); 10 more Services of 2 entries each cannot all fit.
	var b strings.Builder
	for i := range 10 {
		name := fmt.Sprintf("filler-%d", i)
		b.WriteString(serviceYAML(name, []string{fmt.Sprintf("10.96.1.%d", i+1)}, httpPort))
		b.WriteString(sliceYAML(name, name+"-1", "IPv4", []servicePort{httpPort}, ready(h.pod)))
		b.WriteString("---\n")
	}
	h.write(t, "filler.yaml", b.String())
	const summary = "sync left some of the state out; retrying"
	if err := h.agent.WaitStderr(summary, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Let the backoff (100 ms, doubling) retry a few times.
	deadline := time.Now().Add(15 * time.Second)
	for countLines(h.agent.Stderr(), summary, "") < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	log := h.agent.Stderr()
	if n := countLines(log, summary, ""); n < 4 {
		t.Fatalf("%d summary lines in 15 s, want the retries to go on", n)
	}
	if n := countLines(log, summary, `"level":"error"`); n != 1 {
		t.Errorf("%d summary lines at error level, want 1: a retry failing the same way is debug", n)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, summary) && strings.Contains(line, `"level":"error"`) {
			t.Logf("summary: %s", line)
		}
		if strings.Contains(line, summary) && (!strings.Contains(line, `"failures":4`) || !strings.Contains(line, `"more_failures":1`) || len(line) > 4096) {
			t.Errorf("summary line: %s\nwant 4 failures, 3 named and 1 counted, in at most 4 KiB (a stack trace included, at debug)", line)
			break
		}
	}
}

func countLines(log, substr, level string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, substr) && strings.Contains(line, level) {
			n++
		}
	}
	return n
}

func deletedPinRepaired(t *testing.T, h *hardening) {
	before := h.waitFrontend(t, vip+":80", "TCP", addrs(8080, h.pod)...)
	mapPin := filepath.Join(h.sb.PinDir, "lb_services")
	linkPins := []string{filepath.Join(h.sb.PinDir, "links", "cgroup-connect4"), filepath.Join(h.sb.PinDir, "links", "cgroup-sendmsg4")}
	for _, pin := range append([]string{mapPin}, linkPins...) {
		if err := os.Remove(pin); err != nil {
			t.Fatal(err)
		}
	}
	// The programs hold the map, the agent the links: nothing stops.
	h.requireHealthy(t, "with the pins gone")

	h.write(t, "nudge.yaml", serviceYAML("nudge", []string{"10.96.0.62"}, httpPort)) // the next sync
	if err := h.agent.WaitStderr(`"repaired":["lb_services","links/cgroup-connect4","links/cgroup-sendmsg4"]`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := programMapIDs(t, linkPins[0]); !want[pinnedMapID(t, mapPin)] {
		t.Errorf("the repaired pin %s is not the map connect4 uses (its maps: %v)", mapPin, want)
	}

	// What the pins are for: with the agent dead the datapath goes on,
	// and a restarted agent finds the state, ids and all.
	if err := h.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h.agent.Done()
	for _, p := range []struct{ mode, addr string }{{"tcp", vip + ":80"}, {"udp", vip + ":53"}} {
		if got := sandbox.Backends(h.probe(t, p.mode, "--addr", p.addr, "--count", "5")); got["healthy"] != 5 {
			t.Errorf("with the agent dead, %s to the healthy Service answered %v of 5", p.mode, got)
		}
	}
	h.start(t)
	after := h.waitFrontend(t, vip+":80", "TCP", addrs(8080, h.pod)...)
	if after.ServiceID != before.ServiceID {
		t.Errorf("service id after a restart = %d, want %d: the restart did not find the repaired map", after.ServiceID, before.ServiceID)
	}
}

func pinnedMapID(t *testing.T, pin string) ebpf.MapID {
	t.Helper()
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("the pin was not repaired: %v", err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// programMapIDs is the set of maps used by the program of the link pinned
// at pin.
func programMapIDs(t *testing.T, pin string) map[ebpf.MapID]bool {
	t.Helper()
	prog := sandbox.LinkedProgram(t, pin)
	pinfo, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, ok := pinfo.MapIDs()
	if !ok {
		t.Fatal(errors.New("the kernel gives no map ids of a program"))
	}
	out := map[ebpf.MapID]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// bigSliceYAML is an EndpointSlice of n endpoints in 10.128.0.0/9, none of
// which answers: finding 5 is about what the maps hold.
func bigSliceYAML(service, name string, from, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s, namespace: default, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n", name, service)
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "- {addresses: [\"10.%d.%d.%d\"], conditions: {ready: true}}\n", 128+i>>16, i>>8&255, i&255)
	}
	return b.String()
}

func tooManyBackendsCapped(t *testing.T, h *hardening) {
	const bigVIP = "10.96.0.70"
	var b strings.Builder
	b.WriteString(serviceYAML("big", []string{bigVIP}, httpPort))
	for i := 0; i < 70; i++ {
		b.WriteString(bigSliceYAML("big", fmt.Sprintf("big-%d", i), i*1000, 1000))
	}
	h.write(t, "big.yaml", b.String())
	deadline := time.Now().Add(30 * time.Second)
	for {
		views, err := h.sb.InspectServices(t, h.socklb)
		if err == nil {
			for _, v := range views {
				if v.Frontend == bigVIP+":80" && v.Active == 65535 && len(v.Problems) == 0 {
					goto held
				}
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, v := range views {
				if v.Frontend == bigVIP+":80" {
					seen = append(seen, fmt.Sprintf("active=%d problems=%v", v.Active, v.Problems))
				}
			}
			t.Fatalf("frontend %s:80 never held 65,535 backends: %v %v", bigVIP, seen, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
held:
	if err := h.agent.WaitStderr("4465 of 70000 backends left out", 5*time.Second); err != nil {
		t.Errorf("no log line says how many backends were left out: %v", err)
	}
}

func unservedPortSaid(t *testing.T, h *hardening) {
	const vip2 = "10.96.0.71"
	web := servicePort{name: "web", port: 8080, targetPort: "8080", protocol: "TCP", slicePort: 8080}
	h.write(t, "unserved.yaml", serviceYAML("unserved", []string{vip2}, httpPort)+
		sliceYAML("unserved", "unserved-1", "IPv4", []servicePort{web}, ready(h.pod)))
	if err := h.agent.WaitStderr(`no EndpointSlice port has this name and protocol`, 5*time.Second); err != nil {
		t.Fatalf("a Service port no slice names was not said: %v", err)
	}
	if log := h.agent.Stderr(); !strings.Contains(log, "default/unserved") {
		t.Errorf("the line does not name Service default/unserved")
	}
	rs := h.probe(t, "tcp", "--addr", vip2+":80", "--count", "1")
	if want := refusedErrno(t); len(rs) != 1 || rs[0].OK || rs[0].Errno != want {
		t.Errorf("the unserved frontend: %+v, want a connect refused with %s", rs, want)
	}
}
