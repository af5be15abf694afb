package lbmap

import (
	"errors"
	"fmt"
	"maps"
	"syscall"

	"github.com/cilium/ebpf"
)

// Table is one map as its writer and its readers reach it: the kernel's map,
// or a map in memory with the same behaviour for tests that have no kernel.
type Table[K comparable, V any] interface {
	// Update writes keys[i]=values[i] for every i. A failing entry (a full
	// map, say) does not stop the others: its index and cause are returned.
	Update(keys []K, values []V) []EntryError
	// Delete removes keys; keys already absent are not an error.
	Delete(keys []K) []EntryError
	// Lookup returns the value of key, or an error wrapping
	// ebpf.ErrKeyNotExist.
	Lookup(key K) (V, error)
	// Dump reads every entry, in no particular order.
	Dump() ([]K, []V, error)
	// MaxEntries is the map's capacity.
	MaxEntries() uint32
}

// Tables are the load-balancing maps the syncer writes and inspect reads.
type Tables struct {
	Services     Table[ServiceKey, ServiceValue]
	Backends     Table[uint32, Backend]
	RevNat       Table[uint32, RevNat]
	ServiceNames Table[uint32, ServiceName]
	// The north-south datapath's: the LoadBalancer source ranges (value
	// always 1) and the node's SNAT configuration (an array: key 0 always
	// exists).
	SourceRanges Table[SourceRangeKey, uint8]
	NodeConfig   Table[uint32, NodeConfig]
	// The fail-fast trie: Service CIDRs and ClusterIPs.
	Refuse Table[RefuseKey, RefuseKind]
}

// Tables reaches m's load-balancing maps through Table.
func (m *Maps) Tables() Tables {
	t := Tables{
		Services:     NewKernelTable[ServiceKey, ServiceValue](m.Services),
		Backends:     NewKernelTable[uint32, Backend](m.Backends),
		RevNat:       NewKernelTable[uint32, RevNat](m.RevNat),
		ServiceNames: NewKernelTable[uint32, ServiceName](m.ServiceNames),
		SourceRanges: NewKernelTable[SourceRangeKey, uint8](m.SourceRanges),
		NodeConfig:   NewKernelTable[uint32, NodeConfig](m.NodeConfig),
	}
	if m.Refuse != nil { // a reader of pins older than the trie has none
		t.Refuse = NewKernelTable[RefuseKey, RefuseKind](m.Refuse)
	}
	return t
}

// KernelTable is a Table over a kernel map, written and read in batches.
type KernelTable[K comparable, V any] struct {
	m *ebpf.Map
}

// NewKernelTable reaches m, whose key and value must have K's and V's layout.
func NewKernelTable[K comparable, V any](m *ebpf.Map) *KernelTable[K, V] {
	return &KernelTable[K, V]{m: m}
}

func (t *KernelTable[K, V]) Update(keys []K, values []V) []EntryError {
	return Update(t.m, keys, values)
}

func (t *KernelTable[K, V]) Delete(keys []K) []EntryError { return Delete(t.m, keys) }

func (t *KernelTable[K, V]) Lookup(key K) (V, error) {
	var v V
	if err := t.m.Lookup(&key, &v); err != nil {
		return v, fmt.Errorf("look up %v in %s: %w", key, t.m, err)
	}
	return v, nil
}

func (t *KernelTable[K, V]) Dump() ([]K, []V, error) { return Dump[K, V](t.m) }

func (t *KernelTable[K, V]) MaxEntries() uint32 { return t.m.MaxEntries() }

// Update writes keys[i]=values[i] for every i in batches. A failing entry (a
// full map, say) does not stop the others: its index and cause are returned.
// Batch operations on hash and array maps predate socklb's minimum kernel,
// but not every map type has them on every kernel (the LPM trie of source
// ranges on older ones): such a map is written one entry at a time.
func Update[K, V any](m *ebpf.Map, keys []K, values []V) []EntryError {
	var failed []EntryError
	for start := 0; start < len(keys); {
		n, err := m.BatchUpdate(keys[start:], values[start:], nil)
		if err == nil {
			break
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return append(failed, eachEntry(keys[start:], start, "update", m, func(i int) error {
				return m.Update(&keys[i], &values[i], ebpf.UpdateAny)
			})...)
		}
		// The kernel stops at the first failing entry and reports how many
		// went in before it.
		failed = append(failed, EntryError{Index: start + n, Err: fmt.Errorf("update %s: %w", m, err)})
		start += n + 1
	}
	return failed
}

