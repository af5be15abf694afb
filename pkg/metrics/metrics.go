package metrics

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/agent"
	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/source"
)

// DefaultAddress is kube-proxy's metrics address.
const DefaultAddress = "127.0.0.1:10249"

// The IP family label values, v1.IPFamily's.
const (
	IPv4 = "IPv4"
	IPv6 = "IPv6"
)

// LeftOutConflict is the socklb_frontends_left_out reason of a Service's
// claim on a frontend that another Service holds.
const LeftOutConflict = "conflict"

// leftOutReasons are every reason socklb_frontends_left_out reports, so
// that each series exists at zero before it first counts.
var leftOutReasons = []string{LeftOutConflict,
	"services_map_full", "rev_nat_map_full", "no_service_id", "write_failed"}

// Metrics are the agent's metrics on a registry of their own.
type Metrics struct {
	reg *prometheus.Registry

	syncDuration, fullSyncDuration, partialSyncDuration *prometheus.HistogramVec
	programming                                         *prometheus.HistogramVec
	lastSynced, lastQueued                              *prometheus.GaugeVec
	healthz, livez                                      *prometheus.CounterVec

	syncFailures prometheus.Counter
	leftOut      *prometheus.GaugeVec
	objectErrors *prometheus.CounterVec
	pinRepairs   prometheus.Counter
	mapWrites    *prometheus.CounterVec

	mu       sync.Mutex
	families []string // of the last sync's state
}

// New registers the agent's metrics, the Go and process collectors, and,
// when maps is not nil, the datapath's figures read from maps at scrape
// time; changes, when not nil, gives the source's change counts.
func New(maps *lbmap.Maps, changes source.ChangeCounter) *Metrics {
	m := newSyncMetrics()
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if maps != nil {
		m.reg.MustRegister(newDatapathCollector(maps))
	}
	if changes != nil {
		m.reg.MustRegister(newChangesCollector(changes))
	}
	return m
}

// syncBuckets are kube-proxy's sync_proxy_rules_duration_seconds buckets.
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// programmingBuckets are kube-proxy's network_programming_duration_seconds
// buckets: 0.25 s, 0.5 s, 1-59 s by the second, 60-115 s by 5 s, 2-5 min
// by 30 s.
func programmingBuckets() []float64 {
	b := prometheus.LinearBuckets(0.25, 0.25, 2)
	b = append(b, prometheus.LinearBuckets(1, 1, 59)...)
	b = append(b, prometheus.LinearBuckets(60, 5, 12)...)
	return append(b, prometheus.LinearBuckets(120, 30, 7)...)
}

func newSyncMetrics() *Metrics {
	family := []string{"ip_family"}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "kubeproxy", Name: name, Help: help, Buckets: buckets}, family)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "kubeproxy", Name: name, Help: help}, family)
	}
	code := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kubeproxy", Name: name, Help: help}, []string{"code"})
	}
	m := &Metrics{
		reg:                 prometheus.NewRegistry(),
		syncDuration:        hist("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets),
		fullSyncDuration:    hist("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		partialSyncDuration: hist("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		programming:         hist("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", programmingBuckets()),
		lastSynced:          gauge("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced"),
		lastQueued:          gauge("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued"),
		healthz:             code("proxy_healthz_total", "Cumulative proxy healthz HTTP status"),
		livez:               code("proxy_livez_total", "Cumulative proxy livez HTTP status"),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "socklb", Name: "sync_failures_total",
			Help: "Syncs that left part of the desired state out of the maps (each is retried)"}),
		leftOut: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "socklb", Name: "frontends_left_out",
			Help: "Frontends the last sync left out of the maps, by reason (a map full, a write failed, a claim on a frontend another Service holds)"}, []string{"reason"}),
		objectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "socklb", Name: "object_errors_total",
			Help: "Problems found with objects (each counted once, when first seen), by the object's kind"}, []string{"kind"}),
		pinRepairs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "socklb", Name: "pin_repairs_total",
			Help: "Pins of maps and links put back after something removed or replaced them"}),
		mapWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "socklb", Name: "map_writes_total",
			Help: "Map entries the syncs wrote, by operation"}, []string{"op"}),
		families: []string{IPv4},
	}
	m.reg.MustRegister(m.syncDuration, m.fullSyncDuration, m.partialSyncDuration, m.programming,
		m.lastSynced, m.lastQueued, m.healthz, m.livez,
		m.syncFailures, m.leftOut, m.objectErrors, m.pinRepairs, m.mapWrites)
	for _, r := range leftOutReasons {
		m.leftOut.WithLabelValues(r)
	}
	for _, kind := range []string{"Service", "EndpointSlice"} {
		m.objectErrors.WithLabelValues(kind)
	}
	m.pinRepairs.Add(0)
	for _, op := range []string{"upsert", "delete"} {
		m.mapWrites.WithLabelValues(op)
	}
	// Like kube-proxy's sync loop, a start counts as queued: the first sync
	// is on its way.
	m.Queued()
	return m
}

