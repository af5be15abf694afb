package metrics

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/socklb/socklb/pkg/agent"
	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/pkg/syncer"
)

func stateOf(addrs ...string) *desired.State {
	s := &desired.State{Frontends: map[desired.Frontend]*desired.FrontendEntry{}}
	for _, a := range addrs {
		fe := desired.Frontend{Addr: netip.MustParseAddr(a), Port: 80, Proto: desired.TCP}
		s.Frontends[fe] = &desired.FrontendEntry{Frontend: fe}
	}
	return s
}

func TestFamilies(t *testing.T) {
	cases := []struct {
		name  string
		state *desired.State
		want  string
	}{
		{"no state", nil, "IPv4"},
		{"no frontends: kube-proxy's single-stack default", stateOf(), "IPv4"},
		{"IPv4 only", stateOf("10.96.0.10", "10.96.0.11"), "IPv4"},
		{"IPv6 only", stateOf("fd00::10"), "IPv6"},
		{"dual-stack", stateOf("fd00::10", "10.96.0.10"), "IPv4,IPv6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(Families(tc.state), ","); got != tc.want {
				t.Errorf("Families = %s, want %s", got, tc.want)
			}
		})
	}
}

// gauge reads one series of a vector.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// Each sync's report lands in kube-proxy's series under the families of
// its state, and in socklb's.
func TestSynced(t *testing.T) {
	full := errors.New("program default/big (10.96.0.20:80/TCP): the services map is full")
	cases := []struct {
		name    string
		reports []agent.SyncReport
		// want holds the expected value per series, named "metric{label}".
		want map[string]float64
	}{
		{
			"one full sync that succeeded",
			[]agent.SyncReport{{Full: true, Took: 3 * time.Millisecond, State: stateOf("10.96.0.10"),
				Result: syncer.Result{Upserts: 4}, ProgrammingLatencies: []time.Duration{time.Second, 2 * time.Second}}},
			map[string]float64{
				"sync_count{IPv4}": 1, "full_sync_count{IPv4}": 1, "partial_sync_count{IPv4}": 0,
				"programming_count{IPv4}": 2, "programming_sum{IPv4}": 3,
				"failures": 0, "upserts": 4, "last_synced_set{IPv4}": 1,
			},
		},
		{
			"a partial sync of a dual-stack state counts under both families",
			[]agent.SyncReport{{Took: time.Millisecond, State: stateOf("10.96.0.10", "fd00::10")}},
			map[string]float64{
				"sync_count{IPv4}": 1, "sync_count{IPv6}": 1, "partial_sync_count{IPv6}": 1, "full_sync_count{IPv4}": 0,
				"last_synced_set{IPv6}": 1,
			},
		},
		{
			"a failed sync: counted, the left out set, no last-synced time",
			[]agent.SyncReport{{Full: true, Err: full, State: stateOf("10.96.0.10"), Conflicts: 2,
				Result: syncer.Result{LeftOut: map[string]int{syncer.LeftOutServicesMapFull: 3}}}},
			map[string]float64{
				"failures": 1, "left_out{services_map_full}": 3, "left_out{conflict}": 2, "left_out{write_failed}": 0,
				"last_synced_set{IPv4}": 0,
			},
		},
		{
			"recovered: the left out gauge follows the last sync",
			[]agent.SyncReport{
				{Full: true, Err: full, State: stateOf("10.96.0.10"), Result: syncer.Result{LeftOut: map[string]int{syncer.LeftOutServicesMapFull: 3}}},
				{Full: true, State: stateOf("10.96.0.10")},
			},
			map[string]float64{"failures": 1, "left_out{services_map_full}": 0, "last_synced_set{IPv4}": 1, "sync_count{IPv4}": 2},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(nil, nil)
			for _, r := range tc.reports {
				m.Synced(r)
			}
			for series, want := range tc.want {
				if got := m.read(t, series); got != want {
					t.Errorf("%s = %v, want %v", series, got, want)
				}
			}
		})
	}
}

