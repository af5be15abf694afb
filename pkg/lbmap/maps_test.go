package lbmap

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// The Go mirrors must have the sizes of the C structs the programs use.
func TestLayoutsMatchBTF(t *testing.T) {
	spec, err := LoadSockLB()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cStruct string
		goSize  uintptr
	}{
		{"lb_service_key", unsafe.Sizeof(ServiceKey{})},
		{"lb_service_value", unsafe.Sizeof(ServiceValue{})},
		{"lb_backend", unsafe.Sizeof(Backend{})},
		{"lb_rev_nat_value", unsafe.Sizeof(RevNat{})},
		{"lb_service_name", unsafe.Sizeof(ServiceName{})},
		{"lb_sock_key", unsafe.Sizeof(SockKey{})},
		{"lb_sock_rev_nat_value", unsafe.Sizeof(SockRevNat{})},
		{"lb_sock_backend_value", unsafe.Sizeof(SockBackend{})},
	}
	for _, tc := range cases {
		t.Run(tc.cStruct, func(t *testing.T) {
			var s *btf.Struct
			if err := spec.Types.TypeByName(tc.cStruct, &s); err != nil {
				t.Fatal(err)
			}
			if uintptr(s.Size) != tc.goSize {
				t.Errorf("struct %s is %d bytes in C, %d in Go", tc.cStruct, s.Size, tc.goSize)
			}
		})
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}
