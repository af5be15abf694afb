package lbmap

import (
	"encoding/binary"
	"net/netip"
	"strings"
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

// NewSockKey is the per-socket key of the socket with cookie and addr.
func NewSockKey(cookie uint64, addr netip.AddrPort, proto uint8) SockKey {
	return SockKey{Cookie: cookie, Addr: addrTo16(addr.Addr()), Port: portToNet(addr.Port()), Proto: proto}
}

// AddrPort is the address in a per-socket key, unmapped.
func (k SockKey) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(k.Addr), portFromNet(k.Port))
}

// FrontendAddr and BackendAddr are a monitor event's frontend and backend,
// unmapped; the backend is invalid for a refused connect.
func (e MonitorEvent) FrontendAddr() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(e.Frontend), portFromNet(e.FrontendPort))
}

func (e MonitorEvent) BackendAddr() netip.AddrPort {
	if e.Backend == [16]uint8{} {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addrFrom16(e.Backend), portFromNet(e.BackendPort))
}

// NewServiceName stores name, cut to the map's fixed size.
func NewServiceName(name string) ServiceName {
	var n ServiceName
	for i := 0; i < len(name) && i < len(n.Name)-1; i++ {
		n.Name[i] = int8(name[i])
	}
	return n
}

// ServiceNameText is the name NewServiceName(name).Get() returns: name cut
// to what the map's fixed size holds and at a NUL byte, without the
// 160-byte value.
func ServiceNameText(name string) string {
	var n ServiceName
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return name[:min(len(name), len(n.Name)-1)]
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

// NewFlowKey is the connection-table key of the packet src -> dst.
func NewFlowKey(src, dst netip.AddrPort, proto uint8, dir FlowDir) FlowKey {
	return FlowKey{Saddr: addrTo16(src.Addr()), Daddr: addrTo16(dst.Addr()),
		Sport: portToNet(src.Port()), Dport: portToNet(dst.Port()), Proto: proto, Dir: dir}
}

// Src and Dst are the key's tuple, unmapped.
func (k FlowKey) Src() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(k.Saddr), portFromNet(k.Sport))
}

func (k FlowKey) Dst() netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(k.Daddr), portFromNet(k.Dport))
}

// NewSrc and NewDst are what a flow rewrites the source and destination to;
// ok is false for a side it leaves alone.
func (f Flow) NewSrc() (netip.AddrPort, bool) {
	return rewritten(f.NewSaddr, f.NewSport)
}

func (f Flow) NewDst() (netip.AddrPort, bool) {
	return rewritten(f.NewDaddr, f.NewDport)
}

func rewritten(addr [16]uint8, port uint16) (netip.AddrPort, bool) {
	if addr == [16]uint8{} {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addrFrom16(addr), portFromNet(port)), true
}

// NewNodeConfig is the node's SNAT configuration; an invalid address leaves
// that family without SNAT (such flows to remote backends are dropped).
func NewNodeConfig(snat4, snat6 netip.Addr, portMin, portMax uint16) NodeConfig {
	c := NodeConfig{SnatPortMin: portMin, SnatPortMax: portMax}
	if snat4.IsValid() {
		c.SnatAddr4 = addrTo16(snat4)
	}
	if snat6.IsValid() {
		c.SnatAddr6 = addrTo16(snat6)
	}
	return c
}

// NewSourceRangeKey is the source-ranges key letting prefix reach the
// frontends of serviceID. An IPv4 prefix is stored IPv4-mapped, so it
// covers 96 more bits.
func NewSourceRangeKey(serviceID uint32, prefix netip.Prefix) SourceRangeKey {
	bits := prefix.Bits()
	if prefix.Addr().Is4() {
		bits += 96
	}
	var id [4]byte
	binary.BigEndian.PutUint32(id[:], serviceID)
	return SourceRangeKey{Prefixlen: uint32(32 + bits), ServiceId: binary.NativeEndian.Uint32(id[:]),
		Addr: addrTo16(prefix.Masked().Addr())}
}

// ServiceID is the service id the key's range belongs to.
func (k SourceRangeKey) ServiceID() uint32 {
	var id [4]byte
	binary.NativeEndian.PutUint32(id[:], k.ServiceId)
	return binary.BigEndian.Uint32(id[:])
}

// Prefix is the client prefix the key lets in, unmapped: an IPv4 prefix is
// IPv4 again, with the 96 bits of the mapping taken off.
func (k SourceRangeKey) Prefix() netip.Prefix {
	addr := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen) - 32
	if addr.Is4In6() && bits >= 96 {
		return netip.PrefixFrom(addr.Unmap(), bits-96)
	}
	return netip.PrefixFrom(addr, bits)
}

// NewFlow is a connection-table value rewriting destinations to dst and,
// when src is valid, sources to src.
func NewFlow(dst, src netip.AddrPort, backendID, serviceID uint32, flags FlowFlags, createdNs uint64) Flow {
	f := Flow{NewDaddr: addrTo16(dst.Addr()), NewDport: portToNet(dst.Port()),
		BackendId: backendID, ServiceId: serviceID, Flags: flags, CreatedNs: createdNs, SeenNs: createdNs}
	if src.IsValid() {
		f.NewSaddr, f.NewSport = addrTo16(src.Addr()), portToNet(src.Port())
	}
	return f
}

// NewRefuseKey is the refuse-trie key of prefix; an IPv4 prefix is stored
// IPv4-mapped, so it covers 96 more bits.
func NewRefuseKey(prefix netip.Prefix) RefuseKey {
	bits := prefix.Bits()
	if prefix.Addr().Is4() {
		bits += 96
	}
	return RefuseKey{Prefixlen: uint32(bits), Addr: addrTo16(prefix.Masked().Addr())}
}

// Prefix is the key's prefix, unmapped as SourceRangeKey.Prefix is.
func (k RefuseKey) Prefix() netip.Prefix {
	addr := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen)
	if addr.Is4In6() && bits >= 96 {
		return netip.PrefixFrom(addr.Unmap(), bits-96)
	}
	return netip.PrefixFrom(addr, bits)
}
