package syncer

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// sessionAffinity and internalTrafficPolicy reach the master entries: the
// affinity flag and timeout on every scope (a client keeps its backend
// whichever scope it reads), IntLocal on the ClusterIP's.
func TestMasterSemantics(t *testing.T) {
	fe := tcp("10.96.0.10", 80)
	testCases := []struct {
		name        string
		entry       desired.FrontendEntry
		scope       lbmap.Scope
		wantFlags   lbmap.ServiceFlags
		wantTimeout uint32
	}{
		{"no affinity", desired.FrontendEntry{Kind: desired.ClusterIP}, lbmap.ScopeDefault, lbmap.FlagClusterIP, 0},
		{"affinity", desired.FrontendEntry{Kind: desired.ClusterIP, AffinityTimeout: 60}, lbmap.ScopeDefault,
			lbmap.FlagClusterIP | lbmap.FlagAffinity, 60},
		{"iTP=Local", desired.FrontendEntry{Kind: desired.ClusterIP, InternalLocal: true}, lbmap.ScopeDefault,
			lbmap.FlagClusterIP | lbmap.FlagIntLocal, 0},
		{"affinity on the internal scope of an eTP=Local NodePort",
			desired.FrontendEntry{Kind: desired.NodePort, ExternalLocal: true, Internal: &desired.BackendSet{}, AffinityTimeout: 10800},
			lbmap.ScopeInternal, lbmap.FlagNodePort | lbmap.FlagAffinity, 10800},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.entry.Frontend = fe
			v := masterValue(&tc.entry, tc.scope, 1, 0, 0)
			if v.Flags != tc.wantFlags || v.AffinityTimeout != tc.wantTimeout {
				t.Errorf("master flags %s timeout %d, want %s timeout %d", v.Flags, v.AffinityTimeout, tc.wantFlags, tc.wantTimeout)
			}
		})
	}
}

// The refuse trie follows the state: the Service CIDRs as "unallocated",
// each ClusterIP (not a NodePort or external address) as "no port"; a
// removed Service's address goes, a restart writes nothing.
func TestRefuseTrie(t *testing.T) {
	cidr := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	web := svc("web", tcp("10.96.0.10", 80), backends(desired.TCP, 8080, "10.244.0.2"), nil)
	webUDP := svc("web", desired.Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Port: 53, Proto: desired.UDP}, nil, nil)
	db := svc("db", tcp("fd00:10:96::20", 5432), nil, nil)
	np := svc("web", tcp("192.0.2.1", 30080), nil, nil)
	np.Kind = desired.NodePort
	withCIDRs := func(st *desired.State, cidrs ...netip.Prefix) *desired.State {
		st.ServiceCIDRs = cidrs
		return st
	}
	steps := []struct {
		desc    string
		state   *desired.State
		restart bool
		want    []string
	}{
		{"no CIDRs: every ClusterIP once, however many ports", state(web, webUDP, np, db),
			false, []string{"10.96.0.10/32=no_port", "fd00:10:96::20/128=no_port"}},
		{"CIDRs arrive", withCIDRs(state(web, webUDP, np, db), cidr("10.96.0.0/12"), cidr("fd00:10:96::/108")), false,
			[]string{"10.96.0.0/12=unallocated", "10.96.0.10/32=no_port", "fd00:10:96::/108=unallocated", "fd00:10:96::20/128=no_port"}},
		{"db goes", withCIDRs(state(web, np), cidr("10.96.0.0/12")), false,
			[]string{"10.96.0.0/12=unallocated", "10.96.0.10/32=no_port"}},
		{"after a restart", withCIDRs(state(web, np), cidr("10.96.0.0/12")), true,
			[]string{"10.96.0.0/12=unallocated", "10.96.0.10/32=no_port"}},
		{"everything goes", state(), false, nil},
	}
	for _, kind := range mapKinds {
		t.Run(kind.name, func(t *testing.T) {
			tables, _ := kind.open(t, nil)
			s, err := NewWithTables(tables, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range steps {
				if st.restart {
					if s, err = NewWithTables(tables, zaptest.NewLogger(t)); err != nil {
						t.Fatal(err)
					}
				}
				res, err := s.Sync(st.state)
				if err != nil {
					t.Fatalf("%s: sync: %v", st.desc, err)
				}
				if st.restart && !wroteNothing(res) {
					t.Errorf("%s: wrote %+v, want nothing", st.desc, res)
				}
				keys, values, err := tables.Refuse.Dump()
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for i, k := range keys {
					got = append(got, k.Prefix().String()+"="+values[i].String())
				}
				slices.Sort(got)
				if !slices.Equal(got, st.want) {
					t.Errorf("%s: the trie holds\n  %s\nwant\n  %s", st.desc, strings.Join(got, "\n  "), strings.Join(st.want, "\n  "))
				}
				if held := s.mirror.refuseHeld(); len(held) != len(keys) {
					t.Errorf("%s: the mirror holds %d entries, the map %d: %v", st.desc, len(held), len(keys), slices.Collect(maps.Keys(held)))
				}
			}
		})
	}
}