// Delete removes keys in batches; keys already absent are not an error.
func Delete[K any](m *ebpf.Map, keys []K) []EntryError {
	var failed []EntryError
	for start := 0; start < len(keys); {
		n, err := m.BatchDelete(keys[start:], nil)
		if err == nil {
			break
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return append(failed, eachEntry(keys[start:], start, "delete from", m, func(i int) error {
				if err := m.Delete(&keys[i]); !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
				return nil
			})...)
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			failed = append(failed, EntryError{Index: start + n, Err: fmt.Errorf("delete from %s: %w", m, err)})
		}
		start += n + 1
	}
	return failed
}

// Dump reads every entry of m in batches.
func Dump[K, V any](m *ebpf.Map) ([]K, []V, error) {
	var keys []K
	var values []V
	chunk := 4096
	var cursor ebpf.MapBatchCursor
	for {
		kbuf := make([]K, chunk)
		vbuf := make([]V, chunk)
		n, err := m.BatchLookup(&cursor, kbuf, vbuf, nil)
		if errors.Is(err, ebpf.ErrNotSupported) && len(keys) == 0 {
			return dumpByIteration[K, V](m)
		}
		keys = append(keys, kbuf[:n]...)
		values = append(values, vbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, values, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dump %s: %w", m, err)
		}
	}
}

// Count returns how many entries m holds, reading them in batches into
// one reused buffer: a metrics scrape counting the services map of 30,000
// Services through Dump made 10 MB of garbage each time.
func Count[K, V any](m *ebpf.Map) (int, error) {
	const chunk = 4096
	kbuf := make([]K, chunk)
	vbuf := make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, kbuf, vbuf, nil)
		if errors.Is(err, ebpf.ErrNotSupported) && total == 0 {
			return countByIteration[K, V](m)
		}
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("count %s: %w", m, err)
		}
	}
}

// countByIteration counts m's entries one at a time, for a map without
// batch lookups.
func countByIteration[K, V any](m *ebpf.Map) (int, error) {
	var k K
	var v V
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("count %s: %w", m, err)
	}
	return n, nil
}

// eachEntry runs op for each of keys (whose indexes start at offset), for a
// map without batch operations, and returns the failures.
func eachEntry[K any](keys []K, offset int, doing string, m *ebpf.Map, op func(i int) error) []EntryError {
	var failed []EntryError
	for i := range keys {
		if err := op(offset + i); err != nil {
			failed = append(failed, EntryError{Index: offset + i, Err: fmt.Errorf("%s %s: %w", doing, m, err)})
		}
	}
	return failed
}

// dumpByIteration reads m one entry at a time, for a map without batch
// lookups.
func dumpByIteration[K, V any](m *ebpf.Map) ([]K, []V, error) {
	var keys []K
	var values []V
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		values = append(values, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("dump %s: %w", m, err)
	}
	return keys, values, nil
}

// MemoryTable is a Table in memory that behaves like a kernel hash map: a
// new key does not fit once MaxEntries keys are held (E2BIG, as the kernel
// says), while an existing key can always be rewritten.
type MemoryTable[K comparable, V any] struct {
	name    string
	max     uint32
	entries map[K]V
	// Fail, when set and returning an error for a key, makes every Update
	// and Delete of that key fail with it, as a kernel write can.
	Fail func(key K) error
}

// NewMemoryTable is an empty map called name that holds up to maxEntries.
func NewMemoryTable[K comparable, V any](name string, maxEntries uint32) *MemoryTable[K, V] {
	return &MemoryTable[K, V]{name: name, max: maxEntries, entries: map[K]V{}}
}

// Clone copies the entries and the capacity, not Fail.
func (t *MemoryTable[K, V]) Clone() *MemoryTable[K, V] {
	return &MemoryTable[K, V]{name: t.name, max: t.max, entries: maps.Clone(t.entries)}
}

// Len is the number of entries held.
func (t *MemoryTable[K, V]) Len() int { return len(t.entries) }

func (t *MemoryTable[K, V]) fail(key K) error {
	if t.Fail == nil {
		return nil
	}
	return t.Fail(key)
}

