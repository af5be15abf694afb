package desired

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Protocol is a transport protocol; its values are the IPPROTO_ numbers so
// that they can be written into map keys unchanged.
type Protocol uint8

const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Frontend is one virtual address:port a client connects to. Addr is
// unmapped: an IPv4 address is 4 bytes, never an IPv4-mapped IPv6 one, so
// that equal frontends compare equal.
type Frontend struct {
	Addr  netip.Addr
	Port  uint16
	Proto Protocol
}

// String reads like "10.96.0.10:80/TCP" or "[fd00::10]:80/UDP".
func (f Frontend) String() string {
	return netip.AddrPortFrom(f.Addr, f.Port).String() + "/" + f.Proto.String()
}

// Compare orders frontends by family (IPv4 first), address, port, protocol.
func (f Frontend) Compare(o Frontend) int {
	if c := f.Addr.Compare(o.Addr); c != 0 { // Compare puts IPv4 before IPv6
		return c
	}
	if f.Port != o.Port {
		return int(f.Port) - int(o.Port)
	}
	return int(f.Proto) - int(o.Proto)
}

// FrontendKind says how a frontend is reached, which decides the datapath
// flags of its service entry.
type FrontendKind uint8

// Zero stays invalid so that a forgotten Kind is visible.
const (
	// ClusterIP: a clusterIP:port, reached by clients on the node only.
	ClusterIP FrontendKind = iota + 1
	// NodePort: a node address (or loopback):nodePort. XDP serves it to
	// outside clients, the socket hooks to clients on the node.
	NodePort
	// LoadBalancer: a status.loadBalancer.ingress IP:port.
	LoadBalancer
	// ExternalIP: a spec.externalIPs IP:port that --external-ip-allow lets in.
	ExternalIP
)

func (k FrontendKind) String() string {
	switch k {
	case ClusterIP:
		return "ClusterIP"
	case NodePort:
		return "NodePort"
	case LoadBalancer:
		return "LoadBalancer"
	case ExternalIP:
		return "ExternalIP"
	}
	return fmt.Sprintf("FrontendKind(%d)", uint8(k))
}

// Backend is one endpoint address a frontend translates to. It is
// comparable, so the syncer can use it as a map key when it assigns ids.
type Backend struct {
	Addr  netip.Addr
	Port  uint16
	Proto Protocol
	// Local says the endpoint runs on this node (its nodeName is the
	// node's): the north-south datapath delivers to it without SNAT. It is
	// part of the identity because it is a fact about the address on this
	// node, fixed while the endpoint lives; an endpoint whose nodeName
	// changes is a different backend, and gets a new entry, so a flow
	// translated for the old locality re-picks instead of being delivered
	// the wrong way. CategorizeEndpoints sets it.
	Local bool
}

// String reads like "10.244.0.2:8080/TCP".
func (b Backend) String() string {
	return netip.AddrPortFrom(b.Addr, b.Port).String() + "/" + b.Proto.String()
}

// Compare orders backends by address, port, protocol.
func (b Backend) Compare(o Backend) int {
	if c := b.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	if b.Port != o.Port {
		return int(b.Port) - int(o.Port)
	}
	if b.Proto != o.Proto {
		return int(b.Proto) - int(o.Proto)
	}
	switch {
	case b.Local == o.Local:
		return 0
	case o.Local:
		return -1
	}
	return 1
}

// ServicePortName names the Service port a frontend belongs to.
type ServicePortName struct {
	Namespace, Name string
	Port            string // the Service port's name, "" when unnamed
}

// ref is the Service the port belongs to.
func (n ServicePortName) ref() ServiceRef { return ServiceRef{Namespace: n.Namespace, Name: n.Name} }

// String reads like "default/nginx:http", or "default/nginx" for an unnamed port.
func (n ServicePortName) String() string {
	if n.Port == "" {
		return n.Namespace + "/" + n.Name
	}
	return n.Namespace + "/" + n.Name + ":" + n.Port
}

// BackendSet is the backends one view of a frontend translates to.
type BackendSet struct {
	// Active holds the ready endpoints, sorted by address, then port.
	Active []Backend
	// Terminating holds endpoints that are serving and terminating but not
	// ready, sorted. The datapath uses them only when Active is empty, so
	// that connections keep working while a rollout drains the last pods.
	Terminating []Backend
}

// Equal reports whether two sets hold the same backends in the same order.
func (s BackendSet) Equal(o BackendSet) bool {
	return slices.Equal(s.Active, o.Active) && slices.Equal(s.Terminating, o.Terminating)
}

