package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// saveScrapeEnv names a file the test writes one /metrics scrape to, taken
// while the services map is full (for the closing note of issue 8).
const saveScrapeEnv = "SOCKLB_SAVE_SCRAPE"

// The agent serves kube-proxy's metrics and socklb's on --metrics-address,
// and /healthz on --healthz-address: the figures are sane after a sync of a
// directory, the map fill levels are what socklb inspect shows, the
// datapath counters follow connects, and /healthz turns 503 while a full
// services map fails the syncs for longer than --healthz-timeout, and 200
// again once they succeed.
func TestMetricsAndHealth(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "pod-a", "pod-b")
	n.writeWeb(t, ready(pods[0]), ready(pods[1]))
	n.write(t, "empty.yaml", serviceYAML("empty", []string{"10.96.0.51"}, httpPort)+
		sliceYAML("empty", "empty-1", "IPv4", []servicePort{httpPort}, endpoint{addr: "10.244.0.99"}))
	start := time.Now()
	// The agent's netns is the sandbox's own: port 0 still asks for a free
	// port, which the agent logs.
	n.agent = n.sb.Start(t, n.sb.Node, false, n.socklb, "agent",
		"--from-dir", n.dir, "--cgroup", n.sb.Cgroup, "--bpffs", n.sb.PinDir, "--node-name", "test-node",
		"--metrics-address", "127.0.0.1:0", "--healthz-address", "127.0.0.1:0", "--healthz-timeout", "2s",
		"--map-size-services", "16", "--profiling")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", n.agent.Stderr())
		}
	})
	metricsURL := "http://" + loggedAddress(t, n.agent, "serving metrics") + "/metrics"
	healthzURL := "http://" + loggedAddress(t, n.agent, "serving healthz") + "/healthz"
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	n.waitFrontend(t, "10.96.0.51:80", "TCP")
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	t.Run("kube-proxy's sync figures", func(t *testing.T) {
		m := scrape(t, n, metricsURL)
		syncs := m.histogram(t, "kubeproxy_sync_proxy_rules_duration_seconds", "IPv4")
		if syncs.GetSampleCount() < 1 || syncs.GetSampleSum() <= 0 || syncs.GetSampleSum() > 10*float64(syncs.GetSampleCount()) {
			t.Errorf("sync durations: %d syncs taking %v s, want at least one, each under 10 s", syncs.GetSampleCount(), syncs.GetSampleSum())
		}
		if b := syncs.GetBucket(); len(b) < 15 || b[0].GetUpperBound() != 0.001 || b[14].GetUpperBound() != 16.384 {
			t.Errorf("sync duration buckets %v, want kube-proxy's 15, 1 ms doubling to 16.384 s", b)
		}
		for _, name := range []string{"kubeproxy_sync_proxy_rules_last_timestamp_seconds", "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"} {
			at := time.Unix(0, int64(m.value(t, name, "IPv4")*1e9))
			if at.Before(start.Add(-time.Second)) || at.After(time.Now()) {
				t.Errorf("%s = %s, want between the agent's start (%s) and now", name, at, start)
			}
		}
		for _, name := range []string{"kubeproxy_sync_proxy_rules_service_changes_pending", "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
			"kubeproxy_sync_proxy_rules_service_changes_total", "kubeproxy_sync_proxy_rules_endpoint_changes_total"} {
			if v := m.value(t, name, ""); v != 0 {
				t.Errorf("%s = %v, want 0: the first sync reads the directory whole, as no change", name, v)
			}
		}
		if v := m.value(t, "socklb_sync_failures_total", ""); v != 0 {
			t.Errorf("socklb_sync_failures_total = %v, want 0", v)
		}
		if m.families["go_goroutines"] == nil || m.families["process_resident_memory_bytes"] == nil {
			t.Error("the Go and process collectors are missing")
		}
	})

	t.Run("--profiling serves Go's heap profile beside the metrics", func(t *testing.T) {
		url := strings.TrimSuffix(metricsURL, "/metrics") + "/debug/pprof/heap?debug=1"
		if code, body := get(t, n, url); code != 200 || !strings.Contains(body, "heap profile:") {
			t.Fatalf("GET %s = %d %.200s, want 200 and a heap profile", url, code, body)
		}
	})

	t.Run("map entries are what socklb inspect shows", func(t *testing.T) {
		m := scrape(t, n, metricsURL)
		services, backends := inspectCounts(t, n)
		for _, c := range []struct {
			name string
			want float64
		}{{lbmap.ServicesMap, services}, {lbmap.BackendsMap, backends}, {lbmap.RevNatMap, 2}, {lbmap.ServiceNamesMap, 2}} {
			if got := m.value(t, "socklb_bpf_map_entries", c.name); got != c.want {
				t.Errorf("socklb_bpf_map_entries{map=%s} = %v, socklb inspect shows %v", c.name, got, c.want)
			}
		}
		if got := m.value(t, "socklb_bpf_map_capacity", lbmap.ServicesMap); got != 16 {
			t.Errorf("socklb_bpf_map_capacity{map=%s} = %v, want the 16 of --map-size-services", lbmap.ServicesMap, got)
		}
	})

	t.Run("connects count as translated and refused", func(t *testing.T) {
		before := scrape(t, n, metricsURL)
		requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "5"))
		for _, r := range n.probe(t, "tcp", "--addr", "10.96.0.51:80", "--count", "3", "--timeout", "2s") {
			if r.OK {
				t.Fatalf("connect to a Service without endpoints succeeded: %+v", r)
			}
		}
		after := scrape(t, n, metricsURL)
		for reason, want := range map[string]float64{"translated": 5, "no_backend": 3} {
			got := after.value(t, "socklb_datapath_events_total", reason) - before.value(t, "socklb_datapath_events_total", reason)
			if got != want {
				t.Errorf("socklb_datapath_events_total{reason=%s} grew by %v, want %v", reason, got, want)
			}
		}
	})

	t.Run("healthz is 200, then 503 while syncs fail past the timeout, then 200", func(t *testing.T) {
		if code, body := get(t, n, healthzURL); code != 200 || !strings.Contains(body, `"lastUpdated"`) || strings.Contains(body, "nodeEligible") {
			t.Fatalf("GET /healthz = %d %s, want 200 with lastUpdated and, standalone, no nodeEligible", code, body)
		}
		// 10 Services of 2 entries each into the 12 entries left: 4 do not
		// fit, and the syncs fail until they go. The slices carry the
		// EndpointSlice controller's trigger time, as in a cluster.
		n.write(t, "filler.yaml", fillerYAML(pods[0], 10, time.Now()))
		waitHealthz(t, n, healthzURL, 503, 15*time.Second)
		m := scrape(t, n, metricsURL)
		if path := os.Getenv(saveScrapeEnv); path != "" {
			if err := os.WriteFile(path, []byte(m.text), 0o644); err != nil {
				t.Error(err)
			}
		}
		for _, c := range []struct {
			name, label string
			atLeast     float64
		}{
			{"socklb_frontends_left_out", "services_map_full", 4},
			{"socklb_sync_failures_total", "", 1},
			{"kubeproxy_sync_proxy_rules_service_changes_total", "", 10},
			{"kubeproxy_sync_proxy_rules_endpoint_changes_total", "", 10},
			{"socklb_bpf_map_entries", lbmap.ServicesMap, 16},
		} {
			if got := m.value(t, c.name, c.label); got < c.atLeast {
				t.Errorf("%s{%s} = %v with the map full, want at least %v", c.name, c.label, got, c.atLeast)
			}
		}
		if got := m.value(t, "socklb_frontends_left_out", "services_map_full"); got != 4 {
			t.Errorf("socklb_frontends_left_out{reason=services_map_full} = %v, want 4", got)
		}
		if err := os.Remove(n.dir + "/filler.yaml"); err != nil {
			t.Fatal(err)
		}
		waitHealthz(t, n, healthzURL, 200, 15*time.Second)
		m = scrape(t, n, metricsURL)
		if got := m.value(t, "socklb_frontends_left_out", "services_map_full"); got != 0 {
			t.Errorf("socklb_frontends_left_out{reason=services_map_full} = %v after the filler went, want 0", got)
		}
		latency := m.histogram(t, "kubeproxy_network_programming_duration_seconds", "IPv4")
		if latency.GetSampleCount() < 1 || latency.GetSampleSum() > 60*float64(latency.GetSampleCount()) {
			t.Errorf("network programming: %d observations, %v s in all; want some, each under a minute", latency.GetSampleCount(), latency.GetSampleSum())
		}
		if got := m.value(t, "kubeproxy_proxy_healthz_total", "503"); got < 1 {
			t.Errorf("kubeproxy_proxy_healthz_total{code=503} = %v, want the 503s answered", got)
		}
	})
}

