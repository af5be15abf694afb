package syncer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// newTestMaps creates unpinned maps with the real layouts; maxEntries
// overrides the size of the named maps.
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
	}
}

func tcp(vip string, port uint16) desired.Frontend {
	return desired.Frontend{Addr: netip.MustParseAddr(vip), Port: port, Proto: desired.TCP}
}

func backends(proto desired.Protocol, port uint16, addrs ...string) []desired.Backend {
	var out []desired.Backend
	for _, a := range addrs {
		out = append(out, desired.Backend{Addr: netip.MustParseAddr(a), Port: port, Proto: proto})
	}
	return out
}

func state(svcs ...*desired.FrontendEntry) *desired.State {
	s := &desired.State{Frontends: map[desired.Frontend]*desired.FrontendEntry{}}
	for _, svc := range svcs {
		if svc.Kind == 0 {
			svc.Kind = desired.ClusterIP
		}
		s.Frontends[svc.Frontend] = svc
	}
	return s
}

func svc(name string, fe desired.Frontend, active, terminating []desired.Backend) *desired.FrontendEntry {
	return &desired.FrontendEntry{Frontend: fe, Name: desired.ServicePortName{Namespace: "default", Name: name}, BackendSet: desired.BackendSet{Active: active, Terminating: terminating}}
}

// frontendView is what a reader of the maps finds for one frontend: the
// backends reachable from its master entry.
type frontendView struct {
	name        string
	active      []string
	terminating []string
}

// readMaps decodes the maps the way the datapath reads them, checking that no
// reachable slot or backend dangles.
func readMaps(t *testing.T, m *lbmap.Maps) map[string]frontendView {
	t.Helper()
	skeys, svals, err := lbmap.Dump[lbmap.ServiceKey, lbmap.ServiceValue](m.Services)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[lbmap.ServiceKey]lbmap.ServiceValue{}
	for i, k := range skeys {
		entries[k] = svals[i]
	}
	bkeys, bvals, err := lbmap.Dump[uint32, lbmap.Backend](m.Backends)
	if err != nil {
		t.Fatal(err)
	}
	backendByID := map[uint32]lbmap.Backend{}
	for i, id := range bkeys {
		backendByID[id] = bvals[i]
	}
	out := map[string]frontendView{}
	reachable := 0
	for k, v := range entries {
		if k.Slot != 0 {
			continue
		}
		var rn lbmap.RevNat
		if err := m.RevNat.Lookup(v.ServiceId, &rn); err != nil {
			t.Errorf("frontend %s: rev_nat %d missing: %v", k, v.ServiceId, err)
		} else if rn.AddrPort() != k.AddrPort() {
			t.Errorf("frontend %s: rev_nat %d says %s", k, v.ServiceId, rn.AddrPort())
		}
		var name lbmap.ServiceName
		_ = m.ServiceNames.Lookup(v.ServiceId, &name)
		view := frontendView{name: name.Get()}
		for slot := uint16(1); slot <= v.Count+v.Terminating; slot++ {
			reachable++
			sk := k
			sk.Slot = slot
			sv, ok := entries[sk]
			if !ok {
				t.Errorf("frontend %s: slot %d missing", k, slot)
				continue
			}
			b, ok := backendByID[sv.BackendId]
			if !ok {
				t.Errorf("frontend %s: slot %d names missing backend %d", k, slot, sv.BackendId)
				continue
			}
			if slot <= v.Count {
				view.active = append(view.active, b.AddrPort().String())
			} else {
				view.terminating = append(view.terminating, b.AddrPort().String())
			}
		}
		slices.Sort(view.active)
		slices.Sort(view.terminating)
		out[k.AddrPort().String()+"/"+lbmap.ProtoString(k.Proto)] = view
	}
	if masters, slots := len(out), len(entries)-len(out); slots != reachable {
		t.Errorf("services map holds %d slot entries for %d masters, but only %d are reachable: leftovers", slots, masters, reachable)
	}
	return out
}

