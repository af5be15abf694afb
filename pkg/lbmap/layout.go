package lbmap

import (
	"fmt"
	"strings"
)

// Readable names for the bpf2go mirrors of the C layouts in bpf/lib/lb_types.h.
type (
	ServiceKey   = layoutsLbServiceKey       // struct lb_service_key
	ServiceValue = layoutsLbServiceValue     // struct lb_service_value
	Backend      = layoutsLbBackend          // struct lb_backend
	RevNat       = layoutsLbRevNatValue      // struct lb_rev_nat_value
	ServiceName  = layoutsLbServiceName      // struct lb_service_name
	SockKey      = layoutsLbSockKey          // struct lb_sock_key
	SockRevNat   = layoutsLbSockRevNatValue  // struct lb_sock_rev_nat_value
	SockBackend  = layoutsLbSockBackendValue // struct lb_sock_backend_value

	FlowKey        = layoutsLbFlowKey        // struct lb_flow_key
	Flow           = layoutsLbFlow           // struct lb_flow
	NodeConfig     = layoutsLbNodeCfg        // struct lb_node_cfg
	SourceRangeKey = layoutsLbSourceRangeKey // struct lb_source_range_key

	RefuseKey     = layoutsLbRefuseKey     // struct lb_refuse_key
	AffinityKey   = layoutsLbAffinityKey   // struct lb_affinity_key
	AffinityValue = layoutsLbAffinityValue // struct lb_affinity_value

	Scope        = layoutsLbScope        // enum lb_scope
	ServiceFlags = layoutsLbServiceFlags // enum lb_service_flags
	BackendState = layoutsLbBackendState // enum lb_backend_state
	Reason       = layoutsLbReason       // enum lb_reason
	BackendFlags = layoutsLbBackendFlags // enum lb_backend_flags
	FlowDir      = layoutsLbFlowDir      // enum lb_flow_dir
	FlowFlags    = layoutsLbFlowFlags    // enum lb_flow_flags
	RefuseKind   = layoutsLbRefuseKind   // enum lb_refuse_kind
)

// Map names, which are also the pin file names under the pin directory.
const (
	ServicesMap     = layoutsMapLbServices
	BackendsMap     = layoutsMapLbBackends
	RevNatMap       = layoutsMapLbRevNat
	ServiceNamesMap = layoutsMapLbServiceNames
	CountersMap     = layoutsMapLbCounters
	SockRevNatMap   = layoutsMapLbSockRevNat
	SockBackendMap  = layoutsMapLbSockBackend
	NatMap          = layoutsMapLbNat
	NodeConfigMap   = layoutsMapLbNodeConfig
	SourceRangesMap = layoutsMapLbSourceRanges
	RefuseMap       = layoutsMapLbRefuse
	AffinityMap     = layoutsMapLbAffinity
	MaglevMap       = layoutsMapLbMaglev
)

// DefaultPinDir is where a node's agent pins its maps and links.
const DefaultPinDir = "/sys/fs/bpf/socklb"

// The enums of bpf/lib/lb_types.h, by their Go names.
const (
	ScopeDefault  = layoutsLbScopeLB_SCOPE_DEFAULT
	ScopeInternal = layoutsLbScopeLB_SCOPE_INTERNAL

	FlagClusterIP    = layoutsLbServiceFlagsLB_SVC_F_CLUSTER_IP
	FlagNodePort     = layoutsLbServiceFlagsLB_SVC_F_NODE_PORT
	FlagExternalIP   = layoutsLbServiceFlagsLB_SVC_F_EXTERNAL_IP
	FlagLoadBalancer = layoutsLbServiceFlagsLB_SVC_F_LOAD_BALANCER
	FlagExtLocal     = layoutsLbServiceFlagsLB_SVC_F_EXT_LOCAL
	FlagIntLocal     = layoutsLbServiceFlagsLB_SVC_F_INT_LOCAL
	FlagAffinity     = layoutsLbServiceFlagsLB_SVC_F_AFFINITY
	FlagTwoScopes    = layoutsLbServiceFlagsLB_SVC_F_TWO_SCOPES
	FlagSourceRanges = layoutsLbServiceFlagsLB_SVC_F_SOURCE_RANGES

	BackendLocal = layoutsLbBackendFlagsLB_BACKEND_F_LOCAL

	FlowForward = layoutsLbFlowDirLB_FLOW_FWD
	FlowReply   = layoutsLbFlowDirLB_FLOW_REV
	FlowSNAT    = layoutsLbFlowFlagsLB_FLOW_F_SNAT
	FlowLocal   = layoutsLbFlowFlagsLB_FLOW_F_LOCAL

	RefuseNoPort      = layoutsLbRefuseKindLB_REFUSE_NO_PORT
	RefuseUnallocated = layoutsLbRefuseKindLB_REFUSE_UNALLOCATED

	BackendActive      = layoutsLbBackendStateLB_BACKEND_ACTIVE
	BackendTerminating = layoutsLbBackendStateLB_BACKEND_TERMINATING

	ReasonTranslated     = layoutsLbReasonLB_REASON_TRANSLATED
	ReasonNoBackend      = layoutsLbReasonLB_REASON_NO_BACKEND
	ReasonSlotMissing    = layoutsLbReasonLB_REASON_SLOT_MISSING
	ReasonBackendMissing = layoutsLbReasonLB_REASON_BACKEND_MISSING
	ReasonWrongFamily    = layoutsLbReasonLB_REASON_WRONG_FAMILY
	ReasonSockMapWrite   = layoutsLbReasonLB_REASON_SOCK_MAP_WRITE
	ReasonSourceRange    = layoutsLbReasonLB_REASON_SOURCE_RANGE
	ReasonNoLocalBackend = layoutsLbReasonLB_REASON_NO_LOCAL_BACKEND
	ReasonSNATPorts      = layoutsLbReasonLB_REASON_SNAT_PORTS
	ReasonNatWrite       = layoutsLbReasonLB_REASON_NAT_WRITE
	ReasonFibPass        = layoutsLbReasonLB_REASON_FIB_PASS
	ReasonReply          = layoutsLbReasonLB_REASON_REPLY
	ReasonICMPError      = layoutsLbReasonLB_REASON_ICMP_ERROR
	ReasonNeighResolve   = layoutsLbReasonLB_REASON_NEIGH_RESOLVE
	ReasonNoPort         = layoutsLbReasonLB_REASON_NO_PORT
	ReasonUnallocated    = layoutsLbReasonLB_REASON_UNALLOCATED
	ReasonAffinityWrite  = layoutsLbReasonLB_REASON_AFFINITY_WRITE
	ReasonAffinityHit    = layoutsLbReasonLB_REASON_AFFINITY_HIT
	// ReasonMax is the number of reasons, the size of the counters map.
	ReasonMax = layoutsLbReasonLB_REASON_MAX
)

