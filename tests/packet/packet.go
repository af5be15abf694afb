// Package packet builds and reads the packets of the XDP and tc fixture
// tests with gopacket, so no test lays out a header by hand, and checks
// every checksum of a packet a program wrote.
package packet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// MACs of the fixtures: what a program writes in the Ethernet header is
// checked against these, not learnt.
var (
	ClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	NodeMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// TCP flags of a fixture segment.
type TCPFlags struct{ SYN, ACK, FIN, RST, PSH bool }

// Spec describes one packet. Src and Dst carry the family; the zero value of
// the optional fields gives an ordinary, unfragmented packet.
type Spec struct {
	Src, Dst   netip.AddrPort
	Proto      layers.IPProtocol // TCP or UDP
	TCP        TCPFlags
	Payload    []byte
	TTL        uint8 // 64 when zero
	SrcMAC     net.HardwareAddr
	DstMAC     net.HardwareAddr
	IPv4Opts   []layers.IPv4Option
	FragOffset uint16 // IPv4, in 8-byte units
	MoreFrags  bool   // IPv4
}

// Build serializes s with correct lengths and checksums.
func Build(s Spec) ([]byte, error) {
	ls, err := s.layers()
	if err != nil {
		return nil, err
	}
	return serialize(ls...)
}

// MustBuild is Build for fixture tables.
func MustBuild(s Spec) []byte {
	b, err := Build(s)
	if err != nil {
		panic(err)
	}
	return b
}

func (s Spec) layers() ([]gopacket.SerializableLayer, error) {
	if s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return nil, fmt.Errorf("build packet %s -> %s: families differ", s.Src, s.Dst)
	}
	srcMAC, dstMAC := s.SrcMAC, s.DstMAC
	if srcMAC == nil {
		srcMAC = ClientMAC
	}
	if dstMAC == nil {
		dstMAC = NodeMAC
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC}
	var ip gopacket.NetworkLayer
	if s.Src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: s.Proto, SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice(),
			Options: s.IPv4Opts, FragOffset: s.FragOffset}
		if s.MoreFrags {
			ip4.Flags |= layers.IPv4MoreFragments
		}
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: s.Proto, SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice()}
	}
	out := []gopacket.SerializableLayer{eth, ip.(gopacket.SerializableLayer)}
	switch s.Proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Src.Port()), DstPort: layers.TCPPort(s.Dst.Port()),
			SYN: s.TCP.SYN, ACK: s.TCP.ACK, FIN: s.TCP.FIN, RST: s.TCP.RST, PSH: s.TCP.PSH, Window: 65535, Seq: 1000}
		if s.TCP.ACK {
			tcp.Ack = 2000
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		out = append(out, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.Src.Port()), DstPort: layers.UDPPort(s.Dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		out = append(out, udp)
	default:
		return nil, fmt.Errorf("build packet: protocol %v is not TCP or UDP", s.Proto)
	}
	return append(out, gopacket.Payload(s.Payload)), nil
}

// ICMPError builds the ICMP error a router or host at from sends to the
// source of original (a packet Build made): for IPv4 type/code as given
// (3/3 port unreachable, 3/4 fragmentation needed with mtu), for IPv6 type 1
// (destination unreachable, code) or 2 (packet too big, mtu). The quoted
// packet is the original without its Ethernet header, cut to what RFC 792
// quotes (the IP header and 8 bytes) for IPv4 and to 1232 bytes for IPv6.
func ICMPError(from netip.Addr, original []byte, icmpType, code uint8, mtu uint16) ([]byte, error) {
	orig := gopacket.NewPacket(original, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := orig.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return nil, errors.New("build ICMP error: the original has no Ethernet header")
	}
	quoted := eth.Payload
	reply := &layers.Ethernet{SrcMAC: eth.DstMAC, DstMAC: eth.SrcMAC, EthernetType: eth.EthernetType}
	if ip4, ok := orig.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		quoted = quoted[:min(len(quoted), int(ip4.IHL)*4+8)]
		outer := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: from.AsSlice(), DstIP: ip4.SrcIP}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(icmpType, code)}
		if icmpType == layers.ICMPv4TypeDestinationUnreachable && code == layers.ICMPv4CodeFragmentationNeeded {
			icmp.Seq = mtu // the next-hop MTU sits in the low half of the rest-of-header word
		}
		return serialize(reply, outer, icmp, gopacket.Payload(quoted))
	}
	ip6, ok := orig.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if !ok {
		return nil, errors.New("build ICMP error: the original is not IP")
	}
	quoted = quoted[:min(len(quoted), 1232)]
	outer := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: from.AsSlice(), DstIP: ip6.SrcIP}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(icmpType, code)}
	if err := icmp.SetNetworkLayerForChecksum(outer); err != nil {
		return nil, err
	}
	var rest [4]byte
	if icmpType == layers.ICMPv6TypePacketTooBig {
		rest = [4]byte{0, 0, byte(mtu >> 8), byte(mtu)}
	}
	return serialize(reply, outer, icmp, gopacket.Payload(append(rest[:], quoted...)))
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("serialize packet: %w", err)
	}
	return bytes.Clone(buf.Bytes()), nil
}

