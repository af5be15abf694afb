package lbmap_test

import (
	"maps"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// ReadCounters sums every CPU's count and names each reason.
func TestReadCountersSumsCPUs(t *testing.T) {
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	m, err := lbmap.Create("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	write := func(r lbmap.Reason, perCPU func(cpu int) uint64) {
		vals := make([]uint64, cpus)
		for cpu := range vals {
			vals[cpu] = perCPU(cpu)
		}
		key := uint32(r)
		if err := m.Counters.Update(&key, vals, ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
	write(lbmap.ReasonTranslated, func(cpu int) uint64 { return uint64(cpu + 1) })
	write(lbmap.ReasonNoBackend, func(cpu int) uint64 { return 7 * uint64(cpu%2) })

	got, err := lbmap.ReadCounters(m.Counters)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for r := lbmap.Reason(0); r < lbmap.ReasonMax; r++ {
		want[r.String()] = 0
	}
	want["translated"] = uint64(cpus * (cpus + 1) / 2)
	want["no_backend"] = 7 * uint64(cpus/2)
	if !maps.Equal(got, want) {
		t.Errorf("ReadCounters over %d CPUs = %v, want %v", cpus, got, want)
	}
}
