package lbmap_test

import (
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// newKernelBackends is a kernel backends map of capacity entries.
func newKernelBackends(t *testing.T, capacity uint32) lbmap.Table[uint32, lbmap.Backend] {
	t.Helper()
	return lbmap.NewKernelTable[uint32, lbmap.Backend](newBackendsMap(t, capacity))
}

// newBackendsMap is an unpinned kernel map with the backends map's layout
// and capacity entries, closed when the test ends.
func newBackendsMap(t *testing.T, capacity uint32) *ebpf.Map {
	t.Helper()
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := lbmap.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[lbmap.BackendsMap].Copy()
	ms.Pinning = ebpf.PinNone
	ms.MaxEntries = capacity
	m, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The in-memory table fails where a kernel hash map fails, so that the
// syncer's tests on memory maps say something about kernel maps.
func TestTablesBehaveAlike(t *testing.T) {
	b := func(last byte) lbmap.Backend {
		return lbmap.NewBackend(netip.AddrFrom4([4]byte{10, 244, 0, last}), 8080, 6, lbmap.BackendActive)
	}
	type write struct {
		keys       []uint32
		failed     []int // indexes that fail with E2BIG
		deleteKeys []uint32
	}
	cases := []struct {
		name   string
		writes []write
		want   []uint32 // keys held afterwards
	}{
		{"within capacity", []write{{keys: []uint32{1, 2, 3}}}, []uint32{1, 2, 3}},
		{"a new key beyond capacity fails alone", []write{{keys: []uint32{1, 2, 3, 4}, failed: []int{3}}}, []uint32{1, 2, 3}},
		{"an existing key is rewritten in a full map", []write{{keys: []uint32{1, 2, 3}}, {keys: []uint32{2}}}, []uint32{1, 2, 3}},
		{"entries after a failing one still go in", []write{{keys: []uint32{1, 2}}, {keys: []uint32{7, 8, 1}, failed: []int{1}}}, []uint32{1, 2, 7}},
		{"deleting absent keys is no error", []write{{keys: []uint32{1}}, {deleteKeys: []uint32{5, 1, 6}}}, nil},
		{"a delete makes room", []write{{keys: []uint32{1, 2, 3}}, {deleteKeys: []uint32{2}}, {keys: []uint32{4}}}, []uint32{1, 3, 4}},
	}
	kinds := []struct {
		name string
		open func(t *testing.T) lbmap.Table[uint32, lbmap.Backend]
	}{
		{"memory", func(*testing.T) lbmap.Table[uint32, lbmap.Backend] {
			return lbmap.NewMemoryTable[uint32, lbmap.Backend](lbmap.BackendsMap, 3)
		}},
		{"kernel", func(t *testing.T) lbmap.Table[uint32, lbmap.Backend] { return newKernelBackends(t, 3) }},
	}
	for _, kind := range kinds {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				tbl := kind.open(t)
				if tbl.MaxEntries() != 3 {
					t.Fatalf("capacity %d, want 3", tbl.MaxEntries())
				}
				for i, w := range tc.writes {
					vals := make([]lbmap.Backend, len(w.keys))
					for j, k := range w.keys {
						vals[j] = b(byte(k))
					}
					var failed []int
					for _, f := range tbl.Update(w.keys, vals) {
						if !errors.Is(f.Err, syscall.E2BIG) {
							t.Errorf("write %d: entry %d failed with %v, want E2BIG", i, f.Index, f.Err)
						}
						failed = append(failed, f.Index)
					}
					if !slices.Equal(failed, w.failed) {
						t.Errorf("write %d: entries %v failed, want %v", i, failed, w.failed)
					}
					if errs := tbl.Delete(w.deleteKeys); len(errs) > 0 {
						t.Errorf("write %d: delete: %v", i, errs)
					}
				}
				keys, vals, err := tbl.Dump()
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(keys)
				if !slices.Equal(keys, tc.want) {
					t.Errorf("holds %v, want %v", keys, tc.want)
				}
				for _, k := range keys {
					v, err := tbl.Lookup(k)
					if err != nil || v != b(byte(k)) {
						t.Errorf("lookup %d = %v, %v", k, v, err)
					}
				}
				if len(vals) != len(keys) {
					t.Errorf("dump gave %d values for %d keys", len(vals), len(keys))
				}
				if _, err := tbl.Lookup(99); !errors.Is(err, ebpf.ErrKeyNotExist) {
					t.Errorf("lookup of an absent key: %v, want ErrKeyNotExist", err)
				}
			})
		}
	}
}

