package syncer

import (
	"fmt"
	"math"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// scopeEntries is what the services map holds for one frontend scope.
type scopeEntries struct {
	// master.ServiceId is the scope's service id even before the master is
	// written, so that a retry keeps it.
	master  lbmap.ServiceValue
	written bool // the master entry is in the map, not only its slots
	slots   slotTable
}

// regions splits the slots into the active and terminating backend ids the
// master entry currently exposes.
func (e *scopeEntries) regions() (active, terminating []uint32) {
	if !e.written {
		return nil, nil
	}
	return lbmap.SlotRegions(e.master, func(slot uint16) uint32 {
		id, _ := e.slots.get(slot)
		return id
	})
}

// mirror is socklb's copy of the map contents, kept exactly in step with
// every successful write.
type mirror struct {
	frontends  map[frontendScope]*scopeEntries
	strays     map[lbmap.ServiceKey]bool // services entries that belong to no frontend scope socklb manages
	backends   map[uint32]lbmap.Backend
	backendIDs map[desired.Backend]uint32
	revNat     map[uint32]lbmap.RevNat
	// names holds the text of each name entry (ServiceName.Get): 30,000
	// values of the map's 160 bytes took 10 MB in a Go map.
	names map[uint32]string
	// backendRefs counts the slots naming each backend; a backend whose count
	// drops to zero is queued in unreferenced and deleted by the next plan.
	backendRefs  map[uint32]int
	unreferenced map[uint32]bool
	// serviceIDRefs counts the frontend scopes holding each service id: the
	// scopes of one frontend share it, and its rev_nat and name entries go
	// only when the last scope does.
	serviceIDRefs map[uint32]int
	// serviceEntries counts the services map entries of the frontend scopes
	// (masters written and slots), so that room is known without a scan.
	serviceEntries int
	// sourceRanges holds the source-ranges entries by service id.
	sourceRanges map[uint32]map[lbmap.SourceRangeKey]bool
	// nodeConfig is what the node config array holds (zero when never
	// written).
	nodeConfig lbmap.NodeConfig
	// refuse is what the fail-fast trie holds (refuse.go).
	refuse map[lbmap.RefuseKey]lbmap.RefuseKind
}

// empty reports whether the maps hold nothing socklb wrote or must
// remove: a node's first sync.
func (mr *mirror) empty() bool {
	return len(mr.frontends) == 0 && len(mr.strays) == 0 && len(mr.backends) == 0 &&
		len(mr.revNat) == 0 && len(mr.names) == 0 && len(mr.sourceRanges) == 0 && len(mr.refuse) == 0
}

func newMirror() *mirror {
	return &mirror{
		frontends:     map[frontendScope]*scopeEntries{},
		strays:        map[lbmap.ServiceKey]bool{},
		backends:      map[uint32]lbmap.Backend{},
		backendIDs:    map[desired.Backend]uint32{},
		revNat:        map[uint32]lbmap.RevNat{},
		names:         map[uint32]string{},
		backendRefs:   map[uint32]int{},
		unreferenced:  map[uint32]bool{},
		serviceIDRefs: map[uint32]int{},
		sourceRanges:  map[uint32]map[lbmap.SourceRangeKey]bool{},
		refuse:        map[lbmap.RefuseKey]lbmap.RefuseKind{},
	}
}

// serviceIDInUse says whether id is held by a frontend scope or names a
// rev_nat or name entry, so that it is not handed out again.
func (mr *mirror) serviceIDInUse(id uint32) bool {
	_, rev := mr.revNat[id]
	_, name := mr.names[id]
	return rev || name || mr.serviceIDRefs[id] > 0 || len(mr.sourceRanges[id]) > 0
}

func (mr *mirror) addSourceRange(k lbmap.SourceRangeKey) {
	id := k.ServiceID()
	if mr.sourceRanges[id] == nil {
		mr.sourceRanges[id] = map[lbmap.SourceRangeKey]bool{}
	}
	mr.sourceRanges[id][k] = true
}

func (mr *mirror) deleteSourceRange(k lbmap.SourceRangeKey) {
	id := k.ServiceID()
	delete(mr.sourceRanges[id], k)
	if len(mr.sourceRanges[id]) == 0 {
		delete(mr.sourceRanges, id)
	}
}

// entry returns the entries of fs, remembering it under id when it is new.
func (mr *mirror) entry(fs frontendScope, id uint32) *scopeEntries {
	if e, ok := mr.frontends[fs]; ok {
		return e
	}
	e := &scopeEntries{master: lbmap.ServiceValue{ServiceId: id}}
	mr.frontends[fs] = e
	mr.serviceIDRefs[id]++
	return e
}

// forgetIfEmpty drops fs once the maps hold nothing of it.
func (mr *mirror) forgetIfEmpty(fs frontendScope) {
	e, ok := mr.frontends[fs]
	if !ok || e.written || e.slots.len() > 0 {
		return
	}
	mr.unrefServiceID(e.master.ServiceId)
	delete(mr.frontends, fs)
}

func (mr *mirror) unrefServiceID(id uint32) {
	if mr.serviceIDRefs[id]--; mr.serviceIDRefs[id] <= 0 {
		delete(mr.serviceIDRefs, id)
	}
}

func (mr *mirror) setMaster(e *scopeEntries, v lbmap.ServiceValue) {
	if v.ServiceId != e.master.ServiceId {
		mr.unrefServiceID(e.master.ServiceId)
		mr.serviceIDRefs[v.ServiceId]++
	}
	e.master = v
	mr.setWritten(e, true)
}

func (mr *mirror) setWritten(e *scopeEntries, written bool) {
	if e.written != written {
		if written {
			mr.serviceEntries++
		} else {
			mr.serviceEntries--
		}
	}
	e.written = written
}

func (mr *mirror) setSlot(e *scopeEntries, slot uint16, backendID uint32) {
	if old, ok := e.slots.set(slot, backendID); ok {
		mr.unrefBackend(old)
	} else {
		mr.serviceEntries++
	}
	mr.backendRefs[backendID]++
	delete(mr.unreferenced, backendID)
}

func (mr *mirror) deleteSlot(e *scopeEntries, slot uint16) {
	if old, ok := e.slots.delete(slot); ok {
		mr.serviceEntries--
		mr.unrefBackend(old)
	}
}

func (mr *mirror) unrefBackend(backendID uint32) {
	mr.backendRefs[backendID]--
	if mr.backendRefs[backendID] <= 0 {
		delete(mr.backendRefs, backendID)
		mr.unreferenced[backendID] = true
	}
}

func (mr *mirror) setBackend(id uint32, v lbmap.Backend) {
	mr.backends[id] = v
	b := backendOfValue(v)
	// Two ids for one address can only come from outside socklb; keep the
	// lowest, the other is pruned as unreferenced.
	if old, ok := mr.backendIDs[b]; !ok || id < old {
		mr.backendIDs[b] = id
	}
	if mr.backendRefs[id] == 0 {
		mr.unreferenced[id] = true // until a slot names it
	}
}

func (mr *mirror) deleteBackend(id uint32) {
	v, ok := mr.backends[id]
	if !ok {
		return
	}
	delete(mr.backends, id)
	delete(mr.unreferenced, id)
	b := backendOfValue(v)
	if mr.backendIDs[b] == id {
		delete(mr.backendIDs, b)
	}
}

// loadMirror reads the maps. This is how service and backend ids survive an
// agent restart.
func loadMirror(t lbmap.Tables) (*mirror, error) {
	mr := newMirror()
	bkeys, bvals, err := t.Backends.Dump()
	if err != nil {
		return nil, fmt.Errorf("restore backends: %w", err)
	}
	for i, id := range bkeys {
		mr.setBackend(id, bvals[i])
	}
	skeys, svals, err := t.Services.Dump()
	if err != nil {
		return nil, fmt.Errorf("restore services: %w", err)
	}
	for _, f := range lbmap.DecodeFrontends(skeys, svals, nil) {
		mr.restoreFrontend(f)
	}
	rkeys, rvals, err := t.RevNat.Dump()
	if err != nil {
		return nil, fmt.Errorf("restore rev_nat: %w", err)
	}
	for i, id := range rkeys {
		mr.revNat[id] = rvals[i]
	}
	nkeys, nvals, err := t.ServiceNames.Dump()
	if err != nil {
		return nil, fmt.Errorf("restore service names: %w", err)
	}
	for i, id := range nkeys {
		mr.names[id] = nvals[i].Get()
	}
	if err := mr.restoreNorthSouth(t); err != nil {
		return nil, err
	}
	if err := mr.restoreRefuse(t); err != nil {
		return nil, err
	}
	return mr, nil
}

// restoreNorthSouth reads the source ranges and the node config.
func (mr *mirror) restoreNorthSouth(t lbmap.Tables) error {
	keys, _, err := t.SourceRanges.Dump()
	if err != nil {
		return fmt.Errorf("restore source ranges: %w", err)
	}
	for _, k := range keys {
		mr.addSourceRange(k)
	}
	ckeys, cvals, err := t.NodeConfig.Dump()
	if err != nil {
		return fmt.Errorf("restore node config: %w", err)
	}
	for i, k := range ckeys {
		if k == nodeConfigKey {
			mr.nodeConfig = cvals[i]
		}
	}
	return nil
}

func (mr *mirror) restoreFrontend(f lbmap.Frontend) {
	fs, ours := frontendScopeOfKey(f.Key)
	if !ours || !f.HasMaster {
		// Another scope, or slots left behind by a master that is gone: no
		// reader reaches them.
		if f.HasMaster {
			mr.strays[f.Key] = true
		}
		for slot := range f.Slots {
			k := f.Key
			k.Slot = slot
			mr.strays[k] = true
		}
		return
	}
	e := mr.entry(fs, f.Master.ServiceId)
	mr.setMaster(e, f.Master)
	for slot, id := range f.Slots {
		mr.setSlot(e, slot, id)
	}
}

// idAllocator hands out ids that are not in use, moving forward so that a
// freed id is not reused soon (a socket may still remember it). It is a
// value: a plan allocates from a copy, and the syncer keeps the copy once
// the plan is applied.
type idAllocator struct {
	next uint32
}

func newIDAllocator(used []uint32) idAllocator {
	var highest uint32
	for _, id := range used {
		highest = max(highest, id)
	}
	return idAllocator{next: highest + 1}
}

func (a *idAllocator) allocate(inUse func(uint32) bool) (uint32, error) {
	for range 1 << 20 {
		id := a.next
		if a.next == math.MaxUint32 {
			a.next = 1
		} else {
			a.next++
		}
		if id != 0 && !inUse(id) {
			return id, nil
		}
	}
	return 0, fmt.Errorf("allocate an id: none free")
}
