package lbmap

import (
	"fmt"
	"slices"
)

// Frontend is what the services map holds for one frontend in one scope: the
// master entry (slot 0) and the backend slots, decoded the way the datapath
// reads them. The syncer restores its mirror from it, inspect prints it, and
// tests check it, so the three agree on the slot layout.
type Frontend struct {
	// Key is the master entry's key (slot 0). Key.Scope is the scope.
	Key ServiceKey
	// Master is the master entry, when HasMaster. Without one no reader
	// reaches the slots.
	Master    ServiceValue
	HasMaster bool
	// Slots maps slot numbers to the backend ids they hold.
	Slots map[uint16]uint32
	// Problems lists, in slot order, what a connecting socket would trip
	// over: a slot the master exposes that is missing, or that names a
	// backend that does not exist; then the scopes that do not fit together.
	Problems []string
	// Unreachable lists, sorted, the slots held that no master exposes.
	Unreachable []uint16
}

// Exposed is the number of slots the master makes reachable: the active
// backends, then the terminating tail.
func (f *Frontend) Exposed() int {
	if !f.HasMaster {
		return 0
	}
	return int(f.Master.Count) + int(f.Master.Terminating)
}

// Regions returns the backend ids the master exposes, active and
// terminating; a missing slot reads as id 0.
func (f *Frontend) Regions() (active, terminating []uint32) {
	if !f.HasMaster {
		return []uint32{}, []uint32{}
	}
	return SlotRegions(f.Master, func(slot uint16) uint32 { return f.Slots[slot] })
}

// SlotRegions splits the slots master exposes into the active backend ids
// and the terminating tail, reading each slot's id from slotID (0 for a
// missing slot): the one reading of the slot layout for decoded dumps and
// the syncer's mirror.
func SlotRegions(master ServiceValue, slotID func(slot uint16) uint32) (active, terminating []uint32) {
	active = make([]uint32, 0, master.Count)
	terminating = make([]uint32, 0, master.Terminating)
	for slot := 1; slot <= int(master.Count)+int(master.Terminating); slot++ {
		if slot <= int(master.Count) {
			active = append(active, slotID(uint16(slot)))
		} else {
			terminating = append(terminating, slotID(uint16(slot)))
		}
	}
	return active, terminating
}

// DecodeFrontends groups a services-map dump by frontend and scope, ordered
// by address, port, protocol and scope. backendExists, when not nil, says
// whether the backends map holds an id, so that dangling slots are reported.
func DecodeFrontends(keys []ServiceKey, values []ServiceValue, backendExists func(id uint32) bool) []Frontend {
	byKey := map[ServiceKey]*Frontend{}
	for i, k := range keys {
		mk := k
		mk.Slot = 0
		f := byKey[mk]
		if f == nil {
			f = &Frontend{Key: mk, Slots: map[uint16]uint32{}}
			byKey[mk] = f
		}
		if k.Slot == 0 {
			f.Master, f.HasMaster = values[i], true
		} else {
			f.Slots[k.Slot] = values[i].BackendId
		}
	}
	out := make([]Frontend, 0, len(byKey))
	for _, f := range byKey {
		f.checkSlots(backendExists)
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b Frontend) int { return CompareServiceKeys(a.Key, b.Key) })
	checkScopes(out, byKey)
	return out
}

func (f *Frontend) checkSlots(backendExists func(uint32) bool) {
	n := f.Exposed()
	for slot := 1; slot <= n; slot++ {
		id, ok := f.Slots[uint16(slot)]
		switch {
		case !ok:
			f.Problems = append(f.Problems, fmt.Sprintf("slot %d is missing", slot))
		case backendExists != nil && !backendExists(id):
			f.Problems = append(f.Problems, fmt.Sprintf("slot %d names missing backend %d", slot, id))
		}
	}
	for slot := range f.Slots {
		if int(slot) > n {
			f.Unreachable = append(f.Unreachable, slot)
		}
	}
	slices.Sort(f.Unreachable)
}

// checkScopes reports a default master that sends node-local clients to an
// internal scope that has no master, or whose service id differs.
func checkScopes(out []Frontend, byKey map[ServiceKey]*Frontend) {
	for i := range out {
		f := &out[i]
		if f.Key.Scope != ScopeDefault || !f.HasMaster || f.Master.Flags&FlagTwoScopes == 0 {
			continue
		}
		ik := f.Key
		ik.Scope = ScopeInternal
		internal := byKey[ik]
		switch {
		case internal == nil || !internal.HasMaster:
			f.Problems = append(f.Problems, "TwoScopes is set but the internal scope has no master entry")
		case internal.Master.ServiceId != f.Master.ServiceId:
			f.Problems = append(f.Problems, fmt.Sprintf("the internal scope has service id %d, not %d", internal.Master.ServiceId, f.Master.ServiceId))
		}
	}
}

// CompareServiceKeys orders keys by family (IPv4 first), address, port,
// protocol, scope and slot.
func CompareServiceKeys(a, b ServiceKey) int {
	ap, bp := a.AddrPort(), b.AddrPort()
	if c := ap.Addr().Compare(bp.Addr()); c != 0 {
		return c
	}
	if ap.Port() != bp.Port() {
		return int(ap.Port()) - int(bp.Port())
	}
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	if a.Scope != b.Scope {
		return int(a.Scope) - int(b.Scope)
	}
	return int(a.Slot) - int(b.Slot)
}