// A failure injected into a memory table fails only the entries it names.
func TestMemoryTableFail(t *testing.T) {
	injected := errors.New("injected")
	tbl := lbmap.NewMemoryTable[uint32, lbmap.Backend](lbmap.BackendsMap, 10)
	tbl.Fail = func(k uint32) error {
		if k == 2 {
			return injected
		}
		return nil
	}
	failed := tbl.Update([]uint32{1, 2, 3}, make([]lbmap.Backend, 3))
	if len(failed) != 1 || failed[0].Index != 1 || !errors.Is(failed[0].Err, injected) {
		t.Errorf("update failures %v, want entry 1 injected", failed)
	}
	if tbl.Len() != 2 {
		t.Errorf("holds %d entries, want 2", tbl.Len())
	}
	c := tbl.Clone()
	if c.Fail != nil || c.Len() != 2 {
		t.Errorf("clone holds %d entries (want 2) and Fail set: %t", c.Len(), c.Fail != nil)
	}
	c.Update([]uint32{4}, make([]lbmap.Backend, 1))
	if tbl.Len() != 2 {
		t.Errorf("writing the clone changed the original")
	}
}

// The source ranges are an LPM trie, a map type without batch operations on
// some kernels: writes, dumps and deletes must work either way.
func TestSourceRangesTableRoundTrip(t *testing.T) {
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	m, err := lbmap.Create("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	table := m.Tables().SourceRanges
	keys := []lbmap.SourceRangeKey{
		lbmap.NewSourceRangeKey(7, netip.MustParsePrefix("192.0.2.0/24")),
		lbmap.NewSourceRangeKey(7, netip.MustParsePrefix("2001:db8::/32")),
		lbmap.NewSourceRangeKey(8, netip.MustParsePrefix("0.0.0.0/0")),
	}
	if errs := table.Update(keys, []uint8{1, 1, 1}); len(errs) > 0 {
		t.Fatalf("update: %v", errs)
	}
	got, _, err := table.Dump()
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	if len(got) != len(keys) {
		t.Errorf("dump holds %d ranges, want %d", len(got), len(keys))
	}
	if errs := table.Delete(keys[:2]); len(errs) > 0 {
		t.Fatalf("delete: %v", errs)
	}
	if got, _, err := table.Dump(); err != nil || len(got) != 1 || got[0] != keys[2] {
		t.Errorf("after deleting two: %v %v, want only %v", got, err, keys[2])
	}
}

// Count reads a map in batches into one buffer: every entry counts once,
// across batch boundaries, in a map that is empty or full.
func TestCount(t *testing.T) {
	for _, tc := range []struct {
		name           string
		capacity, fill uint32
	}{
		{"empty", 16, 0},
		{"one", 16, 1},
		{"exactly one batch", 8192, 4096},
		{"more than one batch", 10000, 9999},
		{"full", 5000, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newBackendsMap(t, tc.capacity)
			for id := range tc.fill {
				if err := m.Put(id+1, lbmap.Backend{}); err != nil {
					t.Fatalf("put %d: %v", id+1, err)
				}
			}
			n, err := lbmap.Count[uint32, lbmap.Backend](m)
			if err != nil || n != int(tc.fill) {
				t.Errorf("Count = %d, %v; want %d", n, err, tc.fill)
			}
		})
	}
}
