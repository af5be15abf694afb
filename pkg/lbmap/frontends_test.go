package lbmap

import (
	"net/netip"
	"slices"
	"testing"
)

func TestDecodeFrontends(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	k := func(scope Scope, slot uint16) ServiceKey { return NewServiceKey(vip, 80, 6, scope, slot) }
	master := func(id uint32, count, terminating uint16, flags ServiceFlags) ServiceValue {
		return ServiceValue{ServiceId: id, Count: count, Terminating: terminating, Flags: flags}
	}
	slot := func(backendID uint32) ServiceValue { return ServiceValue{ServiceId: 1, BackendId: backendID} }
	type want struct {
		scope       Scope
		hasMaster   bool
		active      []uint32
		terminating []uint32
		problems    []string
		unreachable []uint16
	}
	cases := []struct {
		name    string
		entries map[ServiceKey]ServiceValue
		want    []want
	}{
		{"active and terminating slots", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 2, 1, FlagClusterIP), k(ScopeDefault, 1): slot(3), k(ScopeDefault, 2): slot(1), k(ScopeDefault, 3): slot(2),
		}, []want{{scope: ScopeDefault, hasMaster: true, active: []uint32{3, 1}, terminating: []uint32{2}}}},
		{"a missing slot and a missing backend, in slot order", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 3, 0, FlagClusterIP), k(ScopeDefault, 1): slot(9), k(ScopeDefault, 3): slot(1),
		}, []want{{scope: ScopeDefault, hasMaster: true, active: []uint32{9, 0, 1},
			problems: []string{"slot 1 names missing backend 9", "slot 2 is missing"}}}},
		{"slots above the count are unreachable", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 1, 0, FlagClusterIP), k(ScopeDefault, 1): slot(1), k(ScopeDefault, 3): slot(2), k(ScopeDefault, 2): slot(2),
		}, []want{{scope: ScopeDefault, hasMaster: true, active: []uint32{1}, unreachable: []uint16{2, 3}}}},
		{"slots without a master", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 2): slot(1), k(ScopeDefault, 1): slot(1),
		}, []want{{scope: ScopeDefault, unreachable: []uint16{1, 2}}}},
		{"two scopes", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 1, 0, FlagClusterIP|FlagTwoScopes), k(ScopeDefault, 1): slot(1),
			k(ScopeInternal, 0): master(1, 1, 0, FlagClusterIP), k(ScopeInternal, 1): slot(2),
		}, []want{
			{scope: ScopeDefault, hasMaster: true, active: []uint32{1}},
			{scope: ScopeInternal, hasMaster: true, active: []uint32{2}},
		}},
		{"TwoScopes without an internal master", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 0, 0, FlagClusterIP|FlagTwoScopes), k(ScopeInternal, 1): slot(2),
		}, []want{
			{scope: ScopeDefault, hasMaster: true, problems: []string{"TwoScopes is set but the internal scope has no master entry"}},
			{scope: ScopeInternal, unreachable: []uint16{1}},
		}},
		{"scopes under two ids", map[ServiceKey]ServiceValue{
			k(ScopeDefault, 0): master(1, 0, 0, FlagClusterIP|FlagTwoScopes), k(ScopeInternal, 0): master(2, 0, 0, FlagClusterIP),
		}, []want{
			{scope: ScopeDefault, hasMaster: true, problems: []string{"the internal scope has service id 2, not 1"}},
			{scope: ScopeInternal, hasMaster: true},
		}},
	}
	backendExists := func(id uint32) bool { return id != 9 }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var keys []ServiceKey
			var vals []ServiceValue
			for k, v := range tc.entries {
				keys, vals = append(keys, k), append(vals, v)
			}
			got := DecodeFrontends(keys, vals, backendExists)
			if len(got) != len(tc.want) {
				t.Fatalf("decoded %d frontends, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				f := got[i]
				active, terminating := f.Regions()
				if f.Key.Scope != w.scope || f.Key.Slot != 0 || f.HasMaster != w.hasMaster || !slices.Equal(active, w.active) ||
					!slices.Equal(terminating, w.terminating) || !slices.Equal(f.Problems, w.problems) || !slices.Equal(f.Unreachable, w.unreachable) {
					t.Errorf("frontend %d = {scope %d slot %d master %t active %v terminating %v problems %q unreachable %v}, want %+v",
						i, f.Key.Scope, f.Key.Slot, f.HasMaster, active, terminating, f.Problems, f.Unreachable, w)
				}
			}
		})
	}
}

func TestDecodeFrontendsOrder(t *testing.T) {
	var keys []ServiceKey
	for _, k := range []struct {
		addr  string
		port  uint16
		proto uint8
		scope Scope
	}{{"fd00::1", 80, 6, 0}, {"10.96.0.10", 80, 17, 0}, {"10.96.0.10", 80, 6, 1}, {"10.96.0.10", 53, 6, 0}, {"10.96.0.10", 80, 6, 0}, {"10.96.0.9", 443, 6, 0}} {
		keys = append(keys, NewServiceKey(netip.MustParseAddr(k.addr), k.port, k.proto, k.scope, 0))
	}
	got := DecodeFrontends(keys, make([]ServiceValue, len(keys)), nil)
	var order []string
	for _, f := range got {
		order = append(order, f.Key.String())
	}
	want := []string{
		"10.96.0.9:443/TCP slot=0 scope=0",
		"10.96.0.10:53/TCP slot=0 scope=0",
		"10.96.0.10:80/TCP slot=0 scope=0",
		"10.96.0.10:80/TCP slot=0 scope=1",
		"10.96.0.10:80/UDP slot=0 scope=0",
		"[fd00::1]:80/TCP slot=0 scope=0",
	}
	if !slices.Equal(order, want) {
		t.Errorf("order\n%q\nwant\n%q", order, want)
	}
}
