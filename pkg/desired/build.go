package desired

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

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
	// Reason, when set, is the reason of the Warning Event the agent
	// records on the object in a cluster (ReasonExternalIPRefused); errors
	// without one are only logged.
	Reason string
}

const (
	// ReasonExternalIPRefused marks the error of an externalIP outside
	// Options.ExternalIPAllow.
	ReasonExternalIPRefused = "ExternalIPRefused"
	// ReasonFrontendConflict marks the error of a Service left out of a
	// frontend another Service holds.
	ReasonFrontendConflict = "FrontendConflict"
)

// Object names the object like "Service default/nginx", for log fields.
func (e *ObjectError) Object() string { return e.Kind + " " + e.Namespace + "/" + e.Name }

func (e *ObjectError) Error() string { return e.Object() + ": " + e.Err.Error() }

func (e *ObjectError) Unwrap() error { return e.Err }

// Build computes the desired state for the node described by node. It never
// fails as a whole: each problem with one object (a malformed EndpointSlice,
// an address of the wrong family, an invalid ClusterIP, two Services claiming
// one frontend, an unsupported protocol such as SCTP) becomes one
// *ObjectError in the returned slice, and everything else is still built.
// The result and the order of the errors do not depend on the order of the
// inputs. It is Builder.Reset on a new Builder, the path the agent's full
// sync takes too.
func Build(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, node NodeInfo) (*State, []error) {
	return BuildWithOptions(services, endpointSlices, node, Options{})
}

// BuildWithOptions is Build with the agent's options.
func BuildWithOptions(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, node NodeInfo, opts Options) (*State, []error) {
	x := NewBuilderWithOptions(node, opts)
	x.Reset(node, services, endpointSlices)
	return x.State(), x.Errors()
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
	created   time.Time // metadata.creationTimestamp: it orders new claims
	frontends []*FrontendEntry
	errs      []error
	// parsed holds each EndpointSlice validated once, so that its errors are
	// reported once however many frontends read it; it and slices live only
	// while the build runs.
	parsed map[*discoveryv1.EndpointSlice]*parsedSlice
	slices []*discoveryv1.EndpointSlice
	// health is the Service's health check, nil when it needs none.
	health *HealthCheck
}

