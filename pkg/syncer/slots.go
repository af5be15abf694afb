package syncer

import "iter"

// slotTable is the backend slots one frontend scope holds in the services
// map: held[slot-1] is the backend id in the slot plus one, 0 when the
// slot is not held (an id read back from the maps may be 0). Slots are
// numbered from 1 and kept dense by stableLayout, so a slice of a few
// words replaces what was a map of some 200 bytes per scope, 40,000 of
// them at 30,000 Services.
type slotTable struct {
	held []uint64
	n    int // slots held
}

// get returns the backend id in slot and whether the slot is held.
func (t *slotTable) get(slot uint16) (uint32, bool) {
	if slot == 0 || int(slot) > len(t.held) || t.held[slot-1] == 0 {
		return 0, false
	}
	return uint32(t.held[slot-1] - 1), true
}

// set holds backend id in slot and returns what the slot held before.
func (t *slotTable) set(slot uint16, id uint32) (old uint32, had bool) {
	old, had = t.get(slot)
	for int(slot) > len(t.held) {
		t.held = append(t.held, 0)
	}
	if !had {
		t.n++
	}
	t.held[slot-1] = uint64(id) + 1
	return old, had
}

// delete releases slot and returns what it held.
func (t *slotTable) delete(slot uint16) (old uint32, had bool) {
	old, had = t.get(slot)
	if !had {
		return 0, false
	}
	t.held[slot-1] = 0
	t.n--
	for len(t.held) > 0 && t.held[len(t.held)-1] == 0 {
		t.held = t.held[:len(t.held)-1]
	}
	return old, true
}

// len is how many slots are held.
func (t *slotTable) len() int { return t.n }

// all yields the held slots in slot order with their backend ids.
func (t *slotTable) all() iter.Seq2[uint16, uint32] {
	return func(yield func(uint16, uint32) bool) {
		for i, v := range t.held {
			if v != 0 && !yield(uint16(i+1), uint32(v-1)) {
				return
			}
		}
	}
}
