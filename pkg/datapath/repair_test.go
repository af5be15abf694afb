package datapath_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// A map pin removed or replaced while the agent runs is pinned again to the
// map the programs use, contents and all; intact pins are left alone.
func TestRepairPins(t *testing.T) {
	testCases := []struct {
		name   string
		damage func(t *testing.T, pinDir string)
		want   []string
	}{
		{"intact pins are left alone", func(*testing.T, string) {}, nil},
		{"removed pins are pinned again", func(t *testing.T, pinDir string) {
			for _, name := range []string{lbmap.ServicesMap, lbmap.NatMap} {
				if err := os.Remove(filepath.Join(pinDir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{lbmap.NatMap, lbmap.ServicesMap}},
		{"a pin replaced by another map is pinned again", func(t *testing.T, pinDir string) {
			path := filepath.Join(pinDir, lbmap.BackendsMap)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := other.Pin(path); err != nil {
				t.Fatal(err)
			}
		}, []string{lbmap.BackendsMap}},
		{"a file in a pin's place is replaced", func(t *testing.T, pinDir string) {
			path := filepath.Join(pinDir, lbmap.RevNatMap)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil { // bpffs holds only directories and pins
				t.Fatal(err)
			}
		}, []string{lbmap.RevNatMap}},
		{"a removed link pin is pinned again", func(t *testing.T, pinDir string) {
			if err := os.Remove(filepath.Join(pinDir, "links", "cgroup-connect4")); err != nil {
				t.Fatal(err)
			}
		}, []string{"links/cgroup-connect4"}},
		{"the links directory removed with its pins is made again", func(t *testing.T, pinDir string) {
			if err := os.RemoveAll(filepath.Join(pinDir, "links")); err != nil {
				t.Fatal(err)
			}
		}, []string{"links/cgroup-connect4", "links/cgroup-connect6", "links/cgroup-getpeername4", "links/cgroup-getpeername6",
			"links/cgroup-recvmsg4", "links/cgroup-recvmsg6", "links/cgroup-sendmsg4", "links/cgroup-sendmsg6"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox.New(t)
			d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			t.Cleanup(func() {
				if !closed {
					d.Close()
				}
			})
			key, value := uint32(7), lbmap.Backend{Port: 8080}
			if err := d.Maps.Backends.Put(&key, &value); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, sb.PinDir)

			got, err := d.RepairPins()
			if err != nil {
				t.Fatalf("RepairPins: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("repaired %v, want %v", got, tc.want)
			}
			if again, err := d.RepairPins(); err != nil || len(again) > 0 {
				t.Errorf("a second repair did %v (%v), want nothing", again, err)
			}
			pinned, err := lbmap.OpenPinned(sb.PinDir)
			if err != nil {
				t.Fatalf("the pins do not open after the repair: %v", err)
			}
			defer pinned.Close()
			var got7 lbmap.Backend
			if err := pinned.Backends.Lookup(&key, &got7); err != nil || got7 != value {
				t.Errorf("backend 7 through the pins: %+v (%v), want %+v: the pin is not the map in use", got7, err, value)
			}
			// The agent's handles go: what stays attached is what is pinned.
			d.Close()
			closed = true
			for hook, at := range attachedLinks(t, sb.Cgroup) {
				if len(at) != 1 {
					t.Errorf("%s has %d programs attached once the agent's handles are closed, want 1", hook, len(at))
				}
			}
		})
	}
}

// --map-size-services sizes the services map when it is made; a restart
// without it keeps the pinned map, a restart asking another size is
// refused (a map cannot be resized in place).
func TestServicesMapSize(t *testing.T) {
	sb := sandbox.New(t)
	load := func(size uint32) (*datapath.Datapath, error) {
		return datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup, MapSizes: lbmap.Sizes{Services: size}}, zaptest.NewLogger(t))
	}
	steps := []struct {
		name    string
		size    uint32
		want    uint32
		refused bool
	}{
		{"made with the size asked", 16, 16, false},
		{"a restart without the flag keeps it", 0, 16, false},
		{"a restart with the same size", 16, 16, false},
		{"a restart with another size is refused", 32, 0, true},
	}
	for _, st := range steps {
		d, err := load(st.size)
		if st.refused {
			if err == nil {
				d.Close()
				t.Errorf("%s: loaded", st.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := d.Maps.Services.MaxEntries(); got != st.want {
			t.Errorf("%s: services map of %d entries, want %d", st.name, got, st.want)
		}
		d.Close()
	}
}
