package desired

import (
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// Endpoint is one endpoint of a Service port as the categorisation reads it:
// the Backend it translates to and where it runs. Backend stays the
// comparable identity the syncer keys ids by; of the locality beside it
// only whether it runs on this node enters the State (Backend.Local, set by
// CategorizeEndpoints), so a change of a zone or hint alone rewrites no map
// entry unless it changes a set.
type Endpoint struct {
	Backend
	NodeName string // the endpoint's nodeName, "" when unset
	Zone     string // the endpoint's zone, "" when unset
	Hints    EndpointHints
	// The conditions with kube-proxy's defaults applied (its
	// EndpointSliceCache): ready nil means ready, serving nil means serving
	// (not the value of ready, as the API documents it: kube-proxy reads it
	// so, and the EndpointSlice controller always sets it), terminating nil
	// means false. publishNotReadyAddresses is not read here: the
	// EndpointSlice controller already wrote ready=true for such a
	// Service's endpoints, and kube-proxy too reads only the slice.
	Ready, Serving, Terminating bool
}

// EndpointHints are the endpoint's topology hints: the zones and nodes the
// EndpointSlice controller meant it for.
type EndpointHints struct {
	ForZones []string
	ForNodes []string
}

// IsLocal reports whether the endpoint runs on node.
func (e Endpoint) IsLocal(node NodeInfo) bool {
	return e.NodeName != "" && e.NodeName == node.Name
}

// servingTerminating is the fallback kube-proxy uses when nothing is ready.
func (e Endpoint) servingTerminating() bool {
	return !e.Ready && e.Serving && e.Terminating
}

// usability orders endpoints for merging duplicates: an endpoint listed in
// several slices counts once, with its most usable conditions.
func (e Endpoint) usability() int {
	switch {
	case e.Ready:
		return 2
	case e.servingTerminating():
		return 1
	}
	return 0
}

// endpointOf reads one endpoint of a slice; addr is its first address,
// already parsed. The backend's port and protocol are left for the Service
// port to fill in.
func endpointOf(ep discoveryv1.Endpoint, addr netip.Addr) Endpoint {
	c := ep.Conditions
	ready := c.Ready == nil || *c.Ready
	serving := c.Serving == nil || *c.Serving
	out := Endpoint{
		Backend:     Backend{Addr: addr},
		Ready:       ready,
		Serving:     serving,
		Terminating: c.Terminating != nil && *c.Terminating,
	}
	if ep.NodeName != nil {
		out.NodeName = *ep.NodeName
	}
	if ep.Zone != nil {
		out.Zone = *ep.Zone
	}
	if h := ep.Hints; h != nil {
		for _, z := range h.ForZones {
			out.Hints.ForZones = append(out.Hints.ForZones, z.Name)
		}
		for _, n := range h.ForNodes {
			out.Hints.ForNodes = append(out.Hints.ForNodes, n.Name)
		}
	}
	return out
}

// Equal reports whether two endpoints read the same.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.Backend == o.Backend && e.NodeName == o.NodeName && e.Zone == o.Zone &&
		e.Ready == o.Ready && e.Serving == o.Serving && e.Terminating == o.Terminating &&
		slices.Equal(e.Hints.ForZones, o.Hints.ForZones) && slices.Equal(e.Hints.ForNodes, o.Hints.ForNodes)
}
