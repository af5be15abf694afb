package syncer

import (
	"net/netip"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// Each kind and policy sets its master flags; ExtLocal and SourceRanges go
// on the default scope only, the one outside clients (XDP) read.
func TestMasterFlags(t *testing.T) {
	fe := tcp("192.0.2.10", 30080)
	testCases := []struct {
		name                  string
		entry                 desired.FrontendEntry
		wantDefault, wantIntl lbmap.ServiceFlags
	}{
		{"ClusterIP", desired.FrontendEntry{Kind: desired.ClusterIP}, lbmap.FlagClusterIP, 0},
		{"NodePort", desired.FrontendEntry{Kind: desired.NodePort}, lbmap.FlagNodePort, 0},
		{"LoadBalancer", desired.FrontendEntry{Kind: desired.LoadBalancer}, lbmap.FlagLoadBalancer, 0},
		{"ExternalIP", desired.FrontendEntry{Kind: desired.ExternalIP}, lbmap.FlagExternalIP, 0},
		{"LoadBalancer with source ranges", desired.FrontendEntry{Kind: desired.LoadBalancer, SourceRanges: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			lbmap.FlagLoadBalancer | lbmap.FlagSourceRanges, 0},
		{"eTP=Local, one scope", desired.FrontendEntry{Kind: desired.NodePort, ExternalLocal: true}, lbmap.FlagNodePort | lbmap.FlagExtLocal, 0},
		{"eTP=Local, two scopes", desired.FrontendEntry{Kind: desired.NodePort, ExternalLocal: true, Internal: &desired.BackendSet{}},
			lbmap.FlagNodePort | lbmap.FlagExtLocal | lbmap.FlagTwoScopes, lbmap.FlagNodePort},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.entry.Frontend = fe
			if got := masterValue(&tc.entry, lbmap.ScopeDefault, 1, 0, 0).Flags; got != tc.wantDefault {
				t.Errorf("default scope flags %s, want %s", got, tc.wantDefault)
			}
			if tc.entry.Internal == nil {
				return
			}
			if got := masterValue(&tc.entry, lbmap.ScopeInternal, 1, 0, 0).Flags; got != tc.wantIntl {
				t.Errorf("internal scope flags %s, want %s", got, tc.wantIntl)
			}
		})
	}
}

// A backend's locality is its LB_BACKEND_F_LOCAL flag, and reads back.
func TestBackendLocalFlag(t *testing.T) {
	for _, local := range []bool{false, true} {
		b := desired.Backend{Addr: netip.MustParseAddr("10.244.1.2"), Port: 8080, Proto: desired.TCP, Local: local}
		v := backendValue(b, lbmap.BackendActive)
		if got := v.Flags&lbmap.BackendLocal != 0; got != local {
			t.Errorf("local=%t: flags %#x", local, v.Flags)
		}
		if back := backendOfValue(v); back != b {
			t.Errorf("local=%t: reads back as %+v", local, back)
		}
	}
}

// The node config is written when the state's SNAT configuration differs
// from what the map holds, and only then; a restarted syncer finds it.
func TestNodeConfigWrittenOnlyOnChange(t *testing.T) {
	snatA := desired.SNATConfig{Addr4: netip.MustParseAddr("192.0.2.10"), Addr6: netip.MustParseAddr("2001:db8::10"), PortMin: 61000, PortMax: 65535}
	snatB := snatA
	snatB.Addr4 = netip.MustParseAddr("192.0.2.11")
	withSNAT := func(c desired.SNATConfig) *desired.State {
		st := state(svc("web", tcp("10.96.0.10", 80), backends(desired.TCP, 8080, "10.244.0.2"), nil))
		st.SNAT = c
		return st
	}
	steps := []struct {
		desc      string
		snat      desired.SNATConfig
		restart   bool
		wantWrite bool
	}{
		{"no SNAT source yet: the array already holds zero", desired.SNATConfig{}, false, false},
		{"the node's addresses arrive", snatA, false, true},
		{"the same again", snatA, false, false},
		{"after a restart", snatA, true, false},
		{"the InternalIP changes", snatB, false, true},
	}
	for _, kind := range mapKinds {
		for _, mode := range syncModes {
			t.Run(kind.name+"/"+mode.name, func(t *testing.T) {
				tables, _ := kind.open(t, nil)
				s, err := NewWithTables(tables, zaptest.NewLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				prev := state()
				for _, st := range steps {
					if st.restart {
						if s, err = NewWithTables(tables, zaptest.NewLogger(t)); err != nil {
							t.Fatal(err)
						}
					}
					next := withSNAT(st.snat)
					p := s.plan(next, mode.changed(prev, next))
					wrote := len(p.ops) > 0 && p.ops[0].action == writeNodeConfig
					if wrote != st.wantWrite {
						t.Fatalf("%s: plan writes the node config: %t, want %t", st.desc, wrote, st.wantWrite)
					}
					if _, err := syncWith(s, next, mode.changed(prev, next)); err != nil {
						t.Fatalf("%s: %v", st.desc, err)
					}
					prev = next
					got, err := tables.NodeConfig.Lookup(0)
					if err != nil {
						t.Fatal(err)
					}
					if want := lbmap.NewNodeConfig(st.snat.Addr4, st.snat.Addr6, st.snat.PortMin, st.snat.PortMax); got != want {
						t.Fatalf("%s: node config %+v, want %+v", st.desc, got, want)
					}
				}
			})
		}
	}
}

// A restarted agent finds the source ranges, local backends and node config
// it wrote and rewrites nothing; a full sync prunes ranges no frontend holds.
func TestNorthSouthRestore(t *testing.T) {
	lb := tcp("198.18.0.1", 80)
	local := backends(desired.TCP, 8080, "10.244.1.2")
	local[0].Local = true
	entry := svc("lb", lb, local, nil)
	entry.Kind = desired.LoadBalancer
	entry.ExternalLocal = true
	entry.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	want := state(entry)
	want.SNAT = desired.SNATConfig{Addr4: netip.MustParseAddr("192.0.2.10"), PortMin: 61000, PortMax: 65535}
	for _, kind := range mapKinds {
		t.Run(kind.name, func(t *testing.T) {
			tables, _ := kind.open(t, nil)
			first, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := first.Sync(want); err != nil {
				t.Fatal(err)
			}
			// A range of an id nothing holds, as a crash between writes
			// could leave.
			stray := lbmap.NewSourceRangeKey(999, netip.MustParsePrefix("10.0.0.0/8"))
			if errs := tables.SourceRanges.Update([]lbmap.SourceRangeKey{stray}, []uint8{1}); len(errs) > 0 {
				t.Fatal(errs)
			}
			second, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if res, err := second.SyncFrontends(want, []desired.Frontend{lb}); err != nil || !wroteNothing(res) {
				t.Errorf("first sync of the frontend after restart: %+v, %v; want no writes", res, err)
			}
			if res, err := second.Sync(want); err != nil || res.Upserts != 0 || res.Deletes != 1 {
				t.Errorf("full sync after restart: %+v, %v; want the stray range deleted and nothing else", res, err)
			}
			got := readMaps(t, tables)
			if len(got.dangling)+len(got.leftovers) > 0 {
				t.Errorf("after the syncs:\n%v\n%v", got.dangling, got.leftovers)
			}
			v := got.frontends[lb.String()]
			if v.flags != lbmap.FlagLoadBalancer|lbmap.FlagExtLocal|lbmap.FlagSourceRanges || len(v.ranges) != 2 || len(v.active) != 1 || v.active[0] != "10.244.1.2:8080(local)" {
				t.Errorf("the maps hold %v", v)
			}
		})
	}
}
