package inspect

import (
	"net/netip"

	"github.com/socklb/socklb/pkg/lbmap"
)

// mapsFixture is the content of a set of maps, written as the syncer would
// (or would not: some fixtures hold what only a bug or a crash leaves).
type mapsFixture struct {
	name     string
	services map[lbmap.ServiceKey]lbmap.ServiceValue
	backends map[uint32]lbmap.Backend
	names    map[uint32]string
}

func (f mapsFixture) tables() lbmap.Tables {
	mem := lbmap.NewMemoryTables(nil)
	for k, v := range f.services {
		mem.Services.Update([]lbmap.ServiceKey{k}, []lbmap.ServiceValue{v})
	}
	for id, b := range f.backends {
		mem.Backends.Update([]uint32{id}, []lbmap.Backend{b})
	}
	for id, n := range f.names {
		mem.ServiceNames.Update([]uint32{id}, []lbmap.ServiceName{lbmap.NewServiceName(n)})
	}
	return mem.Tables()
}

func key(addr string, port uint16, proto uint8, scope lbmap.Scope, slot uint16) lbmap.ServiceKey {
	return lbmap.NewServiceKey(netip.MustParseAddr(addr), port, proto, scope, slot)
}

func backend(addr string, port uint16, proto uint8, state lbmap.BackendState) lbmap.Backend {
	return lbmap.NewBackend(netip.MustParseAddr(addr), port, proto, state)
}

func master(id uint32, count, terminating uint16, flags lbmap.ServiceFlags) lbmap.ServiceValue {
	return lbmap.ServiceValue{ServiceId: id, Count: count, Terminating: terminating, Flags: flags}
}

func slot(id, backendID uint32) lbmap.ServiceValue {
	return lbmap.ServiceValue{ServiceId: id, BackendId: backendID}
}

const tcp, udp = 6, 17

// singleScopeFixtures hold one scope per frontend: inspect printed them the
// same way before it knew of scopes, and must go on doing so byte for byte.
var singleScopeFixtures = []mapsFixture{
	{name: "empty maps"},
	{
		name: "two families, a terminating tail, an empty frontend, a shared backend",
		services: map[lbmap.ServiceKey]lbmap.ServiceValue{
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 0):   master(1, 2, 1, lbmap.FlagClusterIP),
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 1):   slot(1, 3),
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 2):   slot(1, 1),
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 3):   slot(1, 2),
			key("10.96.0.10", 53, udp, lbmap.ScopeDefault, 0):   master(2, 1, 0, lbmap.FlagClusterIP),
			key("10.96.0.10", 53, udp, lbmap.ScopeDefault, 1):   slot(2, 4),
			key("10.96.0.10", 53, tcp, lbmap.ScopeDefault, 0):   master(3, 0, 0, lbmap.FlagClusterIP),
			key("fd00::10", 80, tcp, lbmap.ScopeDefault, 0):     master(4, 1, 0, lbmap.FlagClusterIP),
			key("fd00::10", 80, tcp, lbmap.ScopeDefault, 1):     slot(4, 5),
			key("10.96.0.50", 8080, tcp, lbmap.ScopeDefault, 0): master(5, 1, 0, lbmap.FlagClusterIP),
			key("10.96.0.50", 8080, tcp, lbmap.ScopeDefault, 1): slot(5, 1),
		},
		backends: map[uint32]lbmap.Backend{
			1: backend("10.244.0.2", 8080, tcp, lbmap.BackendActive),
			2: backend("10.244.0.3", 8080, tcp, lbmap.BackendTerminating),
			3: backend("10.244.0.4", 8080, tcp, lbmap.BackendActive),
			4: backend("10.244.0.5", 53, udp, lbmap.BackendActive),
			5: backend("fd00:10:244::2", 8080, tcp, lbmap.BackendActive),
			6: backend("10.244.0.9", 8080, tcp, lbmap.BackendActive),
		},
		names: map[uint32]string{1: "default/web:http", 2: "kube-system/dns:dns", 3: "kube-system/dns:dns-tcp", 4: "default/web6", 5: "default/alt"},
	},
	{
		name: "what a crash or a bug leaves: missing slot, missing backend, no name, leftover slots",
		services: map[lbmap.ServiceKey]lbmap.ServiceValue{
			key("10.96.0.60", 80, tcp, lbmap.ScopeDefault, 0): master(7, 3, 0, lbmap.FlagClusterIP|lbmap.FlagIntLocal),
			key("10.96.0.60", 80, tcp, lbmap.ScopeDefault, 1): slot(7, 1),
			key("10.96.0.60", 80, tcp, lbmap.ScopeDefault, 3): slot(7, 9),
			key("10.96.0.60", 80, tcp, lbmap.ScopeDefault, 4): slot(7, 1),
			key("10.96.0.70", 80, tcp, lbmap.ScopeDefault, 2): slot(8, 1),
		},
		backends: map[uint32]lbmap.Backend{1: backend("10.244.0.2", 8080, tcp, lbmap.BackendActive)},
	},
}
