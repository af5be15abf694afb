package lbmap

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// Every Go mirror has the C struct's size and, field by field, its names,
// offsets, sizes and Go types, as the layouts object's BTF declares them.
func TestLayoutsMatchBTF(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cStruct string
		goType  reflect.Type
	}{
		{"lb_service_key", reflect.TypeFor[ServiceKey]()},
		{"lb_service_value", reflect.TypeFor[ServiceValue]()},
		{"lb_backend", reflect.TypeFor[Backend]()},
		{"lb_rev_nat_value", reflect.TypeFor[RevNat]()},
		{"lb_service_name", reflect.TypeFor[ServiceName]()},
		{"lb_sock_key", reflect.TypeFor[SockKey]()},
		{"lb_sock_rev_nat_value", reflect.TypeFor[SockRevNat]()},
		{"lb_sock_backend_value", reflect.TypeFor[SockBackend]()},
		{"lb_flow_key", reflect.TypeFor[FlowKey]()},
		{"lb_flow", reflect.TypeFor[Flow]()},
		{"lb_node_cfg", reflect.TypeFor[NodeConfig]()},
		{"lb_source_range_key", reflect.TypeFor[SourceRangeKey]()},
		{"lb_refuse_key", reflect.TypeFor[RefuseKey]()},
		{"lb_affinity_key", reflect.TypeFor[AffinityKey]()},
		{"lb_affinity_value", reflect.TypeFor[AffinityValue]()},
	}
	// A C field of enum type has the Go type of that enum's mirror.
	enumTypes := map[string]reflect.Type{
		"lb_scope":         reflect.TypeFor[Scope](),
		"lb_service_flags": reflect.TypeFor[ServiceFlags](),
		"lb_backend_state": reflect.TypeFor[BackendState](),
		"lb_reason":        reflect.TypeFor[Reason](),
		"lb_backend_flags": reflect.TypeFor[BackendFlags](),
		"lb_flow_dir":      reflect.TypeFor[FlowDir](),
		"lb_flow_flags":    reflect.TypeFor[FlowFlags](),
		"lb_refuse_kind":   reflect.TypeFor[RefuseKind](),
	}
	for _, tc := range cases {
		t.Run(tc.cStruct, func(t *testing.T) {
			var s *btf.Struct
			if err := spec.Types.TypeByName(tc.cStruct, &s); err != nil {
				t.Fatal(err)
			}
			if uintptr(s.Size) != tc.goType.Size() {
				t.Errorf("struct %s is %d bytes in C, %d in Go", tc.cStruct, s.Size, tc.goType.Size())
			}
			var fields []reflect.StructField
			for i := range tc.goType.NumField() {
				if f := tc.goType.Field(i); f.Name != "_" {
					fields = append(fields, f)
				}
			}
			if len(fields) != len(s.Members) {
				t.Fatalf("struct %s has %d fields in C, %d in Go", tc.cStruct, len(s.Members), len(fields))
			}
			for i, m := range s.Members {
				checkField(t, tc.cStruct, m, fields[i], enumTypes)
			}
		})
	}
}

func checkField(t *testing.T, cStruct string, m btf.Member, f reflect.StructField, enumTypes map[string]reflect.Type) {
	t.Helper()
	if want := goFieldName(m.Name); f.Name != want {
		t.Errorf("%s.%s is named %s in Go, want %s", cStruct, m.Name, f.Name, want)
	}
	if uintptr(m.Offset.Bytes()) != f.Offset {
		t.Errorf("%s.%s is at byte %d in C, %d in Go", cStruct, m.Name, m.Offset.Bytes(), f.Offset)
	}
	size, err := btf.Sizeof(m.Type)
	if err != nil {
		t.Fatalf("%s.%s: %v", cStruct, m.Name, err)
	}
	if uintptr(size) != f.Type.Size() {
		t.Errorf("%s.%s is %d bytes in C, %d in Go", cStruct, m.Name, size, f.Type.Size())
	}
	if e, ok := btf.UnderlyingType(m.Type).(*btf.Enum); ok && f.Type != enumTypes[e.Name] {
		t.Errorf("%s.%s is enum %s in C, %s in Go", cStruct, m.Name, e.Name, f.Type)
	}
}

