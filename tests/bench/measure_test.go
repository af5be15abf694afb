//go:build bench

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/tests/probe"
	"github.com/socklb/socklb/tests/sandbox"
)

const (
	latencyChunks = 4                       // direct, first, last interleaved this many times
	rateDuration  = 1500 * time.Millisecond // per parallel new-connection run
	iperfSeconds  = 1                       // per run; two runs each, interleaved
	wrkDuration   = "1s"
	// propagationGap keeps writes further apart than kube-proxy's default
	// minimum sync period (1 s), so no change waits for it.
	propagationGap    = 1050 * time.Millisecond
	propagationWindow = 60 * time.Second
	bpfStatsCalls     = 2000
)

func (h *harness) directAddr(port int) string {
	return fmt.Sprintf("%s:%d", h.backends[0].IPv4, port)
}

// directAddrs are every backend's own address: "direct" spreads over the
// same three pods a Service's connections do, so that the ratio compares
// the paths, not one warm server with three.
func (h *harness) directAddrs() []string {
	var addrs []string
	for _, b := range h.backends {
		addrs = append(addrs, fmt.Sprintf("%s:%d", b.IPv4, backendPort))
	}
	return addrs
}

// measureTraffic takes the datapath figures: direct always, through the
// Services when a proxy runs.
func (h *harness) measureTraffic(t *testing.T, s *Session, proxied bool) {
	h.measureLatency(t, s, proxied)
	h.measureRate(t, s, proxied)
	h.measureThroughput(t, s, proxied)
	h.measureNodePort(t, s, proxied)
}

// sockprobeTCP runs sockprobe tcp count times from client pod i (each
// connection also calls getpeername, which runs socklb's getpeername4) and
// returns the successful connections' durations (µs) and the failures.
func (h *harness) sockprobeTCP(t *testing.T, client int, addr string, count int) ([]int64, int) {
	ctx, cancel := boundedCtx(t, 2*time.Minute)
	defer cancel()
	out, err := h.c.Run(t, ctx, h.clients[client], true, h.sockprobe, "tcp", "--addr", addr, "--count", strconv.Itoa(count), "--timeout", "2s")
	if err != nil {
		t.Fatalf("sockprobe tcp %s: %v", addr, err)
	}
	var durations []int64
	failures := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r probe.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("parsing sockprobe line %q: %v", line, err)
		}
		if r.OK {
			durations = append(durations, r.DurUS)
		} else {
			failures++
		}
	}
	return durations, failures
}

// connections is connprobe's summary line.
type connections struct {
	OK          int     `json:"ok"`
	Failures    int     `json:"failures"`
	FirstErr    string  `json:"first_err"`
	DurMS       int64   `json:"dur_ms"`
	DurationsUS []int64 `json:"durations_us"`
}

// connprobe runs connprobe from client pod i to addrs (one at random per
// connection) for count connections or duration.
func (h *harness) connprobe(t *testing.T, client int, addrs []string, count int, duration time.Duration, latencies bool) connections {
	ctx, cancel := boundedCtx(t, duration+time.Minute)
	defer cancel()
	argv := []string{h.connprobeBin, "--addrs", strings.Join(addrs, ","), "--count", strconv.Itoa(count), "--duration", duration.String(), "--timeout", "2s"}
	if latencies {
		argv = append(argv, "--latencies")
	}
	out, err := h.c.Run(t, ctx, h.clients[client], true, argv...)
	if err != nil {
		t.Fatalf("connprobe %v: %v", addrs, err)
	}
	var c connections
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &c); err != nil {
		t.Fatalf("parsing connprobe's line %q: %v", out, err)
	}
	if c.Failures > 0 {
		// The report counts them; the log says what they were.
		t.Logf("connprobe from client %d to %v: %d of %d connects failed, the first with %s", client, addrs, c.Failures, c.OK+c.Failures, c.FirstErr)
	}
	return c
}

func (h *harness) measureLatency(t *testing.T, s *Session, proxied bool) {
	type target struct {
		addrs    []string
		p50, p99 string
	}
	targets := []target{{h.directAddrs(), latDirectP50, latDirectP99}}
	if proxied {
		targets = append(targets,
			target{[]string{h.vips[0] + ":80"}, latFirstP50, latFirstP99},
			target{[]string{h.vips[s.Scale-1] + ":80"}, latLastP50, latLastP99})
	}
	durations := make([][]int64, len(targets))
	per := *connectsFlag / latencyChunks
	for range latencyChunks {
		for i, target := range targets {
			c := h.connprobe(t, 0, target.addrs, per, time.Minute, true)
			durations[i] = append(durations[i], c.DurationsUS...)
			s.Failures += c.Failures
		}
	}
	for i, target := range targets {
		slices.Sort(durations[i])
		if len(durations[i]) == 0 {
			t.Fatalf("%s: no connection to %v succeeded", s.Contender, target.addrs)
		}
		s.Values[target.p50] = float64(percentile(durations[i], 50))
		s.Values[target.p99] = float64(percentile(durations[i], 99))
	}
}

