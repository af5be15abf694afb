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

const (
	ClusterIP FrontendKind = iota + 1
	// NodePort, ExternalIP and LoadBalancer follow; zero stays invalid so a
	// forgotten Kind is visible.
)

func (k FrontendKind) String() string {
	switch k {
	case ClusterIP:
		return "ClusterIP"
	}
	return fmt.Sprintf("FrontendKind(%d)", uint8(k))
}

// Backend is one endpoint address a frontend translates to. It is
// comparable, so the syncer can use it as a map key when it assigns ids.
type Backend struct {
	Addr  netip.Addr
	Port  uint16
	Proto Protocol
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
	return int(b.Proto) - int(o.Proto)
}

// ServicePortName names the Service port a frontend belongs to.
type ServicePortName struct {
	Namespace, Name string
	Port            string // the Service port's name, "" when unnamed
}

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
}

// State is the whole desired state, keyed exactly like the datapath's
// frontends.
type State struct {
	Frontends map[Frontend]*FrontendEntry
	// Node is the node the state was built for: which endpoints are local,
	// and which hints are this node's, depend on it.
	Node NodeInfo
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
// hints); the NodePort frontends will read Addresses. In a cluster it comes
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
