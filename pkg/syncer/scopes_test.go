package syncer

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

func newMemorySyncer(t *testing.T, maxEntries map[string]uint32) (*Syncer, *lbmap.MemoryTables) {
	t.Helper()
	mem := lbmap.NewMemoryTables(maxEntries)
	s, err := NewWithTables(mem.Tables(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, mem
}

func mustSync(t *testing.T, s *Syncer, st *desired.State) Result {
	t.Helper()
	res, err := s.Sync(st)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

// Both scopes of a frontend share one service id (rev-NAT is per frontend),
// held as long as either scope is; a full sync keeps the internal scope.
func TestServiceIDReferenceCounts(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	ab := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3")
	one := func() *desired.State { return state(svc("web", fe, ab, nil)) }
	two := func() *desired.State { return state(twoScopes(svc("web", fe, ab, nil), ab[:1], nil)) }

	type check struct {
		scopes  []lbmap.Scope // the scopes the mirror holds, each under the first id
		idRefs  int           // the id's reference count
		revNat  bool          // whether rev_nat and name entries exist for the id
		newID   bool          // the id differs from the first one
		nothing bool          // the sync wrote nothing
	}
	cases := []struct {
		name  string
		steps []*desired.State
		want  check // after the last step
	}{
		{"two scopes share one id", []*desired.State{two()}, check{scopes: scopes[:], idRefs: 2, revNat: true}},
		{"adding the internal scope keeps the id", []*desired.State{one(), two()}, check{scopes: scopes[:], idRefs: 2, revNat: true}},
		{"removing the internal scope keeps the id", []*desired.State{two(), one()}, check{scopes: scopes[:1], idRefs: 1, revNat: true}},
		{"removing the frontend frees the id", []*desired.State{two(), state()}, check{idRefs: 0}},
		{"a full sync keeps a non-default scope", []*desired.State{two(), two()}, check{scopes: scopes[:], idRefs: 2, revNat: true, nothing: true}},
		{"a frontend back after removal gets a new id", []*desired.State{two(), state(), one()}, check{scopes: scopes[:1], idRefs: 1, revNat: true, newID: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, mem := newMemorySyncer(t, nil)
			var res Result
			var firstID uint32
			for i, st := range tc.steps {
				res = mustSync(t, s, st)
				if i == 0 {
					firstID = scopeEntry(s, fe, lbmap.ScopeDefault).master.ServiceId
				}
			}
			id := firstID
			if e := scopeEntry(s, fe, lbmap.ScopeDefault); e != nil {
				id = e.master.ServiceId
			}
			if (id != firstID) != tc.want.newID {
				t.Errorf("service id went from %d to %d; want a new one: %t", firstID, id, tc.want.newID)
			}
			var held []lbmap.Scope
			for _, scope := range scopes {
				if e := scopeEntry(s, fe, scope); e != nil {
					held = append(held, scope)
					if e.master.ServiceId != id {
						t.Errorf("scope %d holds service id %d, the frontend %d", scope, e.master.ServiceId, id)
					}
				}
			}
			if !slices.Equal(held, tc.want.scopes) {
				t.Errorf("mirror holds scopes %v, want %v", held, tc.want.scopes)
			}
			if got := s.mirror.serviceIDRefs[id]; got != tc.want.idRefs {
				t.Errorf("service id %d has %d references, want %d", id, got, tc.want.idRefs)
			}
			_, revErr := mem.RevNat.Lookup(id)
			_, nameErr := mem.ServiceNames.Lookup(id)
			if (revErr == nil) != tc.want.revNat || (nameErr == nil) != tc.want.revNat {
				t.Errorf("rev_nat %d: %v, name: %v; want present: %t", id, revErr, nameErr, tc.want.revNat)
			}
			if tc.want.nothing && !wroteNothing(res) {
				t.Errorf("the last sync wrote %+v, want nothing", res)
			}
			if got := readMaps(t, mem.Tables()); len(got.dangling)+len(got.leftovers) > 0 {
				t.Errorf("maps afterwards:\n%s", strings.Join(append(got.dangling, got.leftovers...), "\n"))
			}
		})
	}
}

// The result says what changed per frontend and scope, and which backends
// left the backends map.
func TestSyncResult(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	abc := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4")
	change := func(scope lbmap.Scope, c Change) FrontendChange {
		return FrontendChange{Frontend: fe, Scope: scope, Change: c}
	}
	type step struct {
		state   *desired.State
		changes []FrontendChange
		removed []desired.Backend
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"added, changed, removed", []step{
			{state(svc("web", fe, abc, nil)), []FrontendChange{change(lbmap.ScopeDefault, Added)}, nil},
			{state(svc("web", fe, abc[:2], nil)), []FrontendChange{change(lbmap.ScopeDefault, Changed)}, abc[2:]},
			{state(svc("web", fe, abc[:2], nil)), nil, nil},
			{state(), []FrontendChange{change(lbmap.ScopeDefault, Removed)}, abc[:2]},
		}},
		{"an internal scope comes and goes", []step{
			{state(svc("web", fe, abc[:2], nil)), []FrontendChange{change(lbmap.ScopeDefault, Added)}, nil},
			{state(twoScopes(svc("web", fe, abc[:2], nil), abc[2:], nil)), []FrontendChange{change(lbmap.ScopeDefault, Changed), change(lbmap.ScopeInternal, Added)}, nil},
			{state(svc("web", fe, abc[:2], nil)), []FrontendChange{change(lbmap.ScopeDefault, Changed), change(lbmap.ScopeInternal, Removed)}, abc[2:]},
		}},
		{"only the internal set changes", []step{
			{state(twoScopes(svc("web", fe, abc[:2], nil), abc[2:], nil)), []FrontendChange{change(lbmap.ScopeDefault, Added), change(lbmap.ScopeInternal, Added)}, nil},
			{state(twoScopes(svc("web", fe, abc[:2], nil), abc[1:], nil)), []FrontendChange{change(lbmap.ScopeInternal, Changed)}, nil},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newMemorySyncer(t, nil)
			for i, st := range tc.steps {
				ids := map[desired.Backend]uint32{}
				for b, id := range s.mirror.backendIDs {
					ids[b] = id
				}
				res := mustSync(t, s, st.state)
				if !slices.Equal(res.Frontends, st.changes) {
					t.Errorf("step %d: changes %v, want %v", i+1, res.Frontends, st.changes)
				}
				var want []RemovedBackend
				for _, b := range st.removed {
					want = append(want, RemovedBackend{Backend: b, ID: ids[b]})
				}
				slices.SortFunc(want, func(a, b RemovedBackend) int { return int(a.ID) - int(b.ID) })
				if !slices.Equal(res.RemovedBackends, want) {
					t.Errorf("step %d: removed backends %v, want %v", i+1, res.RemovedBackends, want)
				}
			}
		})
	}
}

var errInjected = errors.New("injected failure")

// A failing write fails only its frontend: the error names the Service and
// the frontend, the frontend keeps what it had (nothing dangles), the others
// are programmed, and the next sync, with the failure gone, finishes it.
func TestFailingWriteFailsOnlyItsFrontend(t *testing.T) {
	web, other := tcp("10.96.0.10", 80), tcp("10.96.0.11", 80)
	abc := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4")
	otherSvc := func() *desired.FrontendEntry { return svc("other", other, abc[:1], nil) }
	failKey := func(mem *lbmap.MemoryTables, fe desired.Frontend, scope lbmap.Scope, slot uint16) {
		k := serviceKey(frontendScope{fe, scope}, slot)
		mem.Services.Fail = func(key lbmap.ServiceKey) error {
			if key == k {
				return errInjected
			}
			return nil
		}
	}
	cases := []struct {
		name    string
		before  *desired.State // synced without failures first
		inject  func(mem *lbmap.MemoryTables, s *Syncer)
		next    *desired.State
		wantErr string // in the error, besides the Service and frontend
		// webWant is what a socket connecting to web finds while the
		// failure lasts.
		webWant frontendView
	}{
		{
			name:    "a slot of a new frontend",
			before:  state(otherSvc()),
			inject:  func(mem *lbmap.MemoryTables, _ *Syncer) { failKey(mem, web, lbmap.ScopeDefault, 2) },
			next:    state(svc("web", web, abc, nil), otherSvc()),
			wantErr: "write backend slot",
		},
		{
			name:    "the internal master when a second scope comes",
			before:  state(svc("web", web, abc, nil), otherSvc()),
			inject:  func(mem *lbmap.MemoryTables, _ *Syncer) { failKey(mem, web, lbmap.ScopeInternal, 0) },
			next:    state(twoScopes(svc("web", web, abc, nil), abc[:1], nil), otherSvc()),
			wantErr: "write master entry of the internal scope",
			webWant: frontendView{name: "default/web", scopeView: scopeView{active: addrs(abc)}},
		},
		{
			name:    "the default master when the second scope goes",
			before:  state(twoScopes(svc("web", web, abc, nil), abc[:1], nil), otherSvc()),
			inject:  func(mem *lbmap.MemoryTables, _ *Syncer) { failKey(mem, web, lbmap.ScopeDefault, 0) },
			next:    state(svc("web", web, abc[1:], nil), otherSvc()),
			wantErr: "write master entry",
			// Slot 1 was rewritten in place before the master failed: the
			// old count now reaches 4, 3, 4. Never a hole, and the internal
			// scope stays while the master still names it.
			webWant: frontendView{name: "default/web", scopeView: scopeView{active: addrs([]desired.Backend{abc[1], abc[2], abc[2]})}, internal: &scopeView{active: addrs(abc[:1])}},
		},
		{
			name:   "a backend only the new frontend uses",
			before: state(otherSvc()),
			inject: func(mem *lbmap.MemoryTables, s *Syncer) {
				mem.Backends.Fail = func(id uint32) error {
					if id == s.backendIDs.next { // the next backend id handed out
						return errInjected
					}
					return nil
				}
			},
			next:    state(svc("web", web, abc, nil), otherSvc()),
			wantErr: "could not be written",
		},
		{
			name:   "the master of a removed frontend",
			before: state(twoScopes(svc("web", web, abc, nil), abc[:1], nil), otherSvc()),
			inject: func(mem *lbmap.MemoryTables, _ *Syncer) { failKey(mem, web, lbmap.ScopeDefault, 0) },
			next:   state(otherSvc()),
			// removed, yet the name is known from the maps
			wantErr: "remove default/web (10.96.0.10:80/TCP): delete master entry",
			webWant: frontendView{name: "default/web", scopeView: scopeView{active: addrs(abc)}, internal: &scopeView{active: addrs(abc[:1])}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, mem := newMemorySyncer(t, nil)
			mustSync(t, s, tc.before)
			tc.inject(mem, s)
			_, err := s.Sync(tc.next)
			if err == nil {
				t.Fatal("sync with a failing write succeeded")
			}
			for _, want := range []string{"default/web (10.96.0.10:80/TCP)", tc.wantErr, errInjected.Error()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "default/other") {
				t.Errorf("error names the frontend that did not fail: %v", err)
			}
			got := readMaps(t, mem.Tables())
			if len(got.dangling) > 0 {
				t.Errorf("with the failure:\n%s", strings.Join(got.dangling, "\n"))
			}
			if v, ok := got.frontends["10.96.0.11:80/TCP"]; !ok || !slices.Equal(v.active, addrs(abc[:1])) {
				t.Errorf("the other frontend is not programmed: %v", got.frontends)
			}
			if v := got.frontends["10.96.0.10:80/TCP"]; !v.equal(tc.webWant) {
				t.Errorf("the failed frontend holds %v while the failure lasts, want %v", v, tc.webWant)
			}
			mem.Services.Fail, mem.Backends.Fail = nil, nil
			mustSync(t, s, tc.next)
			if got := readMaps(t, mem.Tables()); len(got.dangling)+len(got.leftovers) > 0 {
				t.Errorf("after the retry:\n%s", strings.Join(append(got.dangling, got.leftovers...), "\n"))
			}
		})
	}
}

// A map filled behind the syncer's back fails the frontends that do not fit
// when the kernel says so (E2BIG), not while planning.
func TestMapFilledBehindTheSyncersBack(t *testing.T) {
	s, mem := newMemorySyncer(t, map[string]uint32{lbmap.ServicesMap: 6})
	abc := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4")
	mustSync(t, s, state(svc("a", tcp("10.96.0.10", 80), abc[:1], nil)))
	// Someone else's entries: the mirror does not know them.
	foreign := []lbmap.ServiceKey{
		serviceKey(frontendScope{tcp("10.96.9.9", 9), lbmap.ScopeDefault}, 5),
		serviceKey(frontendScope{tcp("10.96.9.9", 9), lbmap.ScopeDefault}, 6),
	}
	if failed := mem.Services.Update(foreign, make([]lbmap.ServiceValue, len(foreign))); len(failed) > 0 {
		t.Fatal(failed)
	}
	_, err := s.Sync(state(svc("a", tcp("10.96.0.10", 80), abc[:1], nil), svc("b", tcp("10.96.0.11", 80), abc, nil)))
	if err == nil || !strings.Contains(err.Error(), "default/b") || !strings.Contains(err.Error(), "argument list too long") {
		t.Fatalf("sync into a map full behind its back: %v; want an E2BIG error naming default/b", err)
	}
	got := readMaps(t, mem.Tables())
	if len(got.dangling) > 0 {
		t.Errorf("dangling:\n%s", strings.Join(got.dangling, "\n"))
	}
	if _, ok := got.frontends["10.96.0.11:80/TCP"]; ok {
		t.Errorf("the frontend that did not fit has a master: %v", got.frontends)
	}
	if _, ok := got.frontends["10.96.0.10:80/TCP"]; !ok {
		t.Errorf("the frontend that was there is gone: %v", got.frontends)
	}
}

// Restored entries socklb does not manage are strays: a full sync deletes
// them, a sync of changed frontends leaves them alone.
func TestStraysPrunedByFullSyncOnly(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	cases := []struct {
		name string
		keys []lbmap.ServiceKey
	}{
		{"an unknown scope", []lbmap.ServiceKey{lbmap.NewServiceKey(fe.Addr, fe.Port, uint8(fe.Proto), 7, 0), lbmap.NewServiceKey(fe.Addr, fe.Port, uint8(fe.Proto), 7, 1)}},
		{"slots whose master is gone", []lbmap.ServiceKey{serviceKey(frontendScope{fe, lbmap.ScopeInternal}, 1), serviceKey(frontendScope{fe, lbmap.ScopeDefault}, 3)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := lbmap.NewMemoryTables(nil)
			if failed := mem.Services.Update(tc.keys, make([]lbmap.ServiceValue, len(tc.keys))); len(failed) > 0 {
				t.Fatal(failed)
			}
			s, err := NewWithTables(mem.Tables(), zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.mirror.strays) != len(tc.keys) || len(s.mirror.frontends) != 0 {
				t.Fatalf("restored %d strays and %d frontend scopes, want %d and 0", len(s.mirror.strays), len(s.mirror.frontends), len(tc.keys))
			}
			st := state(svc("web", tcp("10.96.0.11", 80), nil, nil))
			if _, err := s.SyncFrontends(st, []desired.Frontend{tcp("10.96.0.11", 80)}); err != nil {
				t.Fatal(err)
			}
			if mem.Services.Len() != len(tc.keys)+1 {
				t.Errorf("a sync of changed frontends touched strays: %d entries, want %d", mem.Services.Len(), len(tc.keys)+1)
			}
			mustSync(t, s, st)
			if mem.Services.Len() != 1 || len(s.mirror.strays) != 0 {
				t.Errorf("after a full sync: %d entries and %d strays, want 1 and 0", mem.Services.Len(), len(s.mirror.strays))
			}
		})
	}
}