// measureRate runs clientsPerPod tcp-loops on every client pod at once.
func (h *harness) measureRate(t *testing.T, s *Session, proxied bool) {
	s.Values[rateDirect] = h.parallelRate(t, s, h.directAddrs())
	if proxied {
		s.Values[rateVIP] = h.parallelRate(t, s, []string{h.vips[0] + ":80"})
	}
}

// parallelRate runs clientsPerPod connprobes on every client pod at once,
// each spreading its connections over addrs.
func (h *harness) parallelRate(t *testing.T, s *Session, addrs []string) float64 {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, longest int64
	for i := range h.clients {
		for range clientsPerPod {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := h.connprobe(t, i, addrs, 10_000_000, rateDuration, false)
				mu.Lock()
				defer mu.Unlock()
				ok += int64(c.OK)
				s.Failures += c.Failures
				longest = max(longest, c.DurMS)
			}()
		}
	}
	wg.Wait()
	if longest == 0 {
		t.Fatalf("new connections to %v: the clients ran for no time", addrs)
	}
	return float64(ok) / (float64(longest) / 1000)
}

func (h *harness) measureThroughput(t *testing.T, s *Session, proxied bool) {
	direct := h.backends[0].IPv4.String()
	if !proxied {
		s.Values[tputDirect] = (h.iperf(t, direct) + h.iperf(t, direct)) / 2
		return
	}
	// Direct, ClusterIP, ClusterIP, direct: a drift of the machine's load
	// over the phase weighs on both alike.
	d1 := h.iperf(t, direct)
	v1 := h.iperf(t, h.iperfVIP)
	v2 := h.iperf(t, h.iperfVIP)
	d2 := h.iperf(t, direct)
	s.Values[tputDirect], s.Values[tputVIP] = (d1+d2)/2, (v1+v2)/2
}

// iperf is one iperf3 run from client pod 0, in Gbit/s received.
func (h *harness) iperf(t *testing.T, host string) float64 {
	ctx, cancel := boundedCtx(t, time.Minute)
	defer cancel()
	out, err := h.c.Run(t, ctx, h.clients[0], true, "iperf3", "--client", host, "--port", strconv.Itoa(iperfPort),
		"--time", strconv.Itoa(iperfSeconds), "--json", "--connect-timeout", "2000")
	if err != nil {
		t.Fatalf("iperf3 to %s: %v\n%s", host, err, tail(out, 2000))
	}
	var result struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &result); err != nil || result.Error != "" || result.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 to %s: %v %s\n%s", host, err, result.Error, tail(out, 2000))
	}
	return result.End.SumReceived.BitsPerSecond / 1e9
}

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func (h *harness) measureNodePort(t *testing.T, s *Session, proxied bool) {
	s.Values[npDirect] = h.wrk(t, fmt.Sprintf("http://%s/", h.directAddr(backendPort)))
	if proxied {
		s.Values[npVIP] = h.wrk(t, fmt.Sprintf("http://%s:%d/", h.node.IPv4, nodePort))
	}
}

// wrk runs from the outside client; namesrv closes every connection, so
// each request is a new flow.
func (h *harness) wrk(t *testing.T, url string) float64 {
	ctx, cancel := boundedCtx(t, time.Minute)
	defer cancel()
	out, err := h.c.Run(t, ctx, h.c.Client, false, "wrk", "-t1", "-c8", "-d"+wrkDuration, "--timeout", "2s", url)
	if err != nil {
		t.Fatalf("wrk %s: %v", url, err)
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("wrk %s printed no rate:\n%s", url, out)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	return rate
}

// measureBPFStats turns kernel.bpf_stats_enabled on for this phase only
// and divides each program's run time by its run count.
func (h *harness) measureBPFStats(t *testing.T, s *Session) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()
	perCall := func(pin string, run func()) float64 {
		before := sandbox.LinkedProgStats(t, h.node.PinDir, pin)
		run()
		after := sandbox.LinkedProgStats(t, h.node.PinDir, pin)
		runs := after.RunCount - before.RunCount
		if runs == 0 {
			t.Fatalf("%s did not run", pin)
		}
		return float64((after.Runtime - before.Runtime).Nanoseconds()) / float64(runs)
	}
	s.Values[connect4Xlat] = perCall("cgroup-connect4", func() { h.sockprobeTCP(t, 0, h.vips[0]+":80", bpfStatsCalls) })
	s.Values[getpeer4Xlat] = perCall("cgroup-getpeername4", func() { h.sockprobeTCP(t, 0, h.vips[0]+":80", bpfStatsCalls) })
	s.Values[connect4Pass] = perCall("cgroup-connect4", func() { h.sockprobeTCP(t, 0, h.directAddr(backendPort), bpfStatsCalls) })
	s.Values[sendmsg4Xlat] = perCall("cgroup-sendmsg4", func() {
		ctx, cancel := boundedCtx(t, time.Minute)
		defer cancel()
		if out, err := h.c.Run(t, ctx, h.clients[0], true, h.sockprobe, "udp", "--addr", h.udpVIP+":53", "--count", strconv.Itoa(bpfStatsCalls), "--timeout", "1s"); err != nil {
			t.Fatalf("sockprobe udp: %v\n%s", err, tail(out, 1000))
		}
	})
}

