package lbmap

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// ReadCounters sums the per-CPU counters map m over the CPUs, by reason
// name ("translated", "no_backend", ...); every reason is present, zero or
// not.
func ReadCounters(m *ebpf.Map) (map[string]uint64, error) {
	out := make(map[string]uint64, m.MaxEntries())
	for key := uint32(0); key < m.MaxEntries(); key++ {
		var perCPU []uint64
		if err := m.Lookup(&key, &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", Reason(key), err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[Reason(key).String()] = sum
	}
	return out, nil
}
