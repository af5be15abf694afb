package syncer

import (
	"strings"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// The one place where desired values become map values, and map keys become
// desired values again for the mirror.

// frontendScope is one frontend in one scope: the unit the services map holds
// a master entry and slots for.
type frontendScope struct {
	fe    desired.Frontend
	scope lbmap.Scope
}

func (fs frontendScope) String() string {
	if fs.scope == lbmap.ScopeInternal {
		return fs.fe.String() + " (internal)"
	}
	return fs.fe.String()
}

// scopes are the scopes socklb writes; entries of any other scope are strays.
var scopes = [...]lbmap.Scope{lbmap.ScopeDefault, lbmap.ScopeInternal}

func serviceKey(fs frontendScope, slot uint16) lbmap.ServiceKey {
	return lbmap.NewServiceKey(fs.fe.Addr, fs.fe.Port, uint8(fs.fe.Proto), fs.scope, slot)
}

// frontendScopeOfKey is the frontend scope a services key belongs to, false
// for a scope socklb does not write.
func frontendScopeOfKey(k lbmap.ServiceKey) (frontendScope, bool) {
	if k.Scope != lbmap.ScopeDefault && k.Scope != lbmap.ScopeInternal {
		return frontendScope{}, false
	}
	ap := k.AddrPort()
	return frontendScope{fe: desired.Frontend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.Protocol(k.Proto)}, scope: k.Scope}, true
}

// masterValue is the master entry of one scope of svc. The default scope's
// master sends node-local clients to the internal scope when there is one,
// and carries what concerns outside clients only (the XDP program reads the
// default scope): the external traffic policy and the source ranges.
func masterValue(svc *desired.FrontendEntry, scope lbmap.Scope, id uint32, active, terminating int) lbmap.ServiceValue {
	flags := kindFlags(svc.Kind)
	if scope == lbmap.ScopeDefault {
		if svc.Internal != nil {
			flags |= lbmap.FlagTwoScopes
		}
		if svc.ExternalLocal {
			flags |= lbmap.FlagExtLocal
		}
		if len(svc.SourceRanges) > 0 {
			flags |= lbmap.FlagSourceRanges
		}
	}
	if svc.InternalLocal {
		flags |= lbmap.FlagIntLocal
	}
	v := lbmap.ServiceValue{ServiceId: id, Count: uint16(active), Terminating: uint16(terminating), Flags: flags}
	if svc.AffinityTimeout > 0 {
		// Both scopes: a client keeps its backend whichever it reads.
		v.Flags |= lbmap.FlagAffinity
		v.AffinityTimeout = svc.AffinityTimeout
	}
	return v
}

func slotValue(serviceID, backendID uint32) lbmap.ServiceValue {
	return lbmap.ServiceValue{BackendId: backendID, ServiceId: serviceID}
}

// backendSet is the backends svc sends the clients of scope to.
func backendSet(svc *desired.FrontendEntry, scope lbmap.Scope) (desired.BackendSet, bool) {
	if scope == lbmap.ScopeDefault {
		return svc.BackendSet, true
	}
	if scope == lbmap.ScopeInternal && svc.Internal != nil {
		return *svc.Internal, true
	}
	return desired.BackendSet{}, false
}

func kindFlags(k desired.FrontendKind) lbmap.ServiceFlags {
	switch k {
	case desired.ClusterIP:
		return lbmap.FlagClusterIP
	case desired.NodePort:
		return lbmap.FlagNodePort
	case desired.LoadBalancer:
		return lbmap.FlagLoadBalancer
	case desired.ExternalIP:
		return lbmap.FlagExternalIP
	}
	return 0
}

func backendValue(b desired.Backend, state lbmap.BackendState) lbmap.Backend {
	v := lbmap.NewBackend(b.Addr, b.Port, uint8(b.Proto), state)
	if b.Local {
		v.Flags |= lbmap.BackendLocal
	}
	return v
}

func backendOfValue(v lbmap.Backend) desired.Backend {
	ap := v.AddrPort()
	return desired.Backend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.Protocol(v.Proto), Local: v.Flags&lbmap.BackendLocal != 0}
}

// sourceRangeKeys are the source-ranges entries svc needs under its id.
func sourceRangeKeys(svc *desired.FrontendEntry, id uint32) map[lbmap.SourceRangeKey]bool {
	keys := make(map[lbmap.SourceRangeKey]bool, len(svc.SourceRanges))
	for _, p := range svc.SourceRanges {
		keys[lbmap.NewSourceRangeKey(id, p)] = true
	}
	return keys
}

// sourceRangeAllowed is the value of every source-ranges entry.
const sourceRangeAllowed uint8 = 1

// nodeConfigKey is the one key of the node config array.
const nodeConfigKey uint32 = 0

func nodeConfigValue(c desired.SNATConfig) lbmap.NodeConfig {
	return lbmap.NewNodeConfig(c.Addr4, c.Addr6, c.PortMin, c.PortMax)
}

func revNatValue(fe desired.Frontend) lbmap.RevNat {
	return lbmap.NewRevNat(fe.Addr, fe.Port, uint8(fe.Proto))
}

func nameValue(n desired.ServicePortName) lbmap.ServiceName {
	return lbmap.NewServiceName(n.String())
}

// serviceRefOfName is the Service a name entry names: the inverse of
// nameValue ("namespace/name" or "namespace/name:port"; neither a namespace
// nor a name holds '/' or ':'); false for anything else.
func serviceRefOfName(text string) (desired.ServiceRef, bool) {
	ns, rest, ok := strings.Cut(text, "/")
	name, _, _ := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" {
		return desired.ServiceRef{}, false
	}
	return desired.ServiceRef{Namespace: ns, Name: name}, true
}
