package desired

import (
	"fmt"
	"net/netip"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// ParseAddr is the one parser of the addresses socklb translates to and
// from: ClusterIPs, endpoint addresses (from EndpointSlices and mirrored
// Endpoints) and node addresses. It accepts what a map key can hold: no
// zone, which means nothing off the node that wrote it, and no IPv4-mapped
// IPv6 form, whose family would be ambiguous (the API rejects it too).
func ParseAddr(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err // it reads ParseAddr("..."): cause
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	if addr.Is4In6() {
		return netip.Addr{}, fmt.Errorf("address %q is IPv4-mapped IPv6, whose family is ambiguous", s)
	}
	return addr, nil
}

// AddressTypeOf is the EndpointSlice address type an address belongs in.
func AddressTypeOf(addr netip.Addr) discoveryv1.AddressType {
	if addr.Is4() {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}
