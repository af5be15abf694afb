package lbmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Maps holds the load-balancing maps, whether created (or reopened) from
// their pins by the agent or opened read-only by a reader such as socklb
// inspect.
type Maps struct {
	Services     *ebpf.Map
	Backends     *ebpf.Map
	RevNat       *ebpf.Map
	ServiceNames *ebpf.Map
	Counters     *ebpf.Map // per CPU, indexed by Reason
	SockRevNat   *ebpf.Map
	SockBackend  *ebpf.Map
	// The north-south datapath's (XDP and tc on the node's devices).
	Nat          *ebpf.Map // LRU connection table, FlowKey -> Flow
	NodeConfig   *ebpf.Map // one NodeConfig, key 0
	SourceRanges *ebpf.Map // LPM trie, SourceRangeKey -> 1
	// Service semantics beyond the frontends.
	Refuse   *ebpf.Map // LPM trie, RefuseKey -> RefuseKind: fail fast
	Affinity *ebpf.Map // LRU, AffinityKey -> AffinityValue: sessionAffinity
	// Maglev is service id -> that frontend's Maglev table, an array:
	// element 0 the table size M, 1..M the slot each hash value picks.
	Maglev *ebpf.Map
	// The monitor's: the ring buffer of decisions, the watched flag
	// (MonitorConfig at key 0) and the per-CPU count of events lost.
	MonitorEvents *ebpf.Map
	MonitorConfig *ebpf.Map
	MonitorDrops  *ebpf.Map
	// SockStorage is the socket-local storage (lb_sock_state) of each
	// translated socket, where the kernel has it.
	SockStorage *ebpf.Map
}

// LoadSpec reads the layouts object: every map of every socklb program and
// every type they hold, in BTF, and no program.
func LoadSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadLayouts()
	if err != nil {
		return nil, fmt.Errorf("read the embedded layouts object: %w", err)
	}
	return spec, nil
}

// Create makes the maps of the layouts object pinned by name under pinDir.
// A map already pinned there is reused with its contents (nothing is ever
// flushed); one whose layout differs is refused with an error matching
// ebpf.ErrMapIncompatible. An empty pinDir makes unpinned maps.
func Create(pinDir string) (*Maps, error) {
	return CreateSized(pinDir, Sizes{})
}

// Sizes overrides the compiled-in capacity of maps at creation; zero keeps
// the size of the map already pinned, or else the compiled-in one.
type Sizes struct {
	Services uint32 // entries of the services map: masters plus slots
}

// CreateSized is Create with sizes. A pinned map of another size than a
// non-zero size asked for is refused like any other layout change (error
// matching ebpf.ErrMapIncompatible): a map cannot be resized in place.
func CreateSized(pinDir string, sizes Sizes) (*Maps, error) {
	spec, err := LoadSpec()
	if err != nil {
		return nil, err
	}
	services := spec.Maps[ServicesMap]
	if sizes.Services > 0 {
		services.MaxEntries = sizes.Services
	} else if n := pinnedMaxEntries(pinDir, ServicesMap); n > 0 {
		// A restart without the flag keeps a map made with it.
		services.MaxEntries = n
	}
	if err := replaceOldCounters(pinDir, spec.Maps[CountersMap].MaxEntries); err != nil {
		return nil, err
	}
	if pinDir == "" {
		for _, ms := range spec.Maps {
			ms.Pinning = ebpf.PinNone
		}
	}
	var objs layoutsMaps
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}); err != nil {
		return nil, fmt.Errorf("create the maps under %q: %w", pinDir, err)
	}
	return fromObjects(&objs), nil
}

// replaceOldCounters removes a pinned counters map sized for another set of
// reasons (an agent from before a reason was added): the counters are
// statistics, so they start again from zero instead of the upgrade being
// refused as an incompatible layout. The programs still running keep the
// old map until the new ones replace them.
func replaceOldCounters(pinDir string, reasons uint32) error {
	n := pinnedMaxEntries(pinDir, CountersMap)
	if n == 0 || n == reasons {
		return nil
	}
	if err := os.Remove(filepath.Join(pinDir, CountersMap)); err != nil {
		return fmt.Errorf("replace the counters map of %d reasons with one of %d: %w", n, reasons, err)
	}
	return nil
}