// measurePropagation switches the propagation Service's one endpoint
// between two backends and times each switch until a new connection
// reaches the new one.
func (h *harness) measurePropagation(t *testing.T, name string, changes int) []time.Duration {
	watch := h.c.Start(t, h.clients[1], true, h.sockprobe, "watch", "--addr", h.propVIP+":80",
		"--duration", "2h", "--max", "1000000000", "--interval", "1ms", "--timeout", "200ms")
	defer watch.Kill()
	reader := newChangeReader(watch)
	if _, err := reader.waitFor(h.backends[h.propBackend].Name, 0, propagationWindow, nil); err != nil {
		t.Fatalf("%s: the propagation Service never answered: %v", name, err)
	}
	slices := h.client.DiscoveryV1().EndpointSlices(namespace)
	var latencies []time.Duration
	var lastWrite time.Time
	for i := range changes {
		slice, err := slices.Get(t.Context(), "bench-prop-bench", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		next := 1 - h.propBackend
		slice.Endpoints = endpoints([]string{h.backends[next].IPv4.String()})
		if wait := time.Until(lastWrite.Add(propagationGap)); wait > 0 {
			time.Sleep(wait)
		}
		written := time.Now()
		lastWrite = written
		if _, err := slices.Update(t.Context(), slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.propBackend = next
		reached, err := reader.waitFor(h.backends[next].Name, written.UnixNano(), propagationWindow, nil)
		if err != nil {
			t.Fatalf("%s: change %d: %v", name, i+1, err)
		}
		latencies = append(latencies, time.Duration(reached-written.UnixNano()))
		if (i+1)%10 == 0 {
			progress("%s: %d/%d EndpointSlice changes", name, i+1, changes)
		}
	}
	return latencies
}

// changeReader follows sockprobe watch's output.
type changeReader struct {
	proc *sandbox.Process
	seen int // bytes of stdout already parsed
	last probe.Change
}

func newChangeReader(p *sandbox.Process) *changeReader { return &changeReader{proc: p} }

// waitFor returns the time at which backend ("" for any) answered, at or
// after since; tick, if given, is called every 10 s of waiting.
func (c *changeReader) waitFor(backend string, since int64, timeout time.Duration, tick func(time.Duration)) (int64, error) {
	start := time.Now()
	nextTick := start.Add(10 * time.Second)
	for time.Since(start) < timeout {
		out := c.proc.Stdout()[c.seen:]
		complete := strings.LastIndexByte(out, '\n') + 1
		for _, line := range strings.Split(out[:complete], "\n") {
			if line == "" {
				continue
			}
			var ch probe.Change
			if err := json.Unmarshal([]byte(line), &ch); err != nil {
				return 0, fmt.Errorf("parsing watch line %q: %w", line, err)
			}
			c.last = ch
			if (backend == "" || ch.Backend == backend) && ch.UnixNano >= since {
				c.seen += strings.Index(out, line) + len(line) + 1
				return ch.UnixNano, nil
			}
		}
		c.seen += complete
		if c.last.Backend == backend && backend != "" && c.last.UnixNano >= since {
			return c.last.UnixNano, nil
		}
		if c.proc.Exited() {
			return 0, fmt.Errorf("watch exited: %s", c.proc.Stderr())
		}
		if tick != nil && time.Now().After(nextTick) {
			tick(time.Since(start))
			nextTick = nextTick.Add(10 * time.Second)
		}
		time.Sleep(500 * time.Microsecond)
	}
	return 0, fmt.Errorf("backend %q did not answer within %s (last: %q): %w", backend, timeout, c.last.Backend, errNotAnswered)
}

// errNotAnswered is waitFor running out of time, as against the watch
// failing.
var errNotAnswered = errors.New("no answer in time")