// reasonNames are the names counters and traces give each reason.
var reasonNames = [ReasonMax]string{
	ReasonTranslated:     "translated",
	ReasonNoBackend:      "no_backend",
	ReasonSlotMissing:    "slot_missing",
	ReasonBackendMissing: "backend_missing",
	ReasonWrongFamily:    "wrong_family",
	ReasonSockMapWrite:   "sock_map_write",
	ReasonSourceRange:    "source_range",
	ReasonNoLocalBackend: "no_local_backend",
	ReasonSNATPorts:      "snat_ports",
	ReasonNatWrite:       "nat_write",
	ReasonFibPass:        "fib_pass",
	ReasonReply:          "reply",
	ReasonICMPError:      "icmp_error",
	ReasonNeighResolve:   "neigh_resolve",
	ReasonNoPort:         "no_port",
	ReasonUnallocated:    "unallocated",
	ReasonAffinityWrite:  "affinity_write",
	ReasonAffinityHit:    "affinity_hit",
}

func (r Reason) String() string {
	if r < ReasonMax {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

var flagNames = []struct {
	flag ServiceFlags
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
	{FlagSourceRanges, "SourceRanges"},
}

// FlagsString names the set bits of a master entry's flags, "ClusterIP|IntLocal".
func FlagsString(flags ServiceFlags) string {
	var names []string
	for _, f := range flagNames {
		if flags&f.flag != 0 {
			names = append(names, f.name)
			flags &^= f.flag
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint16(flags)))
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, "|")
}

// BackendStateString names a backend state.
func BackendStateString(state BackendState) string {
	return state.String()
}

func (state BackendState) String() string {
	switch state {
	case BackendActive:
		return "active"
	case BackendTerminating:
		return "terminating"
	}
	return fmt.Sprintf("state(%d)", uint8(state))
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

// String names the set bits, as FlagsString does.
func (flags ServiceFlags) String() string { return FlagsString(flags) }

func (s Scope) String() string {
	switch s {
	case ScopeDefault:
		return "default"
	case ScopeInternal:
		return "internal"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

func (k ServiceKey) String() string {
	return fmt.Sprintf("%s/%s slot=%d scope=%d", k.AddrPort(), ProtoString(k.Proto), k.Slot, uint8(k.Scope))
}

func (v ServiceValue) String() string {
	return fmt.Sprintf("service_id=%d backend_id=%d count=%d terminating=%d flags=%s affinity_timeout=%d",
		v.ServiceId, v.BackendId, v.Count, v.Terminating, FlagsString(v.Flags), v.AffinityTimeout)
}

func (b Backend) String() string {
	return fmt.Sprintf("%s/%s state=%s zone=%d flags=0x%x", b.AddrPort(), ProtoString(b.Proto), b.State, b.Zone, b.Flags)
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

func (k RefuseKind) String() string {
	switch k {
	case RefuseNoPort:
		return "no_port"
	case RefuseUnallocated:
		return "unallocated"
	}
	return fmt.Sprintf("refuse(%d)", uint8(k))
}

func (k RefuseKey) String() string { return k.Prefix().String() }

func (k AffinityKey) String() string {
	return fmt.Sprintf("netns=%d client=%s service_id=%d", k.NetnsCookie, addrFrom16(k.Client), k.ServiceId)
}

func (v AffinityValue) String() string {
	return fmt.Sprintf("backend_id=%d slot=%d last_ns=%d", v.BackendId, v.Slot, v.LastNs)
}