// read reads a series by the short names of TestSynced.
func (m *Metrics) read(t *testing.T, series string) float64 {
	t.Helper()
	name, label, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	hist := func(v *prometheus.HistogramVec, sum bool) float64 {
		h, err := v.GetMetricWithLabelValues(label)
		if err != nil {
			t.Fatal(err)
		}
		return histogramValue(t, h.(prometheus.Histogram), sum)
	}
	switch name {
	case "sync_count":
		return hist(m.syncDuration, false)
	case "full_sync_count":
		return hist(m.fullSyncDuration, false)
	case "partial_sync_count":
		return hist(m.partialSyncDuration, false)
	case "programming_count":
		return hist(m.programming, false)
	case "programming_sum":
		return hist(m.programming, true)
	case "failures":
		return value(t, m.syncFailures)
	case "upserts":
		return value(t, m.mapWrites.WithLabelValues("upsert"))
	case "left_out":
		return value(t, m.leftOut.WithLabelValues(label))
	case "last_synced_set":
		if value(t, m.lastSynced.WithLabelValues(label)) > 0 {
			return 1
		}
		return 0
	}
	t.Fatalf("no series %q", series)
	return 0
}

func histogramValue(t *testing.T, h prometheus.Histogram, sum bool) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	hm := mfs[0].GetMetric()[0].GetHistogram()
	if sum {
		return hm.GetSampleSum()
	}
	return float64(hm.GetSampleCount())
}

type counts source.ChangeCounts

func (c counts) ChangeCounts() source.ChangeCounts { return source.ChangeCounts(c) }

// The registry serves kube-proxy's names with their types, socklb's own,
// and the Go and process collectors, and passes Prometheus' lint.
func TestExposition(t *testing.T) {
	m := New(nil, counts{ServiceEvents: 7, EndpointSliceEvents: 9, ServicesPending: 1, EndpointSlicesPending: 2})
	m.Synced(agent.SyncReport{Full: true, Took: time.Millisecond, State: stateOf("10.96.0.10"), ProgrammingLatencies: []time.Duration{time.Second}})
	m.ObjectError(&desired.ObjectError{Kind: "EndpointSlice"})
	m.PinsRepaired([]string{"lb_services", "links/cgroup-connect4"})
	m.HealthServed("/healthz", 200)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType().String()
	}
	for name, typ := range map[string]string{
		"kubeproxy_sync_proxy_rules_duration_seconds":              "HISTOGRAM",
		"kubeproxy_sync_full_proxy_rules_duration_seconds":         "HISTOGRAM",
		"kubeproxy_network_programming_duration_seconds":           "HISTOGRAM",
		"kubeproxy_sync_proxy_rules_last_timestamp_seconds":        "GAUGE",
		"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "GAUGE",
		"kubeproxy_sync_proxy_rules_service_changes_total":         "COUNTER",
		"kubeproxy_sync_proxy_rules_endpoint_changes_total":        "COUNTER",
		"kubeproxy_sync_proxy_rules_service_changes_pending":       "GAUGE",
		"kubeproxy_sync_proxy_rules_endpoint_changes_pending":      "GAUGE",
		"kubeproxy_proxy_healthz_total":                            "COUNTER",
		"socklb_sync_failures_total":                               "COUNTER",
		"socklb_frontends_left_out":                                "GAUGE",
		"socklb_object_errors_total":                               "COUNTER",
		"socklb_pin_repairs_total":                                 "COUNTER",
		"go_goroutines":                                            "GAUGE",
		"process_cpu_seconds_total":                                "COUNTER",
	} {
		if types[name] != typ {
			t.Errorf("%s is %q, want %s", name, types[name], typ)
		}
	}
	for series, want := range map[string]float64{
		"kubeproxy_sync_proxy_rules_service_changes_total":    7,
		"kubeproxy_sync_proxy_rules_endpoint_changes_total":   9,
		"kubeproxy_sync_proxy_rules_endpoint_changes_pending": 2,
		"socklb_pin_repairs_total":                            2,
	} {
		if got := sampleOf(t, m.Registry(), series, ""); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := sampleOf(t, m.Registry(), "socklb_object_errors_total", "EndpointSlice"); got != 1 {
		t.Errorf("socklb_object_errors_total{kind=EndpointSlice} = %v, want 1", got)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.HasPrefix(p.Metric, "go_") && !strings.HasPrefix(p.Metric, "process_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// sampleOf is the value of the series of name whose one label value is
// label ("" for none).
func sampleOf(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if (label == "" && len(mt.GetLabel()) == 0) || (len(mt.GetLabel()) == 1 && mt.GetLabel()[0].GetValue() == label) {
				switch {
				case mt.Counter != nil:
					return mt.GetCounter().GetValue()
				case mt.Gauge != nil:
					return mt.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}
