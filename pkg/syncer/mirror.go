package syncer

import (
	"fmt"
	"math"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// frontendEntries is what the services map holds for one frontend.
type frontendEntries struct {
	master  lbmap.ServiceValue
	written bool              // the master entry is in the map, not only its slots
	slots   map[uint16]uint32 // slot number -> backend id
}

// mirror is socklb's copy of the map contents, kept exactly in step with
// every successful write.
type mirror struct {
	frontends  map[desired.Frontend]*frontendEntries
	strays     []lbmap.ServiceKey // services entries that belong to no frontend socklb manages
	backends   map[uint32]lbmap.Backend
	backendIDs map[desired.Backend]uint32
	revNat     map[uint32]lbmap.RevNat
	names      map[uint32]lbmap.ServiceName
	// backendRefs counts the slots naming each backend; a backend whose count
	// drops to zero is queued in unreferenced and deleted at the end of a sync.
	backendRefs  map[uint32]int
	unreferenced map[uint32]bool
	// frontendIDs holds the service ids of the frontends, for allocation.
	frontendIDs map[uint32]bool
	// serviceEntries counts the services map entries of the frontends
	// (masters written and slots), so that room is known without a scan.
	serviceEntries int
}

func newMirror() *mirror {
	return &mirror{
		frontends:    map[desired.Frontend]*frontendEntries{},
		backends:     map[uint32]lbmap.Backend{},
		backendIDs:   map[desired.Backend]uint32{},
		revNat:       map[uint32]lbmap.RevNat{},
		names:        map[uint32]lbmap.ServiceName{},
		backendRefs:  map[uint32]int{},
		unreferenced: map[uint32]bool{},
		frontendIDs:  map[uint32]bool{},
	}
}

func (mr *mirror) addFrontend(fe desired.Frontend, id uint32) *frontendEntries {
	e := &frontendEntries{master: lbmap.ServiceValue{ServiceId: id}, slots: map[uint16]uint32{}}
	mr.frontends[fe] = e
	mr.frontendIDs[id] = true
	return e
}

func (mr *mirror) removeFrontend(fe desired.Frontend) {
	if e, ok := mr.frontends[fe]; ok {
		delete(mr.frontendIDs, e.master.ServiceId)
		delete(mr.frontends, fe)
	}
}

func (mr *mirror) setWritten(e *frontendEntries, written bool) {
	if e.written != written {
		if written {
			mr.serviceEntries++
		} else {
			mr.serviceEntries--
		}
	}
	e.written = written
}

func (mr *mirror) setSlot(e *frontendEntries, slot uint16, backendID uint32) {
	if old, ok := e.slots[slot]; ok {
		mr.unref(old)
	} else {
		mr.serviceEntries++
	}
	e.slots[slot] = backendID
	mr.backendRefs[backendID]++
	delete(mr.unreferenced, backendID)
}

func (mr *mirror) deleteSlot(e *frontendEntries, slot uint16) {
	if old, ok := e.slots[slot]; ok {
		delete(e.slots, slot)
		mr.serviceEntries--
		mr.unref(old)
	}
}

func (mr *mirror) unref(backendID uint32) {
	mr.backendRefs[backendID]--
	if mr.backendRefs[backendID] <= 0 {
		delete(mr.backendRefs, backendID)
		mr.unreferenced[backendID] = true
	}
}

// loadMirror reads the maps. This is how service and backend ids survive an
// agent restart.
func loadMirror(m *lbmap.Maps) (*mirror, error) {
	mr := newMirror()

	bkeys, bvals, err := lbmap.Dump[uint32, lbmap.Backend](m.Backends)
	if err != nil {
		return nil, fmt.Errorf("restore backends: %w", err)
	}
	for i, id := range bkeys {
		mr.setBackend(id, bvals[i])
		mr.unreferenced[id] = true // until a slot names it
	}

	skeys, svals, err := lbmap.Dump[lbmap.ServiceKey, lbmap.ServiceValue](m.Services)
	if err != nil {
		return nil, fmt.Errorf("restore services: %w", err)
	}
	slotsOf := map[desired.Frontend]map[uint16]uint32{}
	var slotKeys []lbmap.ServiceKey
	for i, k := range skeys {
		fe, ok := frontendOfKey(k)
		if !ok {
			mr.strays = append(mr.strays, k)
			continue
		}
		if k.Slot == 0 {
			e := mr.addFrontend(fe, svals[i].ServiceId)
			e.master = svals[i]
			mr.setWritten(e, true)
			continue
		}
		if slotsOf[fe] == nil {
			slotsOf[fe] = map[uint16]uint32{}
		}
		slotsOf[fe][k.Slot] = svals[i].BackendId
		slotKeys = append(slotKeys, k)
	}
	for _, k := range slotKeys {
		fe, _ := frontendOfKey(k)
		if e, ok := mr.frontends[fe]; ok {
			mr.setSlot(e, k.Slot, slotsOf[fe][k.Slot])
		} else {
			// Slots left behind by a master that is gone: no reader reaches them.
			mr.strays = append(mr.strays, k)
		}
	}

	rkeys, rvals, err := lbmap.Dump[uint32, lbmap.RevNat](m.RevNat)
	if err != nil {
		return nil, fmt.Errorf("restore rev_nat: %w", err)
	}
	for i, id := range rkeys {
		mr.revNat[id] = rvals[i]
	}
	nkeys, nvals, err := lbmap.Dump[uint32, lbmap.ServiceName](m.ServiceNames)
	if err != nil {
		return nil, fmt.Errorf("restore service names: %w", err)
	}
	for i, id := range nkeys {
		mr.names[id] = nvals[i]
	}
	return mr, nil
}

func frontendOfKey(k lbmap.ServiceKey) (desired.Frontend, bool) {
	if k.Scope != lbmap.ScopeDefault {
		return desired.Frontend{}, false
	}
	ap := k.AddrPort()
	return desired.Frontend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.Protocol(k.Proto)}, true
}

func backendOfValue(v lbmap.Backend) desired.Backend {
	ap := v.AddrPort()
	return desired.Backend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.Protocol(v.Proto)}
}

func (mr *mirror) setBackend(id uint32, v lbmap.Backend) {
	mr.backends[id] = v
	b := backendOfValue(v)
	// Two ids for one address can only come from outside socklb; keep the
	// lowest, the other is pruned as unreferenced.
	if old, ok := mr.backendIDs[b]; !ok || id < old {
		mr.backendIDs[b] = id
	}
}

func (mr *mirror) deleteBackend(id uint32) {
	v, ok := mr.backends[id]
	if !ok {
		return
	}
	delete(mr.backends, id)
	b := backendOfValue(v)
	if mr.backendIDs[b] == id {
		delete(mr.backendIDs, b)
	}
}

// idAllocator hands out ids that are not in use, moving forward so that a
// freed id is not reused soon (a socket may still remember it).
type idAllocator struct {
	next  uint32
	inUse func(uint32) bool
}

func newIDAllocator(used []uint32, inUse func(uint32) bool) *idAllocator {
	var highest uint32
	for _, id := range used {
		highest = max(highest, id)
	}
	return &idAllocator{next: highest + 1, inUse: inUse}
}

func (a *idAllocator) allocate() (uint32, error) {
	for range 1 << 20 {
		id := a.next
		if a.next == math.MaxUint32 {
			a.next = 1
		} else {
			a.next++
		}
		if id != 0 && !a.inUse(id) {
			return id, nil
		}
	}
	return 0, fmt.Errorf("allocate an id: none free")
}
