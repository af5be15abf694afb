package metrics

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// The reason labels are enum lb_reason's names as the C source spells
// them (LB_REASON_NO_BACKEND is no_backend), read from the object's BTF:
// a reason added in C without its name in Go fails here.
func TestReasonLabelsAreTheCEnumNames(t *testing.T) {
	spec, err := lbmap.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	var enum *btf.Enum
	if err := spec.Types.TypeByName("lb_reason", &enum); err != nil {
		t.Fatal(err)
	}
	for _, v := range enum.Values {
		if v.Name == "LB_REASON_MAX" {
			continue
		}
		want := strings.ToLower(strings.TrimPrefix(v.Name, "LB_REASON_"))
		if got := lbmap.Reason(v.Value).String(); got != want {
			t.Errorf("%s (%d) is labelled %q, want %q", v.Name, v.Value, got, want)
		}
	}
}

// The collector reads the maps' fill levels and the per-CPU counters, summed,
// from the kernel at each scrape.
func TestDatapathCollector(t *testing.T) {
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	m, err := lbmap.Create("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tables := m.Tables()
	keys := []lbmap.ServiceKey{{Port: 1}, {Port: 2}, {Port: 3}}
	if failed := tables.Services.Update(keys, make([]lbmap.ServiceValue, len(keys))); len(failed) > 0 {
		t.Fatal(failed)
	}
	if failed := tables.Backends.Update([]uint32{1}, []lbmap.Backend{{}}); len(failed) > 0 {
		t.Fatal(failed)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := make([]uint64, cpus)
	for i := range perCPU {
		perCPU[i] = 2
	}
	key := uint32(lbmap.ReasonNoBackend)
	if err := m.Counters.Update(&key, perCPU, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newDatapathCollector(m))
	cases := []struct {
		metric, label string
		want          float64
	}{
		{"socklb_bpf_map_entries", lbmap.ServicesMap, 3},
		{"socklb_bpf_map_entries", lbmap.BackendsMap, 1},
		{"socklb_bpf_map_entries", lbmap.RevNatMap, 0},
		{"socklb_bpf_map_entries", lbmap.SourceRangesMap, 0},
		{"socklb_bpf_map_capacity", lbmap.ServicesMap, float64(m.Services.MaxEntries())},
		{"socklb_bpf_map_capacity", lbmap.NatMap, float64(m.Nat.MaxEntries())},
		{"socklb_datapath_events_total", "no_backend", float64(2 * cpus)},
		{"socklb_datapath_events_total", "translated", 0},
	}
	for _, tc := range cases {
		t.Run(tc.metric+"{"+tc.label+"}", func(t *testing.T) {
			if got := sampleOf(t, reg, tc.metric, tc.label); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "socklb_datapath_events_total" && len(mf.GetMetric()) != int(lbmap.ReasonMax) {
			t.Errorf("%d reasons exported, want every one of %d", len(mf.GetMetric()), lbmap.ReasonMax)
		}
	}
}