// goFieldName is bpf2go's name for a C field: backend_id -> BackendId.
func goFieldName(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(c, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// Every enumerator of every enum in the layouts has an exported Go constant
// of the same value, and every Go constant is an enumerator.
func TestConstantsMatchBTF(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cEnum  string
		goSize uintptr
		goVals map[string]uint64
	}{
		{"lb_scope", unsafe.Sizeof(Scope(0)), map[string]uint64{
			"LB_SCOPE_DEFAULT":  uint64(ScopeDefault),
			"LB_SCOPE_INTERNAL": uint64(ScopeInternal),
		}},
		{"lb_service_flags", unsafe.Sizeof(ServiceFlags(0)), map[string]uint64{
			"LB_SVC_F_CLUSTER_IP":    uint64(FlagClusterIP),
			"LB_SVC_F_NODE_PORT":     uint64(FlagNodePort),
			"LB_SVC_F_EXTERNAL_IP":   uint64(FlagExternalIP),
			"LB_SVC_F_LOAD_BALANCER": uint64(FlagLoadBalancer),
			"LB_SVC_F_EXT_LOCAL":     uint64(FlagExtLocal),
			"LB_SVC_F_INT_LOCAL":     uint64(FlagIntLocal),
			"LB_SVC_F_AFFINITY":      uint64(FlagAffinity),
			"LB_SVC_F_TWO_SCOPES":    uint64(FlagTwoScopes),
			"LB_SVC_F_SOURCE_RANGES": uint64(FlagSourceRanges),
		}},
		{"lb_backend_flags", unsafe.Sizeof(BackendFlags(0)), map[string]uint64{
			"LB_BACKEND_F_LOCAL": uint64(BackendLocal),
		}},
		{"lb_flow_dir", unsafe.Sizeof(FlowDir(0)), map[string]uint64{
			"LB_FLOW_FWD": uint64(FlowForward),
			"LB_FLOW_REV": uint64(FlowReply),
		}},
		{"lb_flow_flags", unsafe.Sizeof(FlowFlags(0)), map[string]uint64{
			"LB_FLOW_F_SNAT":  uint64(FlowSNAT),
			"LB_FLOW_F_LOCAL": uint64(FlowLocal),
		}},
		{"lb_refuse_kind", unsafe.Sizeof(RefuseKind(0)), map[string]uint64{
			"LB_REFUSE_NO_PORT":     uint64(RefuseNoPort),
			"LB_REFUSE_UNALLOCATED": uint64(RefuseUnallocated),
		}},
		{"lb_backend_state", unsafe.Sizeof(BackendState(0)), map[string]uint64{
			"LB_BACKEND_ACTIVE":      uint64(BackendActive),
			"LB_BACKEND_TERMINATING": uint64(BackendTerminating),
		}},
		{"lb_reason", unsafe.Sizeof(Reason(0)), map[string]uint64{
			"LB_REASON_TRANSLATED":       uint64(ReasonTranslated),
			"LB_REASON_NO_BACKEND":       uint64(ReasonNoBackend),
			"LB_REASON_SLOT_MISSING":     uint64(ReasonSlotMissing),
			"LB_REASON_BACKEND_MISSING":  uint64(ReasonBackendMissing),
			"LB_REASON_WRONG_FAMILY":     uint64(ReasonWrongFamily),
			"LB_REASON_SOCK_MAP_WRITE":   uint64(ReasonSockMapWrite),
			"LB_REASON_SOURCE_RANGE":     uint64(ReasonSourceRange),
			"LB_REASON_NO_LOCAL_BACKEND": uint64(ReasonNoLocalBackend),
			"LB_REASON_SNAT_PORTS":       uint64(ReasonSNATPorts),
			"LB_REASON_NAT_WRITE":        uint64(ReasonNatWrite),
			"LB_REASON_FIB_PASS":         uint64(ReasonFibPass),
			"LB_REASON_REPLY":            uint64(ReasonReply),
			"LB_REASON_ICMP_ERROR":       uint64(ReasonICMPError),
			"LB_REASON_NEIGH_RESOLVE":    uint64(ReasonNeighResolve),
			"LB_REASON_NO_PORT":          uint64(ReasonNoPort),
			"LB_REASON_UNALLOCATED":      uint64(ReasonUnallocated),
			"LB_REASON_AFFINITY_WRITE":   uint64(ReasonAffinityWrite),
			"LB_REASON_AFFINITY_HIT":     uint64(ReasonAffinityHit),
			"LB_REASON_MAX":              uint64(ReasonMax),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.cEnum, func(t *testing.T) {
			var e *btf.Enum
			if err := spec.Types.TypeByName(tc.cEnum, &e); err != nil {
				t.Fatal(err)
			}
			if uintptr(e.Size) != tc.goSize {
				t.Errorf("enum %s is %d bytes in C, %d in Go", tc.cEnum, e.Size, tc.goSize)
			}
			inC := map[string]bool{}
			for _, v := range e.Values {
				inC[v.Name] = true
				got, ok := tc.goVals[v.Name]
				if !ok {
					t.Errorf("%s = %d has no Go constant", v.Name, v.Value)
				} else if got != v.Value {
					t.Errorf("%s is %d in C, %d in Go", v.Name, v.Value, got)
				}
			}
			for name := range tc.goVals {
				if !inC[name] {
					t.Errorf("Go mirrors %s, which enum %s does not have", name, tc.cEnum)
				}
			}
		})
	}
}

// The counters map has a slot per reason, and every reason a name.
func TestReasons(t *testing.T) {
	spec, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[CountersMap].MaxEntries; got != uint32(ReasonMax) {
		t.Errorf("%s has %d entries, want one per reason (%d)", CountersMap, got, ReasonMax)
	}
	seen := map[string]Reason{}
	for r := Reason(0); r < ReasonMax; r++ {
		name := r.String()
		if name == "" {
			t.Errorf("reason %d has no name", uint32(r))
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("reasons %d and %d are both named %q", uint32(prev), uint32(r), name)
		}
		seen[name] = r
	}
}

// Addresses go into the maps IPv4-mapped and ports in network order.
func TestByteOrder(t *testing.T) {
	cases := []struct {
		name      string
		addr      string
		port      uint16
		wantBytes [16]byte
	}{
		{"IPv4 is stored IPv4-mapped", "10.96.0.10", 80, [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 96, 14: 0, 15: 10}},
		{"IPv6 as is", "fd00::10", 8080, [16]byte{0: 0xfd, 15: 0x10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := netip.MustParseAddr(tc.addr)
			k := NewServiceKey(addr, tc.port, 6, ScopeDefault, 3)
			if k.Addr != tc.wantBytes {
				t.Errorf("address bytes = %v, want %v", k.Addr, tc.wantBytes)
			}
			var raw [2]byte
			binary.NativeEndian.PutUint16(raw[:], k.Port)
			if got := binary.BigEndian.Uint16(raw[:]); got != tc.port {
				t.Errorf("port in memory reads %d in network order, want %d", got, tc.port)
			}
			if got := k.AddrPort(); got != netip.AddrPortFrom(addr, tc.port) {
				t.Errorf("round trip gives %s", got)
			}
			b := NewBackend(addr, tc.port, 17, BackendTerminating)
			if got := b.AddrPort(); got != netip.AddrPortFrom(addr, tc.port) {
				t.Errorf("backend round trip gives %s", got)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"service key", NewServiceKey(netip.MustParseAddr("10.96.0.10"), 80, 6, ScopeDefault, 0).String(), "10.96.0.10:80/TCP slot=0 scope=0"},
		{"master value", ServiceValue{ServiceId: 7, Count: 2, Terminating: 1, Flags: FlagClusterIP}.String(), "service_id=7 backend_id=0 count=2 terminating=1 flags=ClusterIP affinity_timeout=0"},
		{"backend", NewBackend(netip.MustParseAddr("fd00::2"), 8080, 17, BackendTerminating).String(), "[fd00::2]:8080/UDP state=terminating zone=0 flags=0x0"},
		{"rev nat", NewRevNat(netip.MustParseAddr("10.96.0.10"), 53, 17).String(), "10.96.0.10:53/UDP"},
		{"name", NewServiceName("default/web:http").String(), "default/web:http"},
		{"flags", FlagsString(FlagClusterIP | FlagIntLocal | 1<<12), "ClusterIP|IntLocal|0x1000"},
		{"flags as a Stringer", (FlagClusterIP | FlagTwoScopes).String(), "ClusterIP|TwoScopes"},
		{"no flags", ServiceFlags(0).String(), "-"},
		{"internal scope", ScopeInternal.String(), "internal"},
		{"backend state", BackendTerminating.String(), "terminating"},
		{"reason", ReasonNoBackend.String(), "no_backend"},
		{"unknown reason", Reason(99).String(), "reason(99)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}