// pinnedMaxEntries is the capacity of the map pinned under name, 0 when
// there is none (or it cannot be read: Create then reports the problem).
func pinnedMaxEntries(pinDir, name string) uint32 {
	if pinDir == "" {
		return 0
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer m.Close()
	return m.MaxEntries()
}

func fromObjects(m *layoutsMaps) *Maps {
	return &Maps{
		Services:     m.LbServices,
		Backends:     m.LbBackends,
		RevNat:       m.LbRevNat,
		ServiceNames: m.LbServiceNames,
		Counters:     m.LbCounters,
		SockRevNat:   m.LbSockRevNat,
		SockBackend:  m.LbSockBackend,
		Nat:          m.LbNat,
		NodeConfig:   m.LbNodeConfig,
		SourceRanges: m.LbSourceRanges,
		Refuse:       m.LbRefuse,
		Affinity:     m.LbAffinity,
		Maglev:       m.LbMaglev,

		MonitorEvents: m.LbMonitorEvents,
		MonitorConfig: m.LbMonitorConfig,
		MonitorDrops:  m.LbMonitorDrops,
		SockStorage:   m.LbSockStorage,
	}
}

// ByName is every map under its name in the C sources, the form
// ebpf.CollectionOptions.MapReplacements takes: a program object loaded with
// it uses these maps instead of creating its own.
func (m *Maps) ByName() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		ServicesMap:     m.Services,
		BackendsMap:     m.Backends,
		RevNatMap:       m.RevNat,
		ServiceNamesMap: m.ServiceNames,
		CountersMap:     m.Counters,
		SockRevNatMap:   m.SockRevNat,
		SockBackendMap:  m.SockBackend,
		NatMap:          m.Nat,
		NodeConfigMap:   m.NodeConfig,
		SourceRangesMap: m.SourceRanges,
		RefuseMap:       m.Refuse,
		AffinityMap:     m.Affinity,
		MaglevMap:       m.Maglev,

		MonitorEventsMap: m.MonitorEvents,
		MonitorConfigMap: m.MonitorConfig,
		MonitorDropsMap:  m.MonitorDrops,
		SockStorageMap:   m.SockStorage,
	}
}

// ReplacementsFor is ByName cut to the maps spec declares: each program
// object declares only the maps it uses, and cilium/ebpf refuses a
// replacement for a map the object does not have.
func (m *Maps) ReplacementsFor(spec *ebpf.CollectionSpec) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name, em := range m.ByName() {
		if _, ok := spec.Maps[name]; ok {
			out[name] = em
		}
	}
	return out
}

// OpenPinned opens the maps pinned under pinDir read-only: readers such as
// socklb inspect can never change what the datapath uses.
func OpenPinned(pinDir string) (*Maps, error) {
	m := &Maps{}
	for _, pin := range []struct {
		name string
		dst  **ebpf.Map
	}{
		{ServicesMap, &m.Services},
		{BackendsMap, &m.Backends},
		{RevNatMap, &m.RevNat},
		{ServiceNamesMap, &m.ServiceNames},
		{CountersMap, &m.Counters},
		{SockRevNatMap, &m.SockRevNat},
		{SockBackendMap, &m.SockBackend},
		{NatMap, &m.Nat},
		{NodeConfigMap, &m.NodeConfig},
		{SourceRangesMap, &m.SourceRanges},
		{RefuseMap, &m.Refuse},
		{AffinityMap, &m.Affinity},
		{MaglevMap, &m.Maglev},
		{MonitorEventsMap, &m.MonitorEvents},
		{MonitorConfigMap, &m.MonitorConfig},
		{MonitorDropsMap, &m.MonitorDrops},
		{SockStorageMap, &m.SockStorage},
	} {
		path := filepath.Join(pinDir, pin.name)
		em, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil && errors.Is(err, os.ErrNotExist) && (pin.name == RefuseMap || pin.name == AffinityMap) {
			continue // pins of an agent from before these maps: nothing refused, no affinity
		}
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		*pin.dst = em
	}
	return m, nil
}

// Close releases the file descriptors; pinned maps stay in the kernel.
func (m *Maps) Close() error {
	var errs []error
	for _, em := range m.ByName() {
		if em != nil {
			errs = append(errs, em.Close())
		}
	}
	return errors.Join(errs...)
}

// EntryError is the failure of one entry of a batch write.
type EntryError struct {
	Index int
	Err   error
}

func (e EntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }
