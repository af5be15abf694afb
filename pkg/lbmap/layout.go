package lbmap

import (
	"fmt"
	"strings"
)

// Readable names for the bpf2go mirrors of the C structs in bpf/lib/lb.h.
type (
	ServiceKey   = SockLBLbServiceKey       // struct lb_service_key
	ServiceValue = SockLBLbServiceValue     // struct lb_service_value
	Backend      = SockLBLbBackend          // struct lb_backend
	RevNat       = SockLBLbRevNatValue      // struct lb_rev_nat_value
	ServiceName  = SockLBLbServiceName      // struct lb_service_name
	SockKey      = SockLBLbSockKey          // struct lb_sock_key
	SockRevNat   = SockLBLbSockRevNatValue  // struct lb_sock_rev_nat_value
	SockBackend  = SockLBLbSockBackendValue // struct lb_sock_backend_value
)

// Map names, which are also the pin file names under the pin directory.
const (
	ServicesMap     = SockLBMapLbServices
	BackendsMap     = SockLBMapLbBackends
	RevNatMap       = SockLBMapLbRevNat
	ServiceNamesMap = SockLBMapLbServiceNames
	SockRevNatMap   = SockLBMapLbSockRevNat
	SockBackendMap  = SockLBMapLbSockBackend
)

// DefaultPinDir is where a node's agent pins its maps and links.
const DefaultPinDir = "/sys/fs/bpf/socklb"

// Constants mirrored from the enums in bpf/lib/lb.h (bpf2go cannot emit enums
// that no program variable uses).
const (
	ScopeDefault  uint8 = 0 // LB_SCOPE_DEFAULT
	ScopeInternal uint8 = 1 // LB_SCOPE_INTERNAL

	FlagClusterIP    uint16 = 1 << 0 // LB_SVC_F_CLUSTER_IP
	FlagNodePort     uint16 = 1 << 1 // LB_SVC_F_NODE_PORT
	FlagExternalIP   uint16 = 1 << 2 // LB_SVC_F_EXTERNAL_IP
	FlagLoadBalancer uint16 = 1 << 3 // LB_SVC_F_LOAD_BALANCER
	FlagExtLocal     uint16 = 1 << 4 // LB_SVC_F_EXT_LOCAL
	FlagIntLocal     uint16 = 1 << 5 // LB_SVC_F_INT_LOCAL
	FlagAffinity     uint16 = 1 << 6 // LB_SVC_F_AFFINITY
	FlagTwoScopes    uint16 = 1 << 7 // LB_SVC_F_TWO_SCOPES

	BackendActive      uint8 = 0 // LB_BACKEND_ACTIVE
	BackendTerminating uint8 = 1 // LB_BACKEND_TERMINATING
)

var flagNames = []struct {
	flag uint16
	name string
}{
	{FlagClusterIP, "ClusterIP"},
	{FlagNodePort, "NodePort"},
	{FlagExternalIP, "ExternalIP"},
	{FlagLoadBalancer, "LoadBalancer"},
	{FlagExtLocal, "ExtLocal"},
	{FlagIntLocal, "IntLocal"},
	{FlagAffinity, "Affinity"},
	{FlagTwoScopes, "TwoScopes"},
}

// FlagsString names the set bits of a master entry's flags, "ClusterIP|IntLocal".
func FlagsString(flags uint16) string {
	var names []string
	for _, f := range flagNames {
		if flags&f.flag != 0 {
			names = append(names, f.name)
			flags &^= f.flag
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("0x%x", flags))
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, "|")
}

// BackendStateString names a backend state.
func BackendStateString(state uint8) string {
	switch state {
	case BackendActive:
		return "active"
	case BackendTerminating:
		return "terminating"
	}
	return fmt.Sprintf("state(%d)", state)
}

// ProtoString names an IP protocol number.
func ProtoString(proto uint8) string {
	switch proto {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	}
	return fmt.Sprintf("proto(%d)", proto)
}

func (k ServiceKey) String() string {
	return fmt.Sprintf("%s/%s slot=%d scope=%d", k.AddrPort(), ProtoString(k.Proto), k.Slot, k.Scope)
}

func (v ServiceValue) String() string {
	return fmt.Sprintf("service_id=%d backend_id=%d count=%d terminating=%d flags=%s affinity_timeout=%d",
		v.ServiceId, v.BackendId, v.Count, v.Terminating, FlagsString(v.Flags), v.AffinityTimeout)
}

func (b Backend) String() string {
	return fmt.Sprintf("%s/%s state=%s zone=%d flags=0x%x", b.AddrPort(), ProtoString(b.Proto), BackendStateString(b.State), b.Zone, b.Flags)
}

func (r RevNat) String() string {
	return fmt.Sprintf("%s/%s", r.AddrPort(), ProtoString(r.Proto))
}

func (n ServiceName) String() string {
	return n.Get()
}

func (k SockKey) String() string {
	return fmt.Sprintf("cookie=%d %s/%s", k.Cookie, k.AddrPort(), ProtoString(k.Proto))
}

func (v SockRevNat) String() string {
	return fmt.Sprintf("service_id=%d", v.ServiceId)
}

func (v SockBackend) String() string {
	return fmt.Sprintf("backend_id=%d service_id=%d slot=%d", v.BackendId, v.ServiceId, v.Slot)
}
