//go:build bench

// Package bench measures socklb against kube-proxy (iptables and nftables
// modes) and against no proxy at all, on one node namespace, one control
// plane and the same pods, in alternating rounds, and writes
// docs/benchmarks.md and its plots. Run it with `make bench` or
// `make bench-quick`; the test is TestCompareProxies in compare_test.go.
//
// This file holds what a run measured and how the rounds are summed up;
// markdown.go and plots.go turn it into the report.
package bench

import (
	"math"
	"slices"
	"time"
)

// Contender names, in the order the report lists them.
const (
	noProxy          = "direct (no proxy)"
	socklbName       = "socklb"
	iptablesName     = "kube-proxy iptables"
	nftablesName     = "kube-proxy nftables"
	directPseudoName = "direct"
)

// Keys of Session.Values. A figure and the "direct" figure it is divided by
// are measured in the same session, with the same proxy loaded.
const (
	latDirectP50 = "lat_direct_p50_us"
	latDirectP99 = "lat_direct_p99_us"
	latFirstP50  = "lat_first_p50_us"
	latFirstP99  = "lat_first_p99_us"
	latLastP50   = "lat_last_p50_us"
	latLastP99   = "lat_last_p99_us"
	rateDirect   = "rate_direct"
	rateVIP      = "rate_vip"
	tputDirect   = "tput_direct_gbps"
	tputVIP      = "tput_vip_gbps"
	npDirect     = "nodeport_direct"
	npVIP        = "nodeport_vip"
	coldStart    = "cold_start_s"
	rssMiB       = "rss_mib"
	cpuSeconds   = "cpu_s"
	connect4Xlat = "connect4_translated_ns"
	connect4Pass = "connect4_passthrough_ns"
	sendmsg4Xlat = "sendmsg4_translated_ns"
	getpeer4Xlat = "getpeername4_translated_ns"
	// socklb's own programming latency of incremental syncs, from its log.
	agentProgP50 = "agent_programming_p50_ms"
	agentProgP99 = "agent_programming_p99_ms"
)

// ratioOf says which direct figure each proxied figure is divided by.
var ratioOf = map[string]string{
	latFirstP50: latDirectP50,
	latFirstP99: latDirectP99,
	latLastP50:  latDirectP50,
	latLastP99:  latDirectP99,
	rateVIP:     rateDirect,
	tputVIP:     tputDirect,
	npVIP:       npDirect,
}

// Session is one contender measured once at one scale: started, measured,
// stopped and cleaned up.
type Session struct {
	Scale     int
	Round     int
	Contender string
	Values    map[string]float64
	// Propagation holds each API change's time until the datapath used it.
	Propagation []time.Duration
	// Failures counts connects that failed during the measurements.
	Failures int
	// NotProgrammedAfter is set when the proxy had not programmed the last
	// Service by then: the session has no cold start and no traffic
	// figures, only the proxy's cost until it was stopped.
	NotProgrammedAfter time.Duration `json:",omitempty"`
	// NotRun is set for a round the contender was not run in because it
	// had not programmed this scale in an earlier round: another try would
	// spend the cold-start limit again to learn the same.
	NotRun bool `json:",omitempty"`
}

// Spread is the median of a figure over the rounds and its range.
type Spread struct {
	Median, Min, Max float64
	N                int
}

func spreadOf(values []float64) (Spread, bool) {
	if len(values) == 0 {
		return Spread{}, false
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return Spread{Median: median(sorted), Min: sorted[0], Max: sorted[len(sorted)-1], N: len(sorted)}, true
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile is the nearest-rank percentile (p in 0..100) of sorted values.
func percentile[T int64 | float64 | time.Duration](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Results is every session of a run.
type Results struct {
	Sessions []Session
}

func (r *Results) sessions(scale int, contender string) []Session {
	var out []Session
	for _, s := range r.Sessions {
		if s.Scale == scale && s.Contender == contender {
			out = append(out, s)
		}
	}
	return out
}

// Figure is a value's spread over the rounds of one contender at one scale.
func (r *Results) Figure(scale int, contender, key string) (Spread, bool) {
	var values []float64
	for _, s := range r.sessions(scale, contender) {
		if v, ok := s.Values[key]; ok {
			values = append(values, v)
		}
	}
	return spreadOf(values)
}

// NotProgrammed is how many of the contender's sessions at scale ended
// before it programmed every Service, and after how long the first did.
func (r *Results) NotProgrammed(scale int, contender string) (int, time.Duration) {
	n, after := 0, time.Duration(0)
	for _, s := range r.sessions(scale, contender) {
		if s.NotProgrammedAfter > 0 {
			if n == 0 {
				after = s.NotProgrammedAfter
			}
			n++
		}
	}
	return n, after
}

// NotRun is how many of the contender's rounds at scale it was not run in.
func (r *Results) NotRun(scale int, contender string) int {
	n := 0
	for _, s := range r.sessions(scale, contender) {
		if s.NotRun {
			n++
		}
	}
	return n
}

// Ratio is the spread of a figure divided, session by session, by the
// direct figure measured in the same session.
func (r *Results) Ratio(scale int, contender, key string) (Spread, bool) {
	base, ok := ratioOf[key]
	if !ok {
		return Spread{}, false
	}
	var ratios []float64
	for _, s := range r.sessions(scale, contender) {
		v, okV := s.Values[key]
		d, okD := s.Values[base]
		if okV && okD && d > 0 {
			ratios = append(ratios, v/d)
		}
	}
	return spreadOf(ratios)
}

// Propagation pools the changes of every round: p50 and p99 over all of
// them, and the per-round p50s for the spread.
func (r *Results) Propagation(scale int, contender string) (p50, p99 time.Duration, roundP50s Spread, changes int) {
	var all []time.Duration
	var perRound []float64
	for _, s := range r.sessions(scale, contender) {
		if len(s.Propagation) == 0 {
			continue
		}
		sorted := slices.Clone(s.Propagation)
		slices.Sort(sorted)
		perRound = append(perRound, float64(percentile(sorted, 50))/float64(time.Millisecond))
		all = append(all, sorted...)
	}
	slices.Sort(all)
	roundP50s, _ = spreadOf(perRound)
	return percentile(all, 50), percentile(all, 99), roundP50s, len(all)
}

// Scales lists the scales with sessions, ascending.
func (r *Results) Scales() []int {
	var scales []int
	for _, s := range r.Sessions {
		if !slices.Contains(scales, s.Scale) {
			scales = append(scales, s.Scale)
		}
	}
	slices.Sort(scales)
	return scales
}

// Contenders lists the contenders with sessions, in report order.
func (r *Results) Contenders() []string {
	var out []string
	for _, name := range []string{noProxy, socklbName, iptablesName, nftablesName} {
		for _, s := range r.Sessions {
			if s.Contender == name {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// Failures sums the failed connects of a contender at a scale.
func (r *Results) Failures(scale int, contender string) int {
	n := 0
	for _, s := range r.sessions(scale, contender) {
		n += s.Failures
	}
	return n
}
