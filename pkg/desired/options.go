package desired

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Options are the agent's settings the builder reads: they come from flags
// and stay fixed while the agent runs, unlike NodeInfo, which follows the
// Node object, so the Builder keeps them from NewBuilderWithOptions on and
// Reset takes only the node. The zero value is the default.
type Options struct {
	// NodePortAddresses narrows the addresses NodePort frontends listen on,
	// with kube-proxy's --nodeport-addresses rules: per family, the node
	// addresses (and the loopback address) inside one of the prefixes of
	// that family; a family without prefixes keeps all its addresses.
	NodePortAddresses []netip.Prefix
	// ExternalIPAllow lists where spec.externalIPs may be; any other
	// externalIP is refused (CVE-2020-8554). Empty: none is allowed.
	ExternalIPAllow []netip.Prefix
	// SNATPorts is the inclusive range of source ports flows to remote
	// backends are SNATed to; zero means DefaultSNATPorts.
	SNATPorts [2]uint16
	// LBAlgorithm is the algorithm of Services without the
	// socklb.io/lb-algorithm annotation; the zero value is Random.
	LBAlgorithm LBAlgorithm
}

// DefaultSNATPorts lies above the default ip_local_port_range
// (32768-60999), so the node's own sockets do not pick these ports.
var DefaultSNATPorts = [2]uint16{61000, 65535}

// Validate reports what the builder cannot use.
func (o Options) Validate() error {
	var errs []error
	for _, list := range []struct {
		name     string
		prefixes []netip.Prefix
	}{{"nodePortAddresses", o.NodePortAddresses}, {"externalIPAllow", o.ExternalIPAllow}} {
		for _, p := range list.prefixes {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("%s: %s is not a valid prefix", list.name, p))
			}
		}
	}
	if o.SNATPorts != [2]uint16{} && (o.SNATPorts[0] == 0 || o.SNATPorts[0] > o.SNATPorts[1]) {
		errs = append(errs, fmt.Errorf("SNAT ports %d-%d: not a range of ports from 1", o.SNATPorts[0], o.SNATPorts[1]))
	}
	return errors.Join(errs...)
}

func (o Options) snatPorts() [2]uint16 {
	if o.SNATPorts == [2]uint16{} {
		return DefaultSNATPorts
	}
	return o.SNATPorts
}

// nodePortAddrs are the addresses of family is4 the NodePort frontends
// listen on: the node's, then the loopback address, kept when inside
// NodePortAddresses. Like kube-proxy's GetNodeIPs on the host's interfaces,
// whose lo carries 127.0.0.1 and ::1, a prefix list of the family that does
// not hold the loopback address turns the loopback NodePort off.
func (o Options) nodePortAddrs(node NodeInfo, is4 bool) []netip.Addr {
	var prefixes []netip.Prefix
	for _, p := range o.NodePortAddresses {
		if p.Addr().Is4() == is4 {
			prefixes = append(prefixes, p.Masked())
		}
	}
	inside := func(a netip.Addr) bool {
		return len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	var out []netip.Addr
	candidates := make([]netip.Addr, 0, len(node.Addresses)+1)
	for _, a := range node.Addresses {
		candidates = append(candidates, a.Addr)
	}
	if is4 {
		candidates = append(candidates, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	} else {
		candidates = append(candidates, netip.IPv6Loopback())
	}
	for _, a := range candidates {
		if a.Is4() == is4 && inside(a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// externalIPAllowed reports whether --external-ip-allow lets ip in.
func (o Options) externalIPAllowed(ip netip.Addr) bool {
	return slices.ContainsFunc(o.ExternalIPAllow, func(p netip.Prefix) bool { return p.Masked().Contains(ip) })
}

func (o Options) externalIPAllowString() string {
	if len(o.ExternalIPAllow) == 0 {
		return "empty"
	}
	s := make([]string, len(o.ExternalIPAllow))
	for i, p := range o.ExternalIPAllow {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// snatConfig picks the node's SNAT addresses: per family the first
// InternalIP, else the first ExternalIP.
func snatConfig(node NodeInfo, o Options) SNATConfig {
	ports := o.snatPorts()
	c := SNATConfig{PortMin: ports[0], PortMax: ports[1]}
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range node.Addresses {
			if a.Type != typ {
				continue
			}
			if a.Addr.Is4() && !c.Addr4.IsValid() {
				c.Addr4 = a.Addr
			}
			if a.Addr.Is6() && !c.Addr6.IsValid() {
				c.Addr6 = a.Addr
			}
		}
	}
	return c
}

// comparePrefixes orders prefixes by address (IPv4 first), then length.
func comparePrefixes(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