// buildService is the pure function from what the builder reads of one
// Service, its slices and the node to the frontends the Service asks for.
func buildService(svc ServiceView, endpointSlices []*discoveryv1.EndpointSlice, node NodeInfo, opts Options) *serviceBuild {
	b := &serviceBuild{
		ref:     svc.Ref,
		created: svc.Created,
		parsed:  map[*discoveryv1.EndpointSlice]*parsedSlice{},
		slices:  slices.DeleteFunc(slices.Clone(endpointSlices), func(s *discoveryv1.EndpointSlice) bool { return s == nil }),
	}
	// Sorted by name so that errors come out in a stable order.
	slices.SortFunc(b.slices, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	b.addService(svc, node, opts)
	// The build keeps what it made, not what it read: a full build from a
	// source that decodes one Service at a time then holds no object.
	b.slices, b.parsed = nil, nil
	return b
}

func (b *serviceBuild) serviceError(err error) {
	b.errs = append(b.errs, &ObjectError{Kind: "Service", Namespace: b.ref.Namespace, Name: b.ref.Name, Err: err})
}

func (b *serviceBuild) sliceError(s *discoveryv1.EndpointSlice, err error) {
	b.errs = append(b.errs, &ObjectError{Kind: "EndpointSlice", Namespace: s.Namespace, Name: s.Name, Err: err})
}

type servicePort struct {
	name     string
	port     uint16
	proto    Protocol
	nodePort uint16 // 0: none
}

// addService builds, per family of the Service's clusterIPs and per port,
// the ClusterIP frontend and, like kube-proxy (which programs a family only
// when the Service has a clusterIP of it), that family's NodePort,
// LoadBalancer and ExternalIP frontends.
func (b *serviceBuild) addService(svc ServiceView, node NodeInfo, opts Options) {
	if svc.Type == corev1.ServiceTypeExternalName {
		return // a DNS alias: nothing to translate
	}
	if len(svc.ClusterIPs) == 0 || svc.ClusterIPs[0] == corev1.ClusterIPNone {
		return // headless, or not allocated yet: clients resolve pod addresses themselves
	}
	addrs := b.clusterIPs(svc.ClusterIPs)
	ports := b.servicePorts(svc.Ports)
	ext := b.readExternal(svc, opts)
	affinity := b.affinityTimeout(svc)
	maglev := b.lbAlgorithm(svc, opts) == Maglev

	claimed := map[Frontend]FrontendKind{}
	seenFamily := map[bool]bool{}
	var localReady map[netip.Addr]bool
	for _, addr := range addrs {
		firstOfFamily := !seenFamily[addr.Is4()]
		seenFamily[addr.Is4()] = true
		for _, p := range ports {
			endpoints := b.endpointsOf(AddressTypeOf(addr), p)
			localReady = addLocalReady(localReady, endpoints, node)
			// kube-proxy follows the hints whenever they allow it: the
			// EndpointSlice controller writes them only for a Service
			// whose trafficDistribution asks (PreferClose, its alias
			// PreferSameZone, PreferSameNode).
			cats := CategorizeEndpoints(endpoints, node, FollowHints)
			name := ServicePortName{Namespace: svc.Ref.Namespace, Name: svc.Ref.Name, Port: p.name}
			b.claim(claimed, p, &FrontendEntry{
				Frontend:        Frontend{Addr: addr, Port: p.port, Proto: p.proto},
				Name:            name,
				Kind:            ClusterIP,
				BackendSet:      clusterIPBackends(cats, svc.InternalPolicyLocal),
				InternalLocal:   svc.InternalPolicyLocal,
				AffinityTimeout: affinity,
			})
			if !firstOfFamily {
				continue // a second clusterIP of one family is invalid; its external frontends are the first's
			}
			for _, e := range ext.frontends(p, addr.Is4(), node, opts) {
				e.Name, e.Maglev = name, maglev
				e.AffinityTimeout = affinity
				ext.chooseBackends(e, cats)
				b.claim(claimed, p, e)
			}
		}
	}
	b.checkPortNames(addrs, ports)
	b.health = b.healthCheck(svc, localReady)
}

// checkPortNames reports each Service port that no EndpointSlice port of
// the Service's families serves, as when a targetPort names a container
// port the pods do not have: its frontends exist but have no backends.
// Slices without endpoints (the controller's placeholder while no pod is
// selected) say nothing about names and are not counted.
func (b *serviceBuild) checkPortNames(addrs []netip.Addr, ports []servicePort) {
	var families []discoveryv1.AddressType
	for _, addr := range addrs {
		families = append(families, AddressTypeOf(addr))
	}
	for _, sp := range ports {
		if have, served := b.slicePortNames(families, sp); !served && have != nil {
			list := "none"
			if len(have) > 0 {
				list = strings.Join(have, ", ")
			}
			b.serviceError(fmt.Errorf("port %q/%s: no EndpointSlice port has this name and protocol (slice ports: %s); the frontend has no backends",
				sp.name, sp.proto, list))
		}
	}
}

// slicePortNames reports whether a slice with endpoints of one of families
// has port sp; when none has, it lists the ports those slices have, sorted
// (nil when there is no such slice, empty when they have no ports).
func (b *serviceBuild) slicePortNames(families []discoveryv1.AddressType, sp servicePort) (have []string, served bool) {
	for _, slice := range b.slices {
		p := b.parse(slice)
		if len(p.endpoints) == 0 || !slices.Contains(families, p.addressType) {
			continue
		}
		if have == nil {
			have = []string{}
		}
		for _, port := range p.ports {
			if port.name == sp.name && port.proto == sp.proto {
				return nil, true
			}
			if name := fmt.Sprintf("%q/%s", port.name, port.proto); !slices.Contains(have, name) {
				have = append(have, name)
			}
		}
	}
	slices.Sort(have)
	return have, false
}

// claim adds e unless another frontend of this Service has its address.
func (b *serviceBuild) claim(claimed map[Frontend]FrontendKind, p servicePort, e *FrontendEntry) {
	fe := e.Frontend
	if kind, ok := claimed[fe]; ok {
		if kind == e.Kind {
			b.serviceError(fmt.Errorf("claim frontend %s for port %q: another port of this Service has it", fe, p.name))
		} else {
			b.serviceError(fmt.Errorf("claim %s frontend %s for port %q: this Service has it as a %s frontend", e.Kind, fe, p.name, kind))
		}
		return
	}
	claimed[fe] = e.Kind
	if err := capFrontend(e); err != nil {
		b.serviceError(err)
	}
	b.frontends = append(b.frontends, e)
}

// clusterIPBackends chooses a ClusterIP frontend's backends among the
// categories by the internal traffic policy: Cluster sends every client to
// the cluster set (narrowed by the hints), Local to this node's endpoints
// only, none at all when there is none (the datapath refuses the connect;
// kube-proxy drops it). Only ClusterIP traffic is internal: a client on the
// node reaching a NodePort or an external address follows the external
// policy, as in kube-proxy.
func clusterIPBackends(c EndpointCategories, internalLocal bool) BackendSet {
	if internalLocal {
		return c.Local
	}
	return c.Cluster
}

// The API's sessionAffinityConfig.clientIP.timeoutSeconds: its default and
// its maximum.
const (
	DefaultAffinityTimeout = 10800
	MaxAffinityTimeout     = 86400
)

// affinityTimeout is the Service's affinity timeout in seconds, 0 without
// sessionAffinity: ClientIP. One outside the API's 1-86400 is reported
// and the default used.
func (b *serviceBuild) affinityTimeout(svc ServiceView) uint32 {
	switch t := svc.AffinityTimeout; {
	case !svc.AffinityClientIP:
		return 0
	case t == 0:
		return DefaultAffinityTimeout
	case t < 0 || t > MaxAffinityTimeout:
		b.serviceError(fmt.Errorf("sessionAffinityConfig.clientIP.timeoutSeconds %d is outside 1-%d; using %d",
			t, MaxAffinityTimeout, DefaultAffinityTimeout))
		return DefaultAffinityTimeout
	default:
		return uint32(t)
	}
}

func (b *serviceBuild) clusterIPs(ipStrings []string) []netip.Addr {
	var addrs []netip.Addr
	for _, s := range ipStrings {
		addr, err := ParseAddr(s)
		if err != nil {
			b.serviceError(fmt.Errorf("parse clusterIP: %w", err))
			continue
		}
		addrs = append(addrs, addr)
	}
	return addrs
}

func (b *serviceBuild) servicePorts(views []ServicePortView) []servicePort {
	var ports []servicePort
	for _, p := range views {
		proto, err := parseProtocol(p.Protocol)
		if err != nil {
			b.serviceError(fmt.Errorf("port %q (%d/%s): %w", p.Name, p.Port, p.Protocol, err))
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			b.serviceError(fmt.Errorf("port %q: number %d is outside 1-65535", p.Name, p.Port))
			continue
		}
		sp := servicePort{name: p.Name, port: uint16(p.Port), proto: proto}
		if p.NodePort < 0 || p.NodePort > 65535 {
			b.serviceError(fmt.Errorf("port %q: nodePort %d is outside 1-65535", p.Name, p.NodePort))
		} else {
			sp.nodePort = uint16(p.NodePort)
		}
		ports = append(ports, sp)
	}
	return ports
}

// endpointsOf merges every slice of one Service and address family into the
// endpoints of one Service port, sorted by backend. An endpoint listed in
// several slices counts once, with its most usable conditions (the first
// slice by name wins a tie), so that the result does not depend on the
// order the slices came in.
func (b *serviceBuild) endpointsOf(family discoveryv1.AddressType, sp servicePort) []Endpoint {
	var parsed []*parsedSlice
	n := 0
	for _, slice := range b.slices {
		if p := b.parse(slice); p.addressType == family {
			parsed = append(parsed, p)
			n += len(p.endpoints)
		}
	}
	out := make([]Endpoint, 0, n) // one port per slice matches, as a rule
	for _, parsed := range parsed {
		for _, port := range parsed.ports {
			// Names equal and protocols equal is how a named targetPort is
			// resolved: the endpointslice controller already wrote the number.
			if port.name != sp.name || port.proto != sp.proto {
				continue
			}
			for _, e := range parsed.endpoints {
				e.Port, e.Proto = port.port, port.proto
				out = append(out, e)
			}
		}
	}
	// Stable, so that among equal backends slice order (by name) decides.
	slices.SortStableFunc(out, func(a, b Endpoint) int { return a.Backend.Compare(b.Backend) })
	return slices.CompactFunc(mostUsableFirst(out), func(a, b Endpoint) bool { return a.Backend == b.Backend })
}

// mostUsableFirst moves, within each run of one backend in sorted, the
// first of its most usable copies to the front of the run, so that
// compacting keeps it.
func mostUsableFirst(sorted []Endpoint) []Endpoint {
	for start := 0; start < len(sorted); {
		end, best := start+1, start
		for ; end < len(sorted) && sorted[end].Backend == sorted[start].Backend; end++ {
			if sorted[end].usability() > sorted[best].usability() {
				best = end
			}
		}
		sorted[start], sorted[best] = sorted[best], sorted[start]
		start = end
	}
	return sorted
}

type slicePort struct {
	name  string
	port  uint16
	proto Protocol
}

// parsedSlice is the usable part of one EndpointSlice.
type parsedSlice struct {
	addressType discoveryv1.AddressType
	ports       []slicePort
	endpoints   []Endpoint // each with its address only: ports come from the Service port
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

	p.endpoints = make([]Endpoint, 0, len(s.Endpoints))
	for i, ep := range s.Endpoints {
		if len(ep.Addresses) == 0 {
			b.sliceError(s, fmt.Errorf("endpoint %d: no addresses", i))
			continue
		}
		// Like kube-proxy, use only the first address: the API declares
		// all addresses of one endpoint fungible.
		addr, err := ParseAddr(ep.Addresses[0])
		if err != nil {
			b.sliceError(s, fmt.Errorf("endpoint %d: %w", i, err))
			continue
		}
		if got := AddressTypeOf(addr); got != s.AddressType {
			b.sliceError(s, fmt.Errorf("endpoint %d: address %s is %s in a slice of addressType %s", i, addr, got, s.AddressType))
			continue
		}
		p.endpoints = append(p.endpoints, endpointOf(ep, addr))
	}
	return p
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
		// The socket hooks and the XDP program translate TCP and UDP
		// only; an SCTP connect leaves the node untranslated.
		return 0, fmt.Errorf("protocol SCTP is not supported: the port is left unprogrammed, the Service's other ports work")
	}
	return 0, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", p)
}
