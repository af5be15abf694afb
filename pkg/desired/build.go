package desired

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ObjectError is one problem with one object. Build reports it and builds
// everything else, so that one bad object never takes other Services down.
type ObjectError struct {
	Kind      string // "Service" or "EndpointSlice"
	Namespace string
	Name      string
	Err       error
}

// Object names the object like "Service default/nginx", for log fields.
func (e *ObjectError) Object() string { return e.Kind + " " + e.Namespace + "/" + e.Name }

func (e *ObjectError) Error() string { return e.Object() + ": " + e.Err.Error() }

func (e *ObjectError) Unwrap() error { return e.Err }

// Build computes the desired state. It never fails as a whole: each problem
// with one object (a malformed EndpointSlice, an address of the wrong family,
// an invalid ClusterIP, two Services claiming one frontend, an unsupported
// protocol such as SCTP) becomes one *ObjectError in the returned slice, and
// everything else is still built. The result and the order of the errors do
// not depend on the order of the inputs.
//
// node is not read yet: topology aware routing and local traffic policies
// will read it, and callers already pass it so that those need no API change.
func Build(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, node NodeInfo) (*State, []error) {
	index := indexEndpointSlices(endpointSlices)
	inc := NewBuilder(node)
	for _, svc := range services {
		if svc == nil {
			continue
		}
		ref := ServiceRef{Namespace: svc.Namespace, Name: svc.Name}
		inc.Update(ref, svc, index[ref])
	}
	return inc.State(), inc.Errors()
}

// ServiceRef names a Service.
type ServiceRef struct{ Namespace, Name string }

func (r ServiceRef) String() string { return r.Namespace + "/" + r.Name }

func (r ServiceRef) compare(o ServiceRef) int {
	return cmp.Or(cmp.Compare(r.Namespace, o.Namespace), cmp.Compare(r.Name, o.Name))
}

// SliceServiceRef is the Service an EndpointSlice belongs to, from its
// kubernetes.io/service-name label; ok is false for a slice without one.
func SliceServiceRef(s *discoveryv1.EndpointSlice) (ref ServiceRef, ok bool) {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return ServiceRef{}, false
	}
	return ServiceRef{Namespace: s.Namespace, Name: name}, true
}

// indexEndpointSlices groups slices by the Service they belong to.
func indexEndpointSlices(all []*discoveryv1.EndpointSlice) map[ServiceRef][]*discoveryv1.EndpointSlice {
	index := map[ServiceRef][]*discoveryv1.EndpointSlice{}
	for _, s := range all {
		if s == nil {
			continue
		}
		if ref, ok := SliceServiceRef(s); ok {
			index[ref] = append(index[ref], s)
		}
	}
	return index
}

// serviceBuild is what one Service asks for: a Service entry for each
// frontend it would own, and its problems. Whether it does own each frontend
// is decided across Services, by Builder.
type serviceBuild struct {
	ref       ServiceRef
	frontends []*FrontendEntry
	errs      []error
	// parsed holds each EndpointSlice validated once, so that its errors are
	// reported once however many frontends read it.
	parsed map[*discoveryv1.EndpointSlice]*parsedSlice
	slices []*discoveryv1.EndpointSlice
}

// buildService is the pure function from one Service and its slices to the
// frontends it asks for.
func buildService(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) *serviceBuild {
	b := &serviceBuild{
		ref:    ServiceRef{Namespace: svc.Namespace, Name: svc.Name},
		parsed: map[*discoveryv1.EndpointSlice]*parsedSlice{},
		slices: slices.DeleteFunc(slices.Clone(endpointSlices), func(s *discoveryv1.EndpointSlice) bool { return s == nil }),
	}
	// Sorted by name so that errors come out in a stable order.
	slices.SortFunc(b.slices, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	b.addService(svc)
	return b
}

func (b *serviceBuild) serviceError(err error) {
	b.errs = append(b.errs, &ObjectError{Kind: "Service", Namespace: b.ref.Namespace, Name: b.ref.Name, Err: err})
}

func (b *serviceBuild) sliceError(s *discoveryv1.EndpointSlice, err error) {
	b.errs = append(b.errs, &ObjectError{Kind: "EndpointSlice", Namespace: s.Namespace, Name: s.Name, Err: err})
}

type servicePort struct {
	name  string
	port  uint16
	proto Protocol
}

func (b *serviceBuild) addService(svc *corev1.Service) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return // a DNS alias: nothing to translate
	}
	ipStrings := svc.Spec.ClusterIPs
	if len(ipStrings) == 0 && svc.Spec.ClusterIP != "" {
		ipStrings = []string{svc.Spec.ClusterIP}
	}
	if len(ipStrings) == 0 || ipStrings[0] == corev1.ClusterIPNone {
		return // headless, or not allocated yet: clients resolve pod addresses themselves
	}

	var addrs []netip.Addr
	for _, s := range ipStrings {
		addr, err := parseAddr(s)
		if err != nil {
			b.serviceError(fmt.Errorf("parse clusterIP: %w", err))
			continue
		}
		addrs = append(addrs, addr)
	}

	var ports []servicePort
	for _, p := range svc.Spec.Ports {
		proto, err := parseProtocol(p.Protocol)
		if err != nil {
			b.serviceError(fmt.Errorf("port %q (%d/%s): %w", p.Name, p.Port, p.Protocol, err))
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			b.serviceError(fmt.Errorf("port %q: number %d is outside 1-65535", p.Name, p.Port))
			continue
		}
		ports = append(ports, servicePort{name: p.Name, port: uint16(p.Port), proto: proto})
	}

	claimed := map[Frontend]bool{}
	for _, addr := range addrs {
		for _, p := range ports {
			fe := Frontend{Addr: addr, Port: p.port, Proto: p.proto}
			if claimed[fe] {
				b.serviceError(fmt.Errorf("claim frontend %s for port %q: another port of this Service has it", fe, p.name))
				continue
			}
			claimed[fe] = true
			active, terminating := b.backends(addressTypeOf(addr), p)
			b.frontends = append(b.frontends, &FrontendEntry{
				Frontend:   fe,
				Name:       ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.name},
				Kind:       ClusterIP,
				BackendSet: BackendSet{Active: active, Terminating: terminating},
			})
		}
	}
}

