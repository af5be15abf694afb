package lbmap_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// Pins of an agent built with fewer reasons: its counters map is replaced
// by one with a slot per reason, and every other pinned map is reused.
func TestCreateReplacesCountersOfFewerReasons(t *testing.T) {
	sb := sandbox.New(t)
	if err := os.MkdirAll(sb.PinDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: lbmap.CountersMap, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8,
		MaxEntries: uint32(lbmap.ReasonMax) - 3})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(sb.PinDir, lbmap.CountersMap)); err != nil {
		t.Fatal(err)
	}
	m, err := lbmap.Create(sb.PinDir)
	if err != nil {
		t.Fatalf("create over the old pins: %v", err)
	}
	defer m.Close()
	if got := m.Counters.MaxEntries(); got != uint32(lbmap.ReasonMax) {
		t.Errorf("counters map has %d entries, want one per reason (%d)", got, lbmap.ReasonMax)
	}
	again, err := lbmap.Create(sb.PinDir)
	if err != nil {
		t.Fatalf("create again: %v", err)
	}
	defer again.Close()
	if id1, id2 := mapID(t, m.Counters), mapID(t, again.Counters); id1 != id2 {
		t.Errorf("a counters map of the right size was replaced too (id %d, then %d)", id1, id2)
	}
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("no map id on this kernel")
	}
	return id
}