// fillerYAML is count Services at 10.96.1.1... with one endpoint each, their
// slices annotated as triggered at triggered.
func fillerYAML(pod *sandbox.Host, count int, triggered time.Time) string {
	var b strings.Builder
	for i := range count {
		name := fmt.Sprintf("filler-%d", i)
		b.WriteString(serviceYAML(name, []string{fmt.Sprintf("10.96.1.%d", i+1)}, httpPort))
		slice := sliceYAML(name, name+"-1", "IPv4", []servicePort{httpPort}, ready(pod))
		b.WriteString(strings.Replace(slice, "  labels:", fmt.Sprintf("  annotations: {endpoints.kubernetes.io/last-change-trigger-time: %q}\n  labels:",
			triggered.UTC().Format(time.RFC3339Nano)), 1))
		b.WriteString("---\n")
	}
	return b.String()
}

// loggedAddress waits for the agent's line msg and returns its address.
func loggedAddress(t testing.TB, agent *sandbox.Process, msg string) string {
	t.Helper()
	if err := agent.WaitStderr(`"msg":"`+msg+`"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(agent.Stderr(), "\n") {
		var entry struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
			return entry.Address
		}
	}
	t.Fatalf("no address in the agent's %q line", msg)
	return ""
}

// get fetches url from inside the node's netns (where the agent listens on
// its loopback), outside the sandbox cgroup.
func get(t testing.TB, n *node, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := n.sb.Run(t, ctx, n.sb.Node, false, "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	i := strings.LastIndexByte(out, '\n')
	var code int
	if _, err := fmt.Sscan(out[i+1:], &code); err != nil {
		t.Fatalf("GET %s: no status in %q", url, out)
	}
	return code, out[:i]
}

func waitHealthz(t *testing.T, n *node, url string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := get(t, n, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz answered %d %s for %s, want %d", code, body, timeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scraped is one /metrics scrape, parsed.
type scraped struct {
	text     string
	families map[string]*dto.MetricFamily
}

func scrape(t testing.TB, n *node, url string) scraped {
	t.Helper()
	code, body := get(t, n, url)
	if code != 200 {
		t.Fatalf("GET /metrics = %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body + "\n"))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return scraped{text: body + "\n", families: mfs}
}

// metric is the series of name whose one label has the value label ("":
// the series without labels).
func (s scraped) metric(t testing.TB, name, label string) *dto.Metric {
	t.Helper()
	mf := s.families[name]
	if mf == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	for _, m := range mf.GetMetric() {
		if (label == "" && len(m.GetLabel()) == 0) || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
			return m
		}
	}
	t.Fatalf("/metrics has no %s{%s}", name, label)
	return nil
}

func (s scraped) value(t testing.TB, name, label string) float64 {
	t.Helper()
	m := s.metric(t, name, label)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

func (s scraped) histogram(t *testing.T, name, label string) *dto.Histogram {
	t.Helper()
	h := s.metric(t, name, label).GetHistogram()
	if h == nil {
		t.Fatalf("%s is not a histogram", name)
	}
	return h
}

// inspectCounts is how many services map entries (each scope's master and
// slots) and backends socklb inspect shows.
func inspectCounts(t *testing.T, n *node) (services, backends float64) {
	t.Helper()
	views, err := n.sb.InspectServices(t, n.socklb)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		services += 1 + float64(len(v.Backends))
		if v.Internal != nil {
			services += 1 + float64(len(v.Internal.Backends))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := n.sb.Run(t, ctx, n.sb.Node, false, n.socklb, "inspect", "backends", "--bpffs", n.sb.PinDir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var bv []inspect.BackendView
	if err := json.Unmarshal([]byte(out), &bv); err != nil {
		t.Fatalf("socklb inspect backends: %v: %s", err, out)
	}
	return services, float64(len(bv))
}