// Summary is what a fixture compares of a packet: the fields a translation
// may change, and the payload to see that nothing else moved.
type Summary struct {
	SrcMAC, DstMAC string
	Src, Dst       netip.AddrPort
	Proto          layers.IPProtocol
	TTL            uint8
	ICMP           string   // "type/code" of an ICMP packet
	Inner          *Summary // the packet an ICMP error quotes
	Payload        string
}

func (s Summary) String() string {
	var b strings.Builder
	if s.SrcMAC != "" {
		fmt.Fprintf(&b, "%s>%s ", s.SrcMAC, s.DstMAC)
	}
	fmt.Fprintf(&b, "%s %s -> %s ttl=%d", s.Proto, s.Src, s.Dst, s.TTL)
	if s.ICMP != "" {
		fmt.Fprintf(&b, " icmp=%s", s.ICMP)
	}
	if s.Inner != nil {
		fmt.Fprintf(&b, " quoting [%s]", s.Inner)
	}
	if s.Payload != "" {
		fmt.Fprintf(&b, " payload=%q", s.Payload)
	}
	return b.String()
}

// Summarize decodes an Ethernet frame.
func Summarize(frame []byte) (Summary, error) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return Summary{}, fmt.Errorf("decode packet: %w", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return Summary{}, errors.New("decode packet: no Ethernet header")
	}
	s, err := summarizeIP(p)
	if err != nil {
		return Summary{}, err
	}
	s.SrcMAC, s.DstMAC = eth.SrcMAC.String(), eth.DstMAC.String()
	return s, nil
}

func summarizeIP(p gopacket.Packet) (Summary, error) {
	var s Summary
	var src, dst netip.Addr
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst = addrOf(ip.SrcIP), addrOf(ip.DstIP)
		s.Proto, s.TTL = ip.Protocol, ip.TTL
	case *layers.IPv6:
		src, dst = addrOf(ip.SrcIP), addrOf(ip.DstIP)
		s.Proto, s.TTL = ip.NextHeader, ip.HopLimit
	default:
		return Summary{}, errors.New("decode packet: not IPv4 or IPv6")
	}
	var sport, dport uint16
	switch l4 := p.TransportLayer().(type) {
	case *layers.TCP:
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.UDP:
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	}
	s.Src, s.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	if icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		s.ICMP = fmt.Sprintf("%d/%d", icmp.TypeCode.Type(), icmp.TypeCode.Code())
		if inner, err := summarizeQuoted(icmp.Payload, layers.LayerTypeIPv4); err == nil {
			s.Inner = &inner
		}
		return s, nil
	}
	if icmp, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		s.ICMP = fmt.Sprintf("%d/%d", icmp.TypeCode.Type(), icmp.TypeCode.Code())
		if len(icmp.Payload) > 4 {
			if inner, err := summarizeQuoted(icmp.Payload[4:], layers.LayerTypeIPv6); err == nil {
				s.Inner = &inner
			}
		}
		return s, nil
	}
	if app := p.ApplicationLayer(); app != nil {
		s.Payload = string(app.Payload())
	}
	return s, nil
}

// summarizeQuoted reads the (truncated) packet an ICMP error quotes.
func summarizeQuoted(b []byte, first gopacket.LayerType) (Summary, error) {
	p := gopacket.NewPacket(b, first, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
	s, err := summarizeIP(p)
	if err != nil {
		return Summary{}, err
	}
	// A quoted TCP header is cut to 8 bytes: gopacket gives up on it, but
	// the ports are in those 8 bytes.
	if s.Src.Port() == 0 && s.Dst.Port() == 0 {
		if net := p.NetworkLayer(); net != nil && len(net.LayerPayload()) >= 4 {
			pl := net.LayerPayload()
			s.Src = netip.AddrPortFrom(s.Src.Addr(), uint16(pl[0])<<8|uint16(pl[1]))
			s.Dst = netip.AddrPortFrom(s.Dst.Addr(), uint16(pl[2])<<8|uint16(pl[3]))
		}
	}
	s.Payload = ""
	return s, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
