package packet

import (
	"errors"
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// VerifyChecksums recomputes every checksum of an Ethernet frame (the IPv4
// header, TCP, UDP, ICMPv4 and ICMPv6, and the IPv4 header an ICMP error
// quotes) and says which one is wrong. gopacket decodes the frame and
// serializes its layers again with ComputeChecksums; a field that comes out
// different is a bug in the program that wrote it.
func VerifyChecksums(frame []byte) error {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return fmt.Errorf("decode packet: %w", el.Error())
	}
	var errs []error
	net := p.NetworkLayer()
	if ip4, ok := net.(*layers.IPv4); ok {
		errs = append(errs, checkIPv4Header(ip4, "IPv4 header"))
	}
	switch l := p.TransportLayer().(type) {
	case *layers.TCP:
		want := l.Checksum
		if err := l.SetNetworkLayerForChecksum(net); err != nil {
			return err
		}
		got, err := recompute(l, l.Payload, func() uint16 { return l.Checksum })
		errs = append(errs, compare("TCP", want, got, err))
	case *layers.UDP:
		want := l.Checksum
		if err := l.SetNetworkLayerForChecksum(net); err != nil {
			return err
		}
		got, err := recompute(l, l.Payload, func() uint16 { return l.Checksum })
		if want == 0 && net.LayerType() == layers.LayerTypeIPv4 {
			break // no checksum: allowed for UDP over IPv4
		}
		errs = append(errs, compare("UDP", want, got, err))
	}
	if icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		want := icmp.Checksum
		got, err := recompute(icmp, icmp.Payload, func() uint16 { return icmp.Checksum })
		errs = append(errs, compare("ICMPv4", want, got, err))
		inner := gopacket.NewPacket(icmp.Payload, layers.LayerTypeIPv4, gopacket.Default)
		if ip4, ok := inner.NetworkLayer().(*layers.IPv4); ok {
			errs = append(errs, checkIPv4Header(ip4, "quoted IPv4 header"))
		}
	}
	if icmp, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		want := icmp.Checksum
		if err := icmp.SetNetworkLayerForChecksum(net); err != nil {
			return err
		}
		got, err := recompute(icmp, icmp.Payload, func() uint16 { return icmp.Checksum })
		errs = append(errs, compare("ICMPv6", want, got, err))
	}
	return errors.Join(errs...)
}

func checkIPv4Header(ip4 *layers.IPv4, what string) error {
	want := ip4.Checksum
	got, err := recompute(ip4, nil, func() uint16 { return ip4.Checksum })
	return compare(what, want, got, err)
}

// recompute serializes l over payload with ComputeChecksums and returns the
// checksum field it then holds.
func recompute(l gopacket.SerializableLayer, payload []byte, field func() uint16) (uint16, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, l, gopacket.Payload(payload)); err != nil {
		return 0, err
	}
	return field(), nil
}

func compare(what string, want, got uint16, err error) error {
	if err != nil {
		return fmt.Errorf("recompute the %s checksum: %w", what, err)
	}
	if want != got {
		return fmt.Errorf("%s checksum is 0x%04x, should be 0x%04x", what, want, got)
	}
	return nil
}
