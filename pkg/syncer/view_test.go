package syncer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// mapKind is where a test's maps live: in memory (no root needed), or in
// the kernel.
type mapKind struct {
	name string
	// open makes empty maps; maxEntries overrides the size of the named
	// maps. mem is nil for kernel maps.
	open func(t testing.TB, maxEntries map[string]uint32) (tables lbmap.Tables, mem *lbmap.MemoryTables)
}

var mapKinds = []mapKind{
	{"memory", func(_ testing.TB, maxEntries map[string]uint32) (lbmap.Tables, *lbmap.MemoryTables) {
		mem := lbmap.NewMemoryTables(maxEntries)
		return mem.Tables(), mem
	}},
	{"kernel", func(t testing.TB, maxEntries map[string]uint32) (lbmap.Tables, *lbmap.MemoryTables) {
		return newTestMaps(t, maxEntries).Tables(), nil
	}},
}

// newTestMaps creates unpinned kernel maps with the real layouts;
// maxEntries overrides the size of the named maps.
func newTestMaps(t testing.TB, maxEntries map[string]uint32) *lbmap.Maps {
	t.Helper()
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := lbmap.LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if !strings.HasPrefix(name, "lb_") {
			continue
		}
		ms = ms.Copy()
		ms.Pinning = ebpf.PinNone
		if n, ok := maxEntries[name]; ok {
			ms.MaxEntries = n
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatalf("create map %s: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		created[name] = m
	}
	return &lbmap.Maps{
		Services:     created[lbmap.ServicesMap],
		Backends:     created[lbmap.BackendsMap],
		RevNat:       created[lbmap.RevNatMap],
		ServiceNames: created[lbmap.ServiceNamesMap],
		SockRevNat:   created[lbmap.SockRevNatMap],
		SockBackend:  created[lbmap.SockBackendMap],
		Nat:          created[lbmap.NatMap],
		NodeConfig:   created[lbmap.NodeConfigMap],
		SourceRanges: created[lbmap.SourceRangesMap],
		Refuse:       created[lbmap.RefuseMap],
		Affinity:     created[lbmap.AffinityMap],
	}
}

// scopeView is the backends one scope of a frontend exposes, sorted.
type scopeView struct {
	active      []string
	terminating []string
}

func (v scopeView) equal(o scopeView) bool {
	return slices.Equal(v.active, o.active) && slices.Equal(v.terminating, o.terminating)
}

// frontendView is what a connecting socket, or a packet arriving at XDP,
// finds for one frontend. Backends on this node read "(local)".
type frontendView struct {
	name string
	scopeView
	internal *scopeView // what node-local clients find when the frontend has two scopes
	// flags are the default master's flags other than ClusterIP and
	// TwoScopes (which internal shows).
	flags lbmap.ServiceFlags
	// ranges are the source ranges held for the frontend's service id, sorted.
	ranges []string
}

func (v frontendView) equal(o frontendView) bool {
	if v.name != o.name || !v.scopeView.equal(o.scopeView) || (v.internal == nil) != (o.internal == nil) ||
		v.flags != o.flags || !slices.Equal(v.ranges, o.ranges) {
		return false
	}
	return v.internal == nil || v.internal.equal(*o.internal)
}

func (v frontendView) String() string {
	s := fmt.Sprintf("{%s active=%v terminating=%v", v.name, v.active, v.terminating)
	if v.internal != nil {
		s += fmt.Sprintf(" internal: active=%v terminating=%v", v.internal.active, v.internal.terminating)
	}
	if v.flags != 0 {
		s += " flags=" + v.flags.String()
	}
	if len(v.ranges) > 0 {
		s += fmt.Sprintf(" ranges=%v", v.ranges)
	}
	return s + "}"
}

func equalViews(a, b map[string]frontendView) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		if vb, ok := b[k]; !ok || !va.equal(vb) {
			return false
		}
	}
	return true
}

// mapsView is the maps read the way the datapath reads them.
type mapsView struct {
	frontends map[string]frontendView // by "10.96.0.10:80/TCP"
	// dangling lists what a connecting socket can reach but would not find:
	// a slot, a backend, a rev_nat or name entry, an internal master.
	dangling []string
	// leftovers lists entries nothing reaches: no harm to a socket, but a
	// finished sync leaves none.
	leftovers []string
	// allowed is, per frontend with FlagSourceRanges, the source ranges
	// its clients are let in from; a frontend without the flag lets every
	// client in and is absent.
	allowed map[string]map[netip.Prefix]bool
}

