package metrics

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socklb/socklb/pkg/lbmap"
)

// mapCounter counts the entries of one map through its layout.
type mapCounter struct {
	name  string
	count func(*lbmap.Maps) (int, error)
	max   func(*lbmap.Maps) uint32
}

func counted[K, V any](name string, of func(*lbmap.Maps) *ebpf.Map) mapCounter {
	return mapCounter{
		name:  name,
		count: func(m *lbmap.Maps) (int, error) { return lbmap.Count[K, V](of(m)) },
		max:   func(m *lbmap.Maps) uint32 { return of(m).MaxEntries() },
	}
}

// mapCounters are the maps whose fill level means something: the arrays
// (lb_counters, lb_node_config) always hold max_entries entries.
var mapCounters = []mapCounter{
	counted[lbmap.ServiceKey, lbmap.ServiceValue](lbmap.ServicesMap, func(m *lbmap.Maps) *ebpf.Map { return m.Services }),
	counted[uint32, lbmap.Backend](lbmap.BackendsMap, func(m *lbmap.Maps) *ebpf.Map { return m.Backends }),
	counted[uint32, lbmap.RevNat](lbmap.RevNatMap, func(m *lbmap.Maps) *ebpf.Map { return m.RevNat }),
	counted[uint32, lbmap.ServiceName](lbmap.ServiceNamesMap, func(m *lbmap.Maps) *ebpf.Map { return m.ServiceNames }),
	counted[lbmap.SockKey, lbmap.SockRevNat](lbmap.SockRevNatMap, func(m *lbmap.Maps) *ebpf.Map { return m.SockRevNat }),
	counted[lbmap.SockKey, lbmap.SockBackend](lbmap.SockBackendMap, func(m *lbmap.Maps) *ebpf.Map { return m.SockBackend }),
	counted[lbmap.FlowKey, lbmap.Flow](lbmap.NatMap, func(m *lbmap.Maps) *ebpf.Map { return m.Nat }),
	counted[lbmap.SourceRangeKey, uint8](lbmap.SourceRangesMap, func(m *lbmap.Maps) *ebpf.Map { return m.SourceRanges }),
}

// datapathCollector reads the datapath's figures from the kernel at each
// scrape: how full each map is, and the per-CPU counters of lb_counters
// summed, labelled with enum lb_reason's names as package lbmap names
// its generated constants.
type datapathCollector struct {
	maps              *lbmap.Maps
	entries, capacity *prometheus.Desc
	events            *prometheus.Desc
}

func newDatapathCollector(maps *lbmap.Maps) *datapathCollector {
	return &datapathCollector{
		maps: maps,
		entries: prometheus.NewDesc("socklb_bpf_map_entries",
			"Entries a BPF map holds, counted at scrape time", []string{"map"}, nil),
		capacity: prometheus.NewDesc("socklb_bpf_map_capacity",
			"Entries a BPF map can hold (max_entries)", []string{"map"}, nil),
		events: prometheus.NewDesc("socklb_datapath_events_total",
			"What the BPF programs did, summed over the CPUs, by reason (enum lb_reason): translated, no_backend (refused), ...", []string{"reason"}, nil),
	}
}

func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.capacity
	ch <- c.events
}

func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	for _, mc := range mapCounters {
		ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(mc.max(c.maps)), mc.name)
		n, err := mc.count(c.maps)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.entries, fmt.Errorf("count the entries of %s: %w", mc.name, err))
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(n), mc.name)
	}
	counters, err := lbmap.ReadCounters(c.maps.Counters)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.events, err)
		return
	}
	for r := lbmap.Reason(0); r < lbmap.ReasonMax; r++ {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(counters[r.String()]), r.String())
	}
}