// backends merges every slice of one Service and address family into the
// sorted Active and Terminating sets of one Service port. An endpoint listed
// in several slices counts once, with its most usable condition, so that the
// result does not depend on which slice was seen first.
func (b *serviceBuild) backends(family discoveryv1.AddressType, sp servicePort) (active, terminating []Backend) {
	best := map[Backend]usability{}
	for _, slice := range b.slices {
		parsed := b.parse(slice)
		if parsed.addressType != family {
			continue
		}
		for _, port := range parsed.ports {
			// Names equal and protocols equal is how a named targetPort is
			// resolved: the endpointslice controller already wrote the number.
			if port.name != sp.name || port.proto != sp.proto {
				continue
			}
			for _, ep := range parsed.endpoints {
				be := Backend{Addr: ep.addr, Port: port.port, Proto: port.proto}
				best[be] = max(best[be], ep.use)
			}
		}
	}
	for be, use := range best {
		switch use {
		case useActive:
			active = append(active, be)
		case useTerminating:
			terminating = append(terminating, be)
		}
	}
	slices.SortFunc(active, Backend.Compare)
	slices.SortFunc(terminating, Backend.Compare)
	return active, terminating
}

// usability orders endpoint conditions from least to most usable.
type usability uint8

const (
	useNone usability = iota
	useTerminating
	useActive
)

// usabilityOf applies the EndpointSlice API's defaults: ready nil means
// ready, serving nil means the value of ready, terminating nil means false.
func usabilityOf(c discoveryv1.EndpointConditions) usability {
	ready := c.Ready == nil || *c.Ready
	serving := ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case ready:
		return useActive
	case serving && terminating:
		return useTerminating
	}
	return useNone
}

type slicePort struct {
	name  string
	port  uint16
	proto Protocol
}

type sliceEndpoint struct {
	addr netip.Addr
	use  usability
}

// parsedSlice is the usable part of one EndpointSlice.
type parsedSlice struct {
	addressType discoveryv1.AddressType
	ports       []slicePort
	endpoints   []sliceEndpoint // only those that serve in some way
}

func (b *serviceBuild) parse(s *discoveryv1.EndpointSlice) *parsedSlice {
	if p, ok := b.parsed[s]; ok {
		return p
	}
	p := &parsedSlice{addressType: s.AddressType}
	b.parsed[s] = p
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	case discoveryv1.AddressTypeFQDN:
		return p // names are for DNS; there is no address to translate to
	default:
		b.sliceError(s, fmt.Errorf("read addressType: %q is not IPv4, IPv6 or FQDN", s.AddressType))
		return p
	}

	for _, port := range s.Ports {
		if port.Port == nil {
			continue // the API's way of saying "all ports", which a socket translation cannot serve
		}
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		proto := corev1.ProtocolTCP // the API's default
		if port.Protocol != nil {
			proto = *port.Protocol
		}
		parsedProto, err := parseProtocol(proto)
		if err != nil {
			if proto != corev1.ProtocolSCTP { // SCTP is reported once, on the Service
				b.sliceError(s, fmt.Errorf("port %q: %w", name, err))
			}
			continue
		}
		if *port.Port < 1 || *port.Port > 65535 {
			b.sliceError(s, fmt.Errorf("port %q: number %d is outside 1-65535", name, *port.Port))
			continue
		}
		p.ports = append(p.ports, slicePort{name: name, port: uint16(*port.Port), proto: parsedProto})
	}

	for i, ep := range s.Endpoints {
		if len(ep.Addresses) == 0 {
			b.sliceError(s, fmt.Errorf("endpoint %d: no addresses", i))
			continue
		}
		// Like kube-proxy, use only the first address: the API declares
		// all addresses of one endpoint fungible.
		addr, err := parseAddr(ep.Addresses[0])
		if err != nil {
			b.sliceError(s, fmt.Errorf("endpoint %d: %w", i, err))
			continue
		}
		if got := addressTypeOf(addr); got != s.AddressType {
			b.sliceError(s, fmt.Errorf("endpoint %d: address %s is %s in a slice of addressType %s", i, addr, got, s.AddressType))
			continue
		}
		if use := usabilityOf(ep.Conditions); use != useNone {
			p.endpoints = append(p.endpoints, sliceEndpoint{addr: addr, use: use})
		}
	}
	return p
}

// parseAddr accepts the addresses a map key can hold: no zone, and no
// IPv4-mapped IPv6 form, whose family would be ambiguous (the API rejects
// it too).
func parseAddr(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	if addr.Is4In6() {
		return netip.Addr{}, fmt.Errorf("address %q is IPv4-mapped IPv6, whose family is ambiguous", s)
	}
	return addr, nil
}

func addressTypeOf(addr netip.Addr) discoveryv1.AddressType {
	if addr.Is4() {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}

// parseProtocol applies the API's default (TCP) and refuses what the
// datapath does not translate: it handles TCP and UDP only.
func parseProtocol(p corev1.Protocol) (Protocol, error) {
	switch p {
	case "", corev1.ProtocolTCP:
		return TCP, nil
	case corev1.ProtocolUDP:
		return UDP, nil
	case corev1.ProtocolSCTP:
		return 0, fmt.Errorf("protocol SCTP is not supported")
	}
	return 0, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", p)
}