// readMaps decodes the maps with lbmap.DecodeFrontends, as inspect does.
func readMaps(t testing.TB, tables lbmap.Tables) mapsView {
	t.Helper()
	skeys, svals, err := tables.Services.Dump()
	if err != nil {
		t.Fatal(err)
	}
	bkeys, bvals, err := tables.Backends.Dump()
	if err != nil {
		t.Fatal(err)
	}
	backendByID := map[uint32]lbmap.Backend{}
	for i, id := range bkeys {
		backendByID[id] = bvals[i]
	}
	decoded := lbmap.DecodeFrontends(skeys, svals, func(id uint32) bool { _, ok := backendByID[id]; return ok })
	byKey := map[lbmap.ServiceKey]*lbmap.Frontend{}
	for i := range decoded {
		byKey[decoded[i].Key] = &decoded[i]
	}
	rangeKeys, _, err := tables.SourceRanges.Dump()
	if err != nil {
		t.Fatal(err)
	}
	rangesByID := map[uint32][]string{}
	for _, k := range rangeKeys {
		rangesByID[k.ServiceID()] = append(rangesByID[k.ServiceID()], k.Prefix().String())
	}
	v := mapsView{frontends: map[string]frontendView{}, allowed: map[string]map[netip.Prefix]bool{}}
	reached := map[lbmap.ServiceKey]bool{}
	usedBackends := map[uint32]bool{}
	usedIDs := map[uint32]bool{}
	scope := func(label string, f *lbmap.Frontend) scopeView {
		reached[f.Key] = true
		for _, p := range f.Problems {
			v.dangling = append(v.dangling, label+": "+p)
		}
		var sv scopeView
		active, terminating := f.Regions()
		for _, ids := range []struct {
			ids []uint32
			dst *[]string
		}{{active, &sv.active}, {terminating, &sv.terminating}} {
			for _, id := range ids.ids {
				usedBackends[id] = true
				if b, ok := backendByID[id]; ok {
					s := b.AddrPort().String()
					if b.Flags&lbmap.BackendLocal != 0 {
						s += "(local)"
					}
					*ids.dst = append(*ids.dst, s)
				}
			}
			slices.Sort(*ids.dst)
		}
		return sv
	}
	for i := range decoded {
		f := &decoded[i]
		if f.Key.Scope != lbmap.ScopeDefault || !f.HasMaster {
			continue
		}
		label := f.Key.AddrPort().String() + "/" + lbmap.ProtoString(f.Key.Proto)
		id := f.Master.ServiceId
		usedIDs[id] = true
		view := frontendView{scopeView: scope(label, f), flags: f.Master.Flags &^ (lbmap.FlagClusterIP | lbmap.FlagTwoScopes)}
		if f.Master.Flags&lbmap.FlagSourceRanges != 0 {
			view.ranges = slices.Sorted(slices.Values(rangesByID[id]))
			v.allowed[label] = map[netip.Prefix]bool{}
			for _, r := range view.ranges {
				v.allowed[label][netip.MustParsePrefix(r)] = true
			}
			if len(view.ranges) == 0 {
				v.dangling = append(v.dangling, fmt.Sprintf("%s: FlagSourceRanges is set but service id %d has no source range: every client is dropped", label, id))
			}
		}
		if rn, err := tables.RevNat.Lookup(id); err != nil {
			v.dangling = append(v.dangling, fmt.Sprintf("%s: rev_nat %d: %v", label, id, err))
		} else if rn.AddrPort() != f.Key.AddrPort() {
			v.dangling = append(v.dangling, fmt.Sprintf("%s: rev_nat %d says %s", label, id, rn.AddrPort()))
		}
		if name, err := tables.ServiceNames.Lookup(id); err != nil {
			v.dangling = append(v.dangling, fmt.Sprintf("%s: service name %d: %v", label, id, err))
		} else {
			view.name = name.Get()
		}
		if f.Master.Flags&lbmap.FlagTwoScopes != 0 {
			ik := f.Key
			ik.Scope = lbmap.ScopeInternal
			if internal, ok := byKey[ik]; ok && internal.HasMaster {
				iv := scope(label+" (internal)", internal)
				view.internal = &iv
			} // else DecodeFrontends reported it
		}
		v.frontends[label] = view
	}
	for _, f := range decoded {
		label := f.Key.String()
		switch {
		case f.HasMaster && !reached[f.Key]:
			v.leftovers = append(v.leftovers, label+": a master no socket reaches")
		case len(f.Unreachable) > 0:
			v.leftovers = append(v.leftovers, fmt.Sprintf("%s: slots %v unreachable", label, f.Unreachable))
		}
	}
	for _, id := range bkeys {
		if !usedBackends[id] {
			v.leftovers = append(v.leftovers, fmt.Sprintf("backend %d: no reachable slot names it", id))
		}
	}
	rkeys, _, err := tables.RevNat.Dump()
	if err != nil {
		t.Fatal(err)
	}
	nkeys, _, err := tables.ServiceNames.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append(rkeys, nkeys...) {
		if !usedIDs[id] {
			v.leftovers = append(v.leftovers, fmt.Sprintf("service id %d: rev_nat or name without a master", id))
		}
	}
	rangesUsed := map[uint32]bool{}
	for i := range decoded {
		if f := &decoded[i]; f.Key.Scope == lbmap.ScopeDefault && f.HasMaster && f.Master.Flags&lbmap.FlagSourceRanges != 0 {
			rangesUsed[f.Master.ServiceId] = true
		}
	}
	for id, ranges := range rangesByID {
		if !rangesUsed[id] {
			v.leftovers = append(v.leftovers, fmt.Sprintf("service id %d: source ranges %v without a master that reads them", id, ranges))
		}
	}
	slices.Sort(v.dangling)
	slices.Sort(v.leftovers)
	return v
}