// Registry is where the metrics are registered, for tests and for more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Queued records that a sync was asked for (agent.Config.OnQueued).
func (m *Metrics) Queued() {
	for _, f := range m.currentFamilies() {
		m.lastQueued.WithLabelValues(f).SetToCurrentTime()
	}
}

// Synced records what one sync did (agent.Config.OnSync).
func (m *Metrics) Synced(r agent.SyncReport) {
	families := Families(r.State)
	m.mu.Lock()
	m.families = families
	m.mu.Unlock()
	for _, f := range families {
		m.syncDuration.WithLabelValues(f).Observe(r.Took.Seconds())
		if r.Full {
			m.fullSyncDuration.WithLabelValues(f).Observe(r.Took.Seconds())
		} else {
			m.partialSyncDuration.WithLabelValues(f).Observe(r.Took.Seconds())
		}
		for _, l := range r.ProgrammingLatencies {
			m.programming.WithLabelValues(f).Observe(l.Seconds())
		}
	}
	m.mapWrites.WithLabelValues("upsert").Add(float64(r.Result.Upserts))
	m.mapWrites.WithLabelValues("delete").Add(float64(r.Result.Deletes))
	for _, reason := range leftOutReasons {
		m.leftOut.WithLabelValues(reason).Set(float64(r.Result.LeftOut[reason]))
	}
	m.leftOut.WithLabelValues(LeftOutConflict).Set(float64(r.Conflicts))
	if r.Err != nil {
		m.syncFailures.Inc()
		return
	}
	for _, f := range families {
		m.lastSynced.WithLabelValues(f).SetToCurrentTime()
	}
}

// ObjectError counts one new problem with an object (agent.Config.OnProblem).
func (m *Metrics) ObjectError(e *desired.ObjectError) {
	m.objectErrors.WithLabelValues(e.Kind).Inc()
}

// PinsRepaired counts pins put back (what agent.Config.RepairDatapath returns).
func (m *Metrics) PinsRepaired(pins []string) {
	m.pinRepairs.Add(float64(len(pins)))
}

// HealthServed counts one answer of the proxy health server, by path
// ("/healthz" or "/livez") and HTTP status.
func (m *Metrics) HealthServed(path string, code int) {
	switch path {
	case "/healthz":
		m.healthz.WithLabelValues(strconv.Itoa(code)).Inc()
	case "/livez":
		m.livez.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) currentFamilies() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.families
}

// Families are the IP families state holds frontends of, IPv4 first; IPv4
// alone when it holds none (or state is nil).
func Families(state *desired.State) []string {
	var v4, v6 bool
	if state != nil {
		for fe := range state.Frontends {
			if fe.Addr.Is4() {
				v4 = true
			} else {
				v6 = true
			}
			if v4 && v6 {
				break
			}
		}
	}
	switch {
	case v4 && v6:
		return []string{IPv4, IPv6}
	case v6:
		return []string{IPv6}
	}
	return []string{IPv4}
}

// Handler serves the registry in the Prometheus text format. A figure that
// cannot be read is left out of the scrape and logged, and the rest served.
func (m *Metrics) Handler(log *zap.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(log),
		ErrorHandling: promhttp.ContinueOnError,
	})
}