// FrontendEntry is what one frontend translates to: the Service port it
// belongs to and its backends.
type FrontendEntry struct {
	Frontend Frontend
	Name     ServicePortName
	Kind     FrontendKind
	// BackendSet is what every client is sent to, or, when Internal is set,
	// what clients from outside the node are sent to (the datapath's default
	// scope).
	BackendSet
	// Internal, when set, is the set for clients on the node (the socket
	// hooks' internal scope): the internal and external traffic policies
	// then select different backends.
	Internal *BackendSet
	// ExternalLocal is externalTrafficPolicy: Local on a NodePort,
	// LoadBalancer or ExternalIP frontend: outside clients keep their
	// address and reach only node-local endpoints (BackendSet), or are
	// dropped when there is none.
	ExternalLocal bool
	// InternalLocal is internalTrafficPolicy: Local on a ClusterIP
	// frontend: BackendSet holds only this node's endpoints, and a client
	// is refused when there is none.
	InternalLocal bool
	// AffinityTimeout is, for sessionAffinity: ClientIP, how long in
	// seconds a client keeps the backend it was last sent to; 0: no
	// affinity.
	AffinityTimeout uint32
	// SourceRanges are the loadBalancerSourceRanges of the frontend's family
	// (LoadBalancer frontends only), masked, without duplicates, sorted:
	// outside clients from elsewhere are dropped. Empty: every client.
	SourceRanges []netip.Prefix
	// Maglev: outside clients' new flows pick a backend by Maglev
	// consistent hashing (NodePort, LoadBalancer and ExternalIP frontends
	// of a Service whose algorithm is Maglev).
	Maglev bool
}

// State is the whole desired state, keyed exactly like the datapath's
// frontends.
type State struct {
	Frontends map[Frontend]*FrontendEntry
	// Node is the node the state was built for: which endpoints are local,
	// and which hints are this node's, depend on it.
	Node NodeInfo
	// HealthChecks holds, per Service of type LoadBalancer with
	// externalTrafficPolicy: Local and a healthCheckNodePort, what its
	// health check answers (kube-proxy's rule, apiservice.NeedsHealthCheck).
	HealthChecks map[ServiceRef]HealthCheck
	// SNAT is where flows to backends on other nodes are sent from.
	SNAT SNATConfig
	// ServiceCIDRs are the ranges ClusterIPs are allocated from (the
	// ServiceCIDR objects in a cluster, --service-cidr in standalone
	// mode), masked, sorted, without duplicates: a connect to an address
	// in one that no Service holds is refused at once.
	ServiceCIDRs []netip.Prefix
}

// HealthCheck is one Service's health check.
type HealthCheck struct {
	Port uint16 // spec.healthCheckNodePort
	// LocalEndpoints counts the ready endpoints on this node, each address
	// once however many ports and slices list it, as kube-proxy counts them.
	LocalEndpoints int
}

// SNATConfig is the node's source NAT for the north-south datapath: the
// first InternalIP of each family, else the first ExternalIP, and the port
// range (Options.SNATPorts). An invalid address leaves that family without
// SNAT: its flows to remote backends cannot be sent.
type SNATConfig struct {
	Addr4, Addr6     netip.Addr
	PortMin, PortMax uint16
}

// Sorted returns the services ordered by frontend (family, address, port,
// protocol), for output that does not change from run to run.
func (s *State) Sorted() []*FrontendEntry {
	out := make([]*FrontendEntry, 0, len(s.Frontends))
	for _, svc := range s.Frontends {
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Frontend.Compare(out[j].Frontend) < 0 })
	return out
}

// NodeInfo is what the builder knows about the node it runs on: the
// categorisation reads Name (local endpoints, node hints) and Zone (zone
// hints); the NodePort frontends and the SNAT source read Addresses. In a cluster it comes
// from the Node object, in standalone mode from the agent's flags.
type NodeInfo struct {
	Name string
	// Zone is the node's topology.kubernetes.io/zone label, "" when unset.
	Zone string
	// Addresses are the node's InternalIP and ExternalIP addresses in the
	// order the Node lists them, without duplicates.
	Addresses []NodeAddress
}

// NodeAddress is one address of the node and its kind.
type NodeAddress struct {
	Type corev1.NodeAddressType // corev1.NodeInternalIP or corev1.NodeExternalIP
	Addr netip.Addr
}

// Equal reports whether two NodeInfos would build the same state.
func (n NodeInfo) Equal(o NodeInfo) bool {
	return n.Name == o.Name && n.Zone == o.Zone && slices.Equal(n.Addresses, o.Addresses)
}
