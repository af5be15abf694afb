package sockdestroy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/syncer"
)

var (
	dnsVIP  = netip.MustParseAddrPort("10.96.0.10:53")
	dnsFe   = desired.Frontend{Addr: dnsVIP.Addr(), Port: 53, Proto: desired.UDP}
	webFe   = desired.Frontend{Addr: netip.MustParseAddr("10.96.0.20"), Port: 80, Proto: desired.TCP}
	podA    = netip.MustParseAddrPort("10.244.0.2:5353")
	podB    = netip.MustParseAddrPort("10.244.0.3:5353")
	podC    = netip.MustParseAddrPort("10.244.0.4:5353")
	udpP    = uint8(desired.UDP)
	dnsID   = uint32(7)
	otherID = uint32(8)
)

func backend(ap netip.AddrPort) desired.Backend {
	return desired.Backend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.UDP}
}

func stateWith(e *desired.FrontendEntry) *desired.State {
	s := &desired.State{Frontends: map[desired.Frontend]*desired.FrontendEntry{}}
	if e != nil {
		s.Frontends[e.Frontend] = e
	}
	return s
}

func TestStaleSockets(t *testing.T) {
	frontends := map[uint32]lbmap.RevNat{dnsID: lbmap.NewRevNat(dnsVIP.Addr(), 53, udpP)}
	entry := func(active, terminating []netip.AddrPort, internal []netip.AddrPort) *desired.FrontendEntry {
		e := &desired.FrontendEntry{Frontend: dnsFe, Kind: desired.ClusterIP}
		for _, a := range active {
			e.Active = append(e.Active, backend(a))
		}
		for _, a := range terminating {
			e.Terminating = append(e.Terminating, backend(a))
		}
		if internal != nil {
			e.Internal = &desired.BackendSet{}
			for _, a := range internal {
				e.Internal.Active = append(e.Internal.Active, backend(a))
			}
		}
		return e
	}
	type sock struct {
		cookie  uint64
		backend netip.AddrPort
		proto   uint8
		service uint32
	}
	cases := []struct {
		name  string
		state *desired.State
		socks []sock
		want  []uint64 // cookies picked
	}{
		{"a backend still active keeps its socket; a removed one does not",
			stateWith(entry([]netip.AddrPort{podA}, nil, nil)),
			[]sock{{1, podA, udpP, dnsID}, {2, podB, udpP, dnsID}}, []uint64{2}},
		{"a terminating backend drains: its socket stays",
			stateWith(entry([]netip.AddrPort{podA}, []netip.AddrPort{podB}, nil)),
			[]sock{{2, podB, udpP, dnsID}}, nil},
		{"a backend of the internal scope only stays",
			stateWith(entry([]netip.AddrPort{podA}, nil, []netip.AddrPort{podC})),
			[]sock{{3, podC, udpP, dnsID}}, nil},
		{"a Service now empty: every socket goes",
			stateWith(entry(nil, nil, nil)),
			[]sock{{1, podA, udpP, dnsID}, {2, podB, udpP, dnsID}}, []uint64{1, 2}},
		{"a frontend gone from the state: its sockets go",
			stateWith(nil),
			[]sock{{1, podA, udpP, dnsID}}, []uint64{1}},
		{"a service id no frontend has any more (its rev-NAT entry deleted)",
			stateWith(entry([]netip.AddrPort{podA}, nil, nil)),
			[]sock{{4, podA, udpP, otherID}}, []uint64{4}},
		{"TCP sockets are never picked",
			stateWith(nil),
			[]sock{{5, podA, uint8(desired.TCP), dnsID}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var keys []lbmap.SockKey
			var values []lbmap.SockRevNat
			for _, s := range tc.socks {
				keys = append(keys, lbmap.NewSockKey(s.cookie, s.backend, s.proto))
				values = append(values, lbmap.SockRevNat{ServiceId: s.service})
			}
			var got []uint64
			for _, k := range StaleSockets(keys, values, frontends, tc.state) {
				got = append(got, k.Cookie)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("picked cookies %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWorkOf(t *testing.T) {
	nodePortFe := desired.Frontend{Addr: netip.MustParseAddr("192.0.2.1"), Port: 30053, Proto: desired.UDP}
	state := &desired.State{Frontends: map[desired.Frontend]*desired.FrontendEntry{
		dnsFe:      {Frontend: dnsFe, Kind: desired.ClusterIP},
		nodePortFe: {Frontend: nodePortFe, Kind: desired.NodePort},
		webFe:      {Frontend: webFe, Kind: desired.ClusterIP},
	}}
	cases := []struct {
		name string
		res  syncer.Result
		want Work
	}{
		{"nothing changed", syncer.Result{}, Work{}},
		{"a UDP backend deleted", syncer.Result{RemovedBackends: []syncer.RemovedBackend{{Backend: backend(podA)}}}, Work{Stale: true}},
		{"a TCP frontend changed", syncer.Result{Frontends: []syncer.FrontendChange{{Frontend: webFe, Change: syncer.Changed}}}, Work{}},
		{"a UDP frontend changed", syncer.Result{Frontends: []syncer.FrontendChange{{Frontend: dnsFe, Change: syncer.Changed}}}, Work{Stale: true}},
		{"a UDP frontend removed", syncer.Result{Frontends: []syncer.FrontendChange{{Frontend: dnsFe, Change: syncer.Removed}}}, Work{Stale: true}},
		{"a UDP ClusterIP added, in two scopes: its VIP once", syncer.Result{Frontends: []syncer.FrontendChange{
			{Frontend: dnsFe, Change: syncer.Added}, {Frontend: dnsFe, Scope: 1, Change: syncer.Added}}},
			Work{NewVIPs: []netip.AddrPort{dnsVIP}}},
		{"a UDP NodePort added: a node address is left alone", syncer.Result{Frontends: []syncer.FrontendChange{
			{Frontend: nodePortFe, Change: syncer.Added}}}, Work{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := WorkOf(state, tc.res)
			if got.Stale != tc.want.Stale || !slices.Equal(got.NewVIPs, tc.want.NewVIPs) {
				t.Errorf("WorkOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