func (t *MemoryTable[K, V]) Update(keys []K, values []V) []EntryError {
	var failed []EntryError
	for i, k := range keys {
		if err := t.fail(k); err != nil {
			failed = append(failed, EntryError{Index: i, Err: fmt.Errorf("update %s: %w", t.name, err)})
			continue
		}
		if _, ok := t.entries[k]; !ok && len(t.entries) >= int(t.max) {
			failed = append(failed, EntryError{Index: i, Err: fmt.Errorf("update %s: %w", t.name, syscall.E2BIG)})
			continue
		}
		t.entries[k] = values[i]
	}
	return failed
}

func (t *MemoryTable[K, V]) Delete(keys []K) []EntryError {
	var failed []EntryError
	for i, k := range keys {
		if err := t.fail(k); err != nil {
			failed = append(failed, EntryError{Index: i, Err: fmt.Errorf("delete from %s: %w", t.name, err)})
			continue
		}
		delete(t.entries, k)
	}
	return failed
}

func (t *MemoryTable[K, V]) Lookup(key K) (V, error) {
	v, ok := t.entries[key]
	if !ok {
		return v, fmt.Errorf("look up %v in %s: %w", key, t.name, ebpf.ErrKeyNotExist)
	}
	return v, nil
}

func (t *MemoryTable[K, V]) Dump() ([]K, []V, error) {
	keys := make([]K, 0, len(t.entries))
	values := make([]V, 0, len(t.entries))
	for k, v := range t.entries {
		keys = append(keys, k)
		values = append(values, v)
	}
	return keys, values, nil
}

func (t *MemoryTable[K, V]) MaxEntries() uint32 { return t.max }

// MemoryTables is a set of load-balancing maps in memory.
type MemoryTables struct {
	Services     *MemoryTable[ServiceKey, ServiceValue]
	Backends     *MemoryTable[uint32, Backend]
	RevNat       *MemoryTable[uint32, RevNat]
	ServiceNames *MemoryTable[uint32, ServiceName]
	SourceRanges *MemoryTable[SourceRangeKey, uint8]
	NodeConfig   *MemoryTable[uint32, NodeConfig]
	Refuse       *MemoryTable[RefuseKey, RefuseKind]
}

// NewMemoryTables makes empty maps of 65536 entries each; maxEntries
// overrides the size of the maps it names (ServicesMap, ...). NodeConfig,
// like the kernel's array, has one entry, key 0, zero until written.
func NewMemoryTables(maxEntries map[string]uint32) *MemoryTables {
	size := func(name string) uint32 {
		if n, ok := maxEntries[name]; ok {
			return n
		}
		return 1 << 16
	}
	return &MemoryTables{
		Services:     NewMemoryTable[ServiceKey, ServiceValue](ServicesMap, size(ServicesMap)),
		Backends:     NewMemoryTable[uint32, Backend](BackendsMap, size(BackendsMap)),
		RevNat:       NewMemoryTable[uint32, RevNat](RevNatMap, size(RevNatMap)),
		ServiceNames: NewMemoryTable[uint32, ServiceName](ServiceNamesMap, size(ServiceNamesMap)),
		SourceRanges: NewMemoryTable[SourceRangeKey, uint8](SourceRangesMap, size(SourceRangesMap)),
		NodeConfig:   &MemoryTable[uint32, NodeConfig]{name: NodeConfigMap, max: 1, entries: map[uint32]NodeConfig{0: {}}},
		Refuse:       NewMemoryTable[RefuseKey, RefuseKind](RefuseMap, size(RefuseMap)),
	}
}

// Clone copies every map.
func (m *MemoryTables) Clone() *MemoryTables {
	return &MemoryTables{
		Services:     m.Services.Clone(),
		Backends:     m.Backends.Clone(),
		RevNat:       m.RevNat.Clone(),
		ServiceNames: m.ServiceNames.Clone(),
		SourceRanges: m.SourceRanges.Clone(),
		NodeConfig:   m.NodeConfig.Clone(),
		Refuse:       m.Refuse.Clone(),
	}
}

// Tables reaches the maps through Table.
func (m *MemoryTables) Tables() Tables {
	return Tables{Services: m.Services, Backends: m.Backends, RevNat: m.RevNat, ServiceNames: m.ServiceNames,
		SourceRanges: m.SourceRanges, NodeConfig: m.NodeConfig, Refuse: m.Refuse}
}