func TestSyncSequences(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	fe6 := desired.Frontend{Addr: netip.MustParseAddr("fd00::10"), Port: 80, Proto: desired.TCP}
	abc := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4")

	type step struct {
		desc  string
		state *desired.State
		want  map[string]frontendView
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{
			name: "add, shrink, grow, delete",
			steps: []step{
				{"three backends", state(svc("web", fe, abc, nil)), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web", active: []string{"10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
				{"one removed", state(svc("web", fe, abc[1:], nil)), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web", active: []string{"10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
				{"back to three", state(svc("web", fe, abc, nil)), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web", active: []string{"10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
				{"service deleted", state(), map[string]frontendView{}},
			},
		},
		{
			name: "terminating tail and no endpoints",
			steps: []step{
				{"one ready, two terminating", state(svc("web", fe, abc[:1], abc[1:])), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web", active: []string{"10.244.0.2:8080"}, terminating: []string{"10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
				{"ready one becomes terminating", state(svc("web", fe, nil, abc)), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web", terminating: []string{"10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
				{"no endpoints: frontend kept to refuse connects", state(svc("web", fe, nil, nil)), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/web"},
				}},
			},
		},
		{
			name: "shared backend across frontends and families",
			steps: []step{
				{"two frontends share backends", state(
					svc("a", fe, abc[:2], nil),
					svc("b", tcp("10.96.0.11", 80), abc[1:], nil),
					svc("a6", fe6, backends(desired.TCP, 8080, "fd00:10:244::2"), nil),
				), map[string]frontendView{
					"10.96.0.10:80/TCP": {name: "default/a", active: []string{"10.244.0.2:8080", "10.244.0.3:8080"}},
					"10.96.0.11:80/TCP": {name: "default/b", active: []string{"10.244.0.3:8080", "10.244.0.4:8080"}},
					"[fd00::10]:80/TCP": {name: "default/a6", active: []string{"[fd00:10:244::2]:8080"}},
				}},
				{"one frontend goes, the shared backend stays", state(svc("b", tcp("10.96.0.11", 80), abc[1:], nil)), map[string]frontendView{
					"10.96.0.11:80/TCP": {name: "default/b", active: []string{"10.244.0.3:8080", "10.244.0.4:8080"}},
				}},
			},
		},
	}
	modes := []struct {
		name string
		sync func(s *Syncer, prev, next *desired.State) (Stats, error)
	}{
		{"full", func(s *Syncer, _, next *desired.State) (Stats, error) { return s.Sync(next) }},
		{"changed frontends only", func(s *Syncer, prev, next *desired.State) (Stats, error) {
			return s.SyncFrontends(next, changedFrontends(prev, next))
		}},
	}
	for _, mode := range modes {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				m := newTestMaps(t, nil)
				s, err := New(m, zaptest.NewLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				prev := state()
				for _, st := range tc.steps {
					if _, err := mode.sync(s, prev, st.state); err != nil {
						t.Fatalf("%s: sync: %v", st.desc, err)
					}
					prev = st.state
					got := readMaps(t, m)
					if !equalViews(got, st.want) {
						t.Fatalf("%s: maps hold\n%v\nwant\n%v", st.desc, got, st.want)
					}
					// The same state again writes nothing.
					if stats, err := s.Sync(st.state); err != nil || stats != (Stats{}) {
						t.Fatalf("%s: second sync of the same state: %+v, %v; want no writes", st.desc, stats, err)
					}
				}
				bkeys, _, _ := lbmap.Dump[uint32, lbmap.Backend](m.Backends)
				used := map[uint32]bool{}
				for _, e := range s.mirror.frontends {
					for _, id := range e.slots {
						used[id] = true
					}
				}
				for _, id := range bkeys {
					if !used[id] {
						t.Errorf("backend %d is left in the map with no frontend using it", id)
					}
				}
			})
		}
	}
}

// changedFrontends is what desired.Builder reports between two states.
func changedFrontends(prev, next *desired.State) []desired.Frontend {
	var out []desired.Frontend
	for fe, svc := range next.Frontends {
		if old, ok := prev.Frontends[fe]; !ok || !old.Equal(svc) {
			out = append(out, fe)
		}
	}
	for fe := range prev.Frontends {
		if _, ok := next.Frontends[fe]; !ok {
			out = append(out, fe)
		}
	}
	return out
}

func equalViews(a, b map[string]frontendView) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || va.name != vb.name || !slices.Equal(va.active, vb.active) || !slices.Equal(va.terminating, vb.terminating) {
			return false
		}
	}
	return true
}

