package syncer

import (
	"fmt"
	"testing"
)

func TestSlotTable(t *testing.T) {
	type step struct {
		do       string // "set" or "delete"
		slot     uint16
		id       uint32
		wantOld  uint32
		wantHad  bool
		wantHeld string // all() after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"slots in order", []step{
			{"set", 1, 7, 0, false, "1:7"},
			{"set", 2, 8, 0, false, "1:7 2:8"},
			{"set", 1, 9, 7, true, "1:9 2:8"},
		}},
		{"a backend id 0 read back from the maps is held", []step{
			{"set", 1, 0, 0, false, "1:0"},
			{"delete", 1, 0, 0, true, ""},
		}},
		{"a sparse slot, then the tail goes", []step{
			{"set", 5, 3, 0, false, "5:3"},
			{"set", 2, 4, 0, false, "2:4 5:3"},
			{"delete", 5, 0, 3, true, "2:4"},
			{"delete", 5, 0, 0, false, "2:4"},
			{"delete", 3, 0, 0, false, "2:4"},
		}},
		{"the largest id and slot", []step{
			{"set", 65535, 1<<32 - 1, 0, false, "65535:4294967295"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st slotTable
			for i, s := range tc.steps {
				var old uint32
				var had bool
				if s.do == "set" {
					old, had = st.set(s.slot, s.id)
				} else {
					old, had = st.delete(s.slot)
				}
				held := ""
				n := 0
				for slot, id := range st.all() {
					if held != "" {
						held += " "
					}
					held += fmt.Sprintf("%d:%d", slot, id)
					n++
					if got, ok := st.get(slot); !ok || got != id {
						t.Errorf("step %d: get(%d) = %d, %t; all() gives %d", i, slot, got, ok, id)
					}
				}
				if old != s.wantOld || had != s.wantHad || held != s.wantHeld || n != st.len() {
					t.Errorf("step %d (%s %d): returned %d, %t and holds %q (len %d); want %d, %t and %q",
						i, s.do, s.slot, old, had, held, st.len(), s.wantOld, s.wantHad, s.wantHeld)
				}
			}
		})
	}
}
