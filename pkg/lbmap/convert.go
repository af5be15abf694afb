package lbmap

import (
	"encoding/binary"
	"net/netip"
)

// The one place where socklb converts between the maps' network byte order
// and Go's values. Addresses are 16 bytes, IPv4 stored IPv4-mapped.

func addrTo16(a netip.Addr) [16]uint8 {
	return a.As16()
}

func addrFrom16(b [16]uint8) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

// portToNet returns the uint16 whose in-memory bytes are port in network order.
func portToNet(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return binary.NativeEndian.Uint16(b[:])
}

func portFromNet(port uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], port)
	return binary.BigEndian.Uint16(b[:])
}

// NewServiceKey is the services map key of frontend addr:port/proto at slot.
func NewServiceKey(addr netip.Addr, port uint16, proto uint8, scope Scope, slot uint16) ServiceKey {
	return ServiceKey{Addr: addrTo16(addr), Port: portToNet(port), Proto: proto, Scope: scope, Slot: slot}
}

// AddrPort is the key's frontend, unmapped.
func (k ServiceKey) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(k.Addr), portFromNet(k.Port))
}

// NewBackend is the backends map value of a backend addr:port/proto.
func NewBackend(addr netip.Addr, port uint16, proto uint8, state BackendState) Backend {
	return Backend{Addr: addrTo16(addr), Port: portToNet(port), Proto: proto, State: state}
}

// AddrPort is where the backend is, unmapped.
func (b Backend) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(b.Addr), portFromNet(b.Port))
}

// NewRevNat is the rev_nat value of a frontend.
func NewRevNat(addr netip.Addr, port uint16, proto uint8) RevNat {
	return RevNat{Addr: addrTo16(addr), Port: portToNet(port), Proto: proto}
}

// AddrPort is the frontend replies are shown to come from.
func (r RevNat) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(r.Addr), portFromNet(r.Port))
}

// AddrPort is the address in a per-socket key, unmapped.
func (k SockKey) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(k.Addr), portFromNet(k.Port))
}

// NewServiceName stores name, cut to the map's fixed size.
func NewServiceName(name string) ServiceName {
	var n ServiceName
	for i := 0; i < len(name) && i < len(n.Name)-1; i++ {
		n.Name[i] = int8(name[i])
	}
	return n
}

// Get returns the stored name.
func (n ServiceName) Get() string {
	b := make([]byte, 0, len(n.Name))
	for _, c := range n.Name {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
