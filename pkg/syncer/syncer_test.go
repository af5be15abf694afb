package syncer

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

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

// twoScopes gives e an internal scope: the backends node-local clients use.
func twoScopes(e *desired.FrontendEntry, active, terminating []desired.Backend) *desired.FrontendEntry {
	e.Internal = &desired.BackendSet{Active: active, Terminating: terminating}
	return e
}

// viewAddrs renders backends as readMaps does, "(local)" marking those on
// this node.
func viewAddrs(bs []desired.Backend) []string {
	var out []string
	for _, b := range bs {
		s := netip.AddrPortFrom(b.Addr, b.Port).String()
		if b.Local {
			s += "(local)"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func addrs(bs []desired.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, netip.AddrPortFrom(b.Addr, b.Port).String())
	}
	slices.Sort(out)
	return out
}

// changedFrontends is what desired.Builder reports between two states.
func changedFrontends(prev, next *desired.State) []desired.Frontend {
	out := []desired.Frontend{}
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

// syncMode is how a test step reaches the syncer: changed nil is a full Sync.
type syncMode struct {
	name    string
	changed func(prev, next *desired.State) []desired.Frontend
}

var syncModes = []syncMode{
	{"full", func(_, _ *desired.State) []desired.Frontend { return nil }},
	{"changed frontends only", changedFrontends},
}

func syncWith(s *Syncer, next *desired.State, changed []desired.Frontend) (Result, error) {
	if changed == nil {
		return s.Sync(next)
	}
	return s.SyncFrontends(next, changed)
}

func wroteNothing(r Result) bool {
	return r.Upserts == 0 && r.Deletes == 0 && len(r.Frontends) == 0 && len(r.RemovedBackends) == 0
}

type sequenceStep struct {
	desc  string
	state *desired.State
	want  map[string]frontendView
}

func sequenceCases() []struct {
	name  string
	steps []sequenceStep
} {
	fe := tcp("10.96.0.10", 80)
	fe6 := desired.Frontend{Addr: netip.MustParseAddr("fd00::10"), Port: 80, Proto: desired.TCP}
	abc := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4")
	web := func(active []desired.Backend) frontendView {
		return frontendView{name: "default/web", scopeView: scopeView{active: addrs(active)}}
	}
	withInternal := func(v frontendView, active, terminating []desired.Backend) frontendView {
		v.internal = &scopeView{active: addrs(active), terminating: addrs(terminating)}
		return v
	}
	nodePort := tcp("192.0.2.10", 30080)
	lbIP := tcp("198.18.0.1", 80)
	extIP := tcp("203.0.113.7", 80)
	localB := backends(desired.TCP, 8080, "10.244.1.2")
	localB[0].Local = true
	remoteB := backends(desired.TCP, 8080, "10.244.2.2")
	both := []desired.Backend{localB[0], remoteB[0]}
	kind := func(e *desired.FrontendEntry, k desired.FrontendKind) *desired.FrontendEntry { e.Kind = k; return e }
	ranged := func(e *desired.FrontendEntry, ps ...string) *desired.FrontendEntry {
		for _, p := range ps {
			e.SourceRanges = append(e.SourceRanges, netip.MustParsePrefix(p))
		}
		return e
	}
	extLocal := func(e *desired.FrontendEntry) *desired.FrontendEntry { e.ExternalLocal = true; return e }
	view := func(name string, active []desired.Backend, flags lbmap.ServiceFlags, ranges ...string) frontendView {
		return frontendView{name: "default/" + name, scopeView: scopeView{active: viewAddrs(active)}, flags: flags, ranges: ranges}
	}
	northSouth := func(lbRanges []string, lbBackends []desired.Backend) *desired.State {
		return state(
			kind(svc("np", nodePort, both, nil), desired.NodePort),
			ranged(kind(svc("lb", lbIP, lbBackends, nil), desired.LoadBalancer), lbRanges...),
			extLocal(twoScopes(kind(svc("ext", extIP, localB, nil), desired.ExternalIP), both, nil)),
		)
	}
	northSouthWant := func(lbRanges []string, lbBackends []desired.Backend) map[string]frontendView {
		lbFlags := lbmap.FlagLoadBalancer
		if len(lbRanges) > 0 {
			lbFlags |= lbmap.FlagSourceRanges
		}
		ext := view("ext", localB, lbmap.FlagExternalIP|lbmap.FlagExtLocal)
		ext.internal = &scopeView{active: viewAddrs(both)}
		return map[string]frontendView{
			"192.0.2.10:30080/TCP": view("np", both, lbmap.FlagNodePort),
			"198.18.0.1:80/TCP":    view("lb", lbBackends, lbFlags, lbRanges...),
			"203.0.113.7:80/TCP":   ext,
		}
	}
	return []struct {
		name  string
		steps []sequenceStep
	}{
		{"north-south kinds, locality and source ranges", []sequenceStep{
			{"NodePort, LoadBalancer with a range, eTP=Local ExternalIP", northSouth([]string{"192.0.2.0/24"}, localB), northSouthWant([]string{"192.0.2.0/24"}, localB)},
			{"the range is replaced", northSouth([]string{"198.51.100.0/24", "2001:db8::/32"}, localB), northSouthWant([]string{"198.51.100.0/24", "2001:db8::/32"}, localB)},
			{"the ranges go: every client", northSouth(nil, localB), northSouthWant(nil, localB)},
			{"ranges again", northSouth([]string{"192.0.2.0/24"}, localB), northSouthWant([]string{"192.0.2.0/24"}, localB)},
			{"the local backend moves off the node", northSouth([]string{"192.0.2.0/24"}, backends(desired.TCP, 8080, "10.244.1.2")), northSouthWant([]string{"192.0.2.0/24"}, backends(desired.TCP, 8080, "10.244.1.2"))},
			{"everything deleted", state(), map[string]frontendView{}},
		}},
		{"add, shrink, grow, delete", []sequenceStep{
			{"three backends", state(svc("web", fe, abc, nil)), map[string]frontendView{"10.96.0.10:80/TCP": web(abc)}},
			{"one removed", state(svc("web", fe, abc[1:], nil)), map[string]frontendView{"10.96.0.10:80/TCP": web(abc[1:])}},
			{"back to three", state(svc("web", fe, abc, nil)), map[string]frontendView{"10.96.0.10:80/TCP": web(abc)}},
			{"service deleted", state(), map[string]frontendView{}},
		}},
		{"terminating tail and no endpoints", []sequenceStep{
			{"one ready, two terminating", state(svc("web", fe, abc[:1], abc[1:])), map[string]frontendView{
				"10.96.0.10:80/TCP": {name: "default/web", scopeView: scopeView{active: addrs(abc[:1]), terminating: addrs(abc[1:])}},
			}},
			{"ready one becomes terminating", state(svc("web", fe, nil, abc)), map[string]frontendView{
				"10.96.0.10:80/TCP": {name: "default/web", scopeView: scopeView{terminating: addrs(abc)}},
			}},
			{"no endpoints: frontend kept to refuse connects", state(svc("web", fe, nil, nil)), map[string]frontendView{
				"10.96.0.10:80/TCP": {name: "default/web"},
			}},
		}},
		{"shared backend across frontends and families", []sequenceStep{
			{"two frontends share backends", state(
				svc("a", fe, abc[:2], nil),
				svc("b", tcp("10.96.0.11", 80), abc[1:], nil),
				svc("a6", fe6, backends(desired.TCP, 8080, "fd00:10:244::2"), nil),
			), map[string]frontendView{
				"10.96.0.10:80/TCP": {name: "default/a", scopeView: scopeView{active: addrs(abc[:2])}},
				"10.96.0.11:80/TCP": {name: "default/b", scopeView: scopeView{active: addrs(abc[1:])}},
				"[fd00::10]:80/TCP": {name: "default/a6", scopeView: scopeView{active: []string{"[fd00:10:244::2]:8080"}}},
			}},
			{"one frontend goes, the shared backend stays", state(svc("b", tcp("10.96.0.11", 80), abc[1:], nil)), map[string]frontendView{
				"10.96.0.11:80/TCP": {name: "default/b", scopeView: scopeView{active: addrs(abc[1:])}},
			}},
		}},
		{"one scope to two and back", []sequenceStep{
			{"one scope", state(svc("web", fe, abc, nil)), map[string]frontendView{"10.96.0.10:80/TCP": web(abc)}},
			{"node-local clients get their own set", state(twoScopes(svc("web", fe, abc, nil), abc[:1], nil)), map[string]frontendView{
				"10.96.0.10:80/TCP": withInternal(web(abc), abc[:1], nil),
			}},
			{"the internal set changes, a backend only it uses", state(twoScopes(svc("web", fe, abc[:2], nil), abc[2:], abc[:1])), map[string]frontendView{
				"10.96.0.10:80/TCP": withInternal(web(abc[:2]), abc[2:], abc[:1]),
			}},
			{"back to one scope", state(svc("web", fe, abc[:2], nil)), map[string]frontendView{"10.96.0.10:80/TCP": web(abc[:2])}},
			{"two scopes again, the internal one empty", state(twoScopes(svc("web", fe, abc, nil), nil, nil)), map[string]frontendView{
				"10.96.0.10:80/TCP": withInternal(web(abc), nil, nil),
			}},
			{"service deleted with both scopes", state(), map[string]frontendView{}},
		}},
		{"a new frontend with two scopes at once", []sequenceStep{
			{"added with two scopes", state(twoScopes(svc("web", fe, abc[:1], nil), abc[1:], nil), svc("other", tcp("10.96.0.11", 80), abc[:1], nil)), map[string]frontendView{
				"10.96.0.10:80/TCP": withInternal(web(abc[:1]), abc[1:], nil),
				"10.96.0.11:80/TCP": {name: "default/other", scopeView: scopeView{active: addrs(abc[:1])}},
			}},
			{"the other frontend goes", state(twoScopes(svc("web", fe, abc[:1], nil), abc[1:], nil)), map[string]frontendView{
				"10.96.0.10:80/TCP": withInternal(web(abc[:1]), abc[1:], nil),
			}},
		}},
	}
}

// Every step of every sequence, on memory and kernel maps, in both modes:
// the maps then hold what the step wants and nothing else, and the same state
// again writes nothing. On memory maps every prefix of every plan is checked
// too (checkEveryPrefix).
func TestSyncSequences(t *testing.T) {
	for _, kind := range mapKinds {
		for _, mode := range syncModes {
			for _, tc := range sequenceCases() {
				t.Run(kind.name+"/"+mode.name+"/"+tc.name, func(t *testing.T) {
					tables, mem := kind.open(t, nil)
					s, err := NewWithTables(tables, zaptest.NewLogger(t))
					if err != nil {
						t.Fatal(err)
					}
					prev := state()
					for _, st := range tc.steps {
						changed := mode.changed(prev, st.state)
						if mem != nil {
							checkEveryPrefix(t, st.desc, s, mem, st.state, changed)
						}
						if _, err := syncWith(s, st.state, changed); err != nil {
							t.Fatalf("%s: sync: %v", st.desc, err)
						}
						prev = st.state
						got := readMaps(t, tables)
						if !equalViews(got.frontends, st.want) {
							t.Fatalf("%s: maps hold\n%v\nwant\n%v", st.desc, got.frontends, st.want)
						}
						if len(got.dangling)+len(got.leftovers) > 0 {
							t.Fatalf("%s: after the sync:\n%s", st.desc, strings.Join(append(got.dangling, got.leftovers...), "\n"))
						}
						if res, err := s.Sync(st.state); err != nil || !wroteNothing(res) {
							t.Fatalf("%s: second sync of the same state: %+v, %v; want no writes", st.desc, res, err)
						}
					}
				})
			}
		}
	}
}

// checkEveryPrefix plans state, checks that planning changes nothing and
// gives the same plan twice, then applies every prefix of the plan to a copy
// of the maps: after each op, nothing a connecting socket can reach may
// dangle. This is the promise of doc.go, checked between any two writes.
func checkEveryPrefix(t *testing.T, desc string, s *Syncer, mem *lbmap.MemoryTables, st *desired.State, changed []desired.Frontend) {
	t.Helper()
	serviceIDs, backendIDs, entries := s.serviceIDs, s.backendIDs, s.mirror.serviceEntries
	p := s.plan(st, changed)
	if again := s.plan(st, changed); !reflect.DeepEqual(p, again) {
		t.Fatalf("%s: planning twice gives two plans: the planner is not pure", desc)
	}
	if s.serviceIDs != serviceIDs || s.backendIDs != backendIDs || s.mirror.serviceEntries != entries {
		t.Fatalf("%s: planning changed the syncer's allocators or mirror", desc)
	}
	before := readMaps(t, mem.Tables())
	if len(before.dangling) > 0 {
		t.Fatalf("%s: dangling before the sync:\n%s", desc, strings.Join(before.dangling, "\n"))
	}
	for n := 1; n <= len(p.ops); n++ {
		c := mem.Clone()
		mr, err := loadMirror(c.Tables())
		if err != nil {
			t.Fatal(err)
		}
		a := newApplier(c.Tables(), mr, p.label)
		a.run(p.ops[:n])
		if len(a.errs) > 0 {
			t.Fatalf("%s: applying %d ops: %v", desc, n, a.errs)
		}
		got := readMaps(t, c.Tables())
		if len(got.dangling) > 0 {
			t.Fatalf("%s: after op %d of %d (%s): a connecting socket finds\n%s\nplan:\n%s",
				desc, n, len(p.ops), describeOp(p.ops[n-1]), strings.Join(got.dangling, "\n"), describePlan(p))
		}
		if dropped := droppedClients(before.allowed, finalAllowed(st), got.allowed); len(dropped) > 0 {
			t.Fatalf("%s: after op %d of %d (%s): clients allowed before and after the sync are dropped:\n%s\nplan:\n%s",
				desc, n, len(p.ops), describeOp(p.ops[n-1]), strings.Join(dropped, "\n"), describePlan(p))
		}
	}
}

// finalAllowed is what the source ranges of state let in, as
// mapsView.allowed reads the maps.
func finalAllowed(state *desired.State) map[string]map[netip.Prefix]bool {
	out := map[string]map[netip.Prefix]bool{}
	for fe, svc := range state.Frontends {
		if len(svc.SourceRanges) > 0 {
			out[fe.String()] = map[netip.Prefix]bool{}
			for _, p := range svc.SourceRanges {
				out[fe.String()][p] = true
			}
		}
	}
	return out
}

// droppedClients lists the ranges a frontend lets in both before and after
// a sync (no entry: every client) that it does not let in now.
func droppedClients(before, after, now map[string]map[netip.Prefix]bool) []string {
	var out []string
	for label, cur := range now {
		b, bok := before[label]
		a, aok := after[label]
		var need []netip.Prefix
		switch {
		case !bok && !aok:
			out = append(out, label+": lets in only "+fmt.Sprint(slices.Collect(maps.Keys(cur)))+" though no range limits it before or after")
		case !bok:
			need = slices.Collect(maps.Keys(a))
		case !aok:
			need = slices.Collect(maps.Keys(b))
		default:
			for p := range b {
				if a[p] {
					need = append(need, p)
				}
			}
		}
		for _, p := range need {
			if !cur[p] {
				out = append(out, fmt.Sprintf("%s: clients from %s", label, p))
			}
		}
	}
	slices.Sort(out)
	return out
}

func describeOp(o op) string {
	switch o.action {
	case writeBackend, deleteBackend:
		return fmt.Sprintf("%s %d", doing[o.action], o.id)
	case writeRevNat, writeName, deleteRevNat, deleteName:
		return fmt.Sprintf("%s %d", doing[o.action], o.id)
	case forgetScope:
		return fmt.Sprintf("%s %s", doing[o.action], o.fs)
	case writeSourceRange, deleteSourceRange, deleteStraySourceRange:
		return fmt.Sprintf("%s %s of service id %d", doing[o.action], o.rangeKey.Prefix(), o.rangeKey.ServiceID())
	case writeNodeConfig:
		return doing[o.action]
	}
	return fmt.Sprintf("%s %s = %s", doing[o.action], o.key, o.value)
}

func describePlan(p *plan) string {
	var lines []string
	for i, o := range p.ops {
		lines = append(lines, fmt.Sprintf("%3d %s", i+1, describeOp(o)))
	}
	return strings.Join(lines, "\n")
}

func scopeEntry(s *Syncer, fe desired.Frontend, scope lbmap.Scope) *scopeEntries {
	return s.mirror.frontends[frontendScope{fe, scope}]
}

// A restarted agent finds its ids in the maps and rewrites nothing.
func TestRestoreKeepsIDsAndWritesNothing(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	cases := []struct {
		name string
		svc  *desired.FrontendEntry
	}{
		{"one scope", svc("web", fe, backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3"), nil)},
		{"two scopes under one id", twoScopes(svc("web", fe, backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3"), nil), backends(desired.TCP, 8080, "10.244.0.4"), nil)},
	}
	for _, kind := range mapKinds {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				tables, _ := kind.open(t, nil)
				want := state(tc.svc)
				first, err := NewWithTables(tables, zaptest.NewLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := first.Sync(want); err != nil {
					t.Fatal(err)
				}
				id := scopeEntry(first, fe, lbmap.ScopeDefault).master.ServiceId

				second, err := NewWithTables(tables, zaptest.NewLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				for _, scope := range scopes {
					e := scopeEntry(second, fe, scope)
					if scope == lbmap.ScopeInternal && tc.svc.Internal == nil {
						if e != nil {
							t.Errorf("restored an internal scope that was never written")
						}
						continue
					}
					if e == nil || e.master.ServiceId != id {
						t.Errorf("scope %d after restart: %+v, want service id %d", scope, e, id)
					}
				}
				if res, err := second.Sync(want); err != nil || !wroteNothing(res) {
					t.Errorf("first sync after restart: %+v, %v; want no writes", res, err)
				}
				// A new frontend gets a fresh id, not a restored one.
				other := tcp("10.96.0.11", 80)
				want.Frontends[other] = svc("other", other, nil, nil)
				want.Frontends[other].Kind = desired.ClusterIP
				if _, err := second.Sync(want); err != nil {
					t.Fatal(err)
				}
				if got := scopeEntry(second, other, lbmap.ScopeDefault).master.ServiceId; got == id {
					t.Errorf("new frontend reused service id %d", got)
				}
			})
		}
	}
}

// Removing one backend rewrites one slot, and the others keep theirs.
func TestRemovalKeepsOtherSlots(t *testing.T) {
	for _, kind := range mapKinds {
		t.Run(kind.name, func(t *testing.T) {
			tables, _ := kind.open(t, nil)
			fe := tcp("10.96.0.10", 80)
			abcd := backends(desired.TCP, 8080, "10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5")
			s, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sync(state(svc("web", fe, abcd, nil))); err != nil {
				t.Fatal(err)
			}
			before := map[uint16]uint32{}
			for slot, id := range scopeEntry(s, fe, lbmap.ScopeDefault).slots.all() {
				before[slot] = id
			}
			res, err := s.Sync(state(svc("web", fe, slices.Delete(slices.Clone(abcd), 1, 2), nil)))
			if err != nil {
				t.Fatal(err)
			}
			moved := 0
			for slot, id := range scopeEntry(s, fe, lbmap.ScopeDefault).slots.all() {
				if before[slot] != id {
					moved++
				}
			}
			if moved != 1 {
				t.Errorf("%d slots changed backend, want 1 (the removed backend's slot takes the last one)", moved)
			}
			// slot rewrite + master + last slot delete + backend delete
			if res.Upserts != 2 || res.Deletes != 2 {
				t.Errorf("writes = %d upserts, %d deletes, want 2 and 2", res.Upserts, res.Deletes)
			}
		})
	}
}

// A full map fails only the Services that do not fit; the others work.
func TestFullMapFailsOnlyWhatDoesNotFit(t *testing.T) {
	for _, kind := range mapKinds {
		t.Run(kind.name, func(t *testing.T) {
			tables, _ := kind.open(t, map[string]uint32{lbmap.ServicesMap: 4})
			s, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			small := svc("small", tcp("10.96.0.10", 80), backends(desired.TCP, 8080, "10.244.0.2"), nil)
			big := svc("big", tcp("10.96.0.20", 80), backends(desired.TCP, 8080, "10.244.0.3", "10.244.0.4", "10.244.0.5"), nil)
			res, err := s.Sync(state(small, big))
			if err == nil {
				t.Fatal("sync into a too small map succeeded")
			}
			if want := map[string]int{LeftOutServicesMapFull: 1}; !maps.Equal(res.LeftOut, want) {
				t.Errorf("the sync counts %v left out, want %v", res.LeftOut, want)
			}
			if !strings.Contains(err.Error(), "default/big") {
				t.Errorf("error does not name the Service that did not fit: %v", err)
			}
			if strings.Contains(err.Error(), "default/small") {
				t.Errorf("error names a Service that fit: %v", err)
			}
			got := readMaps(t, tables)
			if v, ok := got.frontends["10.96.0.10:80/TCP"]; !ok || len(v.active) != 1 {
				t.Errorf("the Service that fits is not programmed: %v", got.frontends)
			}
			if _, ok := got.frontends["10.96.0.20:80/TCP"]; ok {
				t.Errorf("the Service that does not fit has a master entry: %v", got.frontends)
			}
			if len(got.dangling)+len(got.leftovers) > 0 {
				t.Errorf("after a sync into a full map:\n%s", strings.Join(append(got.dangling, got.leftovers...), "\n"))
			}
		})
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
	for _, kind := range mapKinds {
		t.Run(kind.name, func(t *testing.T) {
			tables, _ := kind.open(t, nil)
			s, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			fe := tcp("10.96.0.10", 80)
			st := state(svc("web", fe, backends(desired.TCP, 8080, "10.244.0.2"), nil))
			if _, err := s.SyncFrontends(st, []desired.Frontend{fe, fe}); err != nil {
				t.Fatal(err)
			}
			if got := readMaps(t, tables); len(got.dangling)+len(got.leftovers) > 0 {
				t.Errorf("after the sync:\n%s", strings.Join(append(got.dangling, got.leftovers...), "\n"))
			}
			keys, _, err := tables.RevNat.Dump()
			if err != nil || len(keys) != 1 {
				t.Errorf("rev_nat holds %d entries (%v), want 1", len(keys), err)
			}
			if res, err := s.Sync(st); err != nil || !wroteNothing(res) {
				t.Errorf("a full sync afterwards wrote %+v, %v; want nothing", res, err)
			}
		})
	}
}