// A restarted agent finds its ids in the maps and rewrites nothing.
func TestRestoreKeepsIDsAndWritesNothing(t *testing.T) {
	m := newTestMaps(t, nil)
	fe := tcp("10.96.0.10", 80)
	want := state(svc("web", fe, backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3"), nil))
	first, err := New(m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Sync(want); err != nil {
		t.Fatal(err)
	}
	id := first.mirror.frontends[fe].master.ServiceId

	second, err := New(m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := second.mirror.frontends[fe].master.ServiceId; got != id {
		t.Errorf("service id after restart = %d, want %d", got, id)
	}
	stats, err := second.Sync(want)
	if err != nil || stats != (Stats{}) {
		t.Errorf("first sync after restart: %+v, %v; want no writes", stats, err)
	}
	// A new frontend gets a fresh id, not a restored one.
	want.Frontends[tcp("10.96.0.11", 80)] = svc("other", tcp("10.96.0.11", 80), nil, nil)
	want.Frontends[tcp("10.96.0.11", 80)].Kind = desired.ClusterIP
	if _, err := second.Sync(want); err != nil {
		t.Fatal(err)
	}
	if got := second.mirror.frontends[tcp("10.96.0.11", 80)].master.ServiceId; got == id {
		t.Errorf("new frontend reused service id %d", got)
	}
}

// Removing one backend rewrites one slot, and the others keep theirs.
func TestRemovalKeepsOtherSlots(t *testing.T) {
	m := newTestMaps(t, nil)
	fe := tcp("10.96.0.10", 80)
	abcd := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5")
	s, err := New(m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(state(svc("web", fe, abcd, nil))); err != nil {
		t.Fatal(err)
	}
	before := map[uint16]uint32{}
	for slot, id := range s.mirror.frontends[fe].slots {
		before[slot] = id
	}
	stats, err := s.Sync(state(svc("web", fe, slices.Delete(slices.Clone(abcd), 1, 2), nil)))
	if err != nil {
		t.Fatal(err)
	}
	after := s.mirror.frontends[fe].slots
	moved := 0
	for slot, id := range after {
		if before[slot] != id {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("%d slots changed backend, want 1 (the removed backend's slot takes the last one)", moved)
	}
	// slot rewrite + master + last slot delete + backend delete
	if stats.Upserts != 2 || stats.Deletes != 2 {
		t.Errorf("writes = %+v, want 2 upserts and 2 deletes", stats)
	}
}

// A full map fails only the Services that do not fit; the others work.
func TestFullMapFailsOnlyWhatDoesNotFit(t *testing.T) {
	m := newTestMaps(t, map[string]uint32{lbmap.ServicesMap: 4})
	s, err := New(m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	small := svc("small", tcp("10.96.0.10", 80), backends(desired.TCP, 8080, "10.244.0.2"), nil)
	big := svc("big", tcp("10.96.0.20", 80), backends(desired.TCP, 8080, "10.244.0.3", "10.244.0.4", "10.244.0.5"), nil)
	_, err = s.Sync(state(small, big))
	if err == nil {
		t.Fatal("sync into a too small map succeeded")
	}
	if !strings.Contains(err.Error(), "default/big") {
		t.Errorf("error does not name the Service that did not fit: %v", err)
	}
	if strings.Contains(err.Error(), "default/small") {
		t.Errorf("error names a Service that fit: %v", err)
	}
	got := readMaps(t, m)
	if v, ok := got["10.96.0.10:80/TCP"]; !ok || len(v.active) != 1 {
		t.Errorf("the Service that fits is not programmed: %v", got)
	}
	if _, ok := got["10.96.0.20:80/TCP"]; ok {
		t.Errorf("the Service that does not fit has a master entry: %v", got)
	}
}

func TestStableLayout(t *testing.T) {
	cases := []struct {
		name      string
		old, want []uint32
		layout    []uint32
	}{
		{"empty to three", nil, []uint32{1, 2, 3}, []uint32{1, 2, 3}},
		{"middle removed: last moves into the hole", []uint32{1, 2, 3, 4}, []uint32{1, 3, 4}, []uint32{1, 4, 3}},
		{"added at the end", []uint32{1, 2}, []uint32{1, 2, 3}, []uint32{1, 2, 3}},
		{"replaced", []uint32{1, 2}, []uint32{1, 5}, []uint32{1, 5}},
		{"all gone", []uint32{1, 2}, nil, []uint32{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := stableLayout(tc.old, tc.want)
			if !slices.Equal(got, tc.layout) {
				t.Errorf("stableLayout(%v, %v) = %v, want %v", tc.old, tc.want, got, tc.layout)
			}
		})
	}
}

// BenchmarkSync compares a full diff with a diff of the one frontend that
// changed, at 10,000 frontends of three backends each.
func BenchmarkSync(b *testing.B) {
	st := state()
	var fes []desired.Frontend
	for i := range 10000 {
		fe := tcp(fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), 80)
		fes = append(fes, fe)
		st.Frontends[fe] = &desired.FrontendEntry{Frontend: fe, Kind: desired.ClusterIP,
			Name:       desired.ServicePortName{Namespace: "default", Name: fmt.Sprintf("svc-%d", i)},
			BackendSet: desired.BackendSet{Active: backends(desired.TCP, 8080, fmt.Sprintf("10.128.%d.%d", i/250, i%250+1), fmt.Sprintf("10.129.%d.%d", i/250, i%250+1), fmt.Sprintf("10.130.%d.%d", i/250, i%250+1))}}
	}
	for _, mode := range []string{"full", "one-frontend"} {
		b.Run(mode, func(b *testing.B) {
			m := newTestMaps(b, nil)
			s, err := New(m, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Sync(st); err != nil {
				b.Fatal(err)
			}
			target := st.Frontends[fes[5000]]
			original := target.Active
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// Alternate one backend so that every sync writes.
				if i%2 == 0 {
					target.Active = original[:2]
				} else {
					target.Active = original
				}
				var err error
				if mode == "full" {
					_, err = s.Sync(st)
				} else {
					_, err = s.SyncFrontends(st, []desired.Frontend{target.Frontend})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			target.Active = original
		})
	}
}

// A frontend listed twice as changed is planned once: a new one gets one id.
func TestSyncFrontendsListedTwice(t *testing.T) {
	m := newTestMaps(t, nil)
	s, err := New(m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fe := tcp("10.96.0.10", 80)
	st := state(svc("web", fe, backends(desired.TCP, 8080, "10.244.0.2"), nil))
	if _, err := s.SyncFrontends(st, []desired.Frontend{fe, fe}); err != nil {
		t.Fatal(err)
	}
	readMaps(t, m)
	keys, _, err := lbmap.Dump[uint32, lbmap.RevNat](m.RevNat)
	if err != nil || len(keys) != 1 {
		t.Errorf("rev_nat holds %d entries (%v), want 1", len(keys), err)
	}
	if stats, err := s.Sync(st); err != nil || stats != (Stats{}) {
		t.Errorf("a full sync afterwards wrote %+v, %v; want nothing", stats, err)
	}
}
