// Package desired computes what the datapath should hold from Kubernetes
// objects: for every virtual address:port a client may connect to, the
// Service port it belongs to and the backends it translates to.
//
// Build is a pure function of Services, EndpointSlices and facts about the
// node: it touches no kernel and does no I/O, so every rule about which
// frontends exist and which endpoints serve them is covered by table tests.
// The syncer diffs the State against the pinned maps and writes only the
// difference; nothing here knows how the maps are laid out beyond the key
// (Frontend) they share.
//
// Builder keeps the same result up to date one Service at a time, so that
// a change among thousands of Services costs what that Service costs; its
// Reset is the one full build, used by Build and by the agent alike, and a
// test checks that updating one Service at a time agrees with it. The
// builder reads a Service only through its ServiceView, which the change
// tracker compares too.
//
// Each endpoint keeps its node, zone and topology hints (Endpoint), and
// CategorizeEndpoints sorts a Service port's endpoints into the cluster and
// local sets for this node (NodeInfo), as kube-proxy does; the traffic
// policies and topology aware routing choose among those sets. As in
// kube-proxy the hints are always followed where they allow it (the
// EndpointSlice controller writes them for spec.trafficDistribution), and
// internalTrafficPolicy: Local gives a ClusterIP frontend the local set
// only (InternalLocal; empty: the datapath refuses). sessionAffinity:
// ClientIP gives every frontend of the Service its timeout
// (AffinityTimeout), and State.ServiceCIDRs (Builder.SetServiceCIDRs) say
// where an address no Service holds is refused.
//
// Besides its ClusterIPs, a Service asks for NodePort frontends (every node
// address and the loopback address, narrowed by Options.NodePortAddresses),
// LoadBalancer frontends (its VIP-mode ingress IPs, with their source
// ranges) and ExternalIP frontends (only inside Options.ExternalIPAllow;
// any other is an ObjectError with Reason ReasonExternalIPRefused), each of
// a family the Service has a clusterIP of, as kube-proxy programs them.
// externalTrafficPolicy: Local sends outside clients of those to the local
// set only and clients on the node to the cluster set (Internal). The State
// also holds the Services' health checks and the node's SNAT source.
//
// A frontend claimed by two Services stays with the one that holds it (the
// Builder remembers across updates and Reset, and is told after an agent
// restart what the pinned maps hold, Builder.Hold); claims new at the same
// time go to the older creationTimestamp, then the first by namespace/name.
// The Service left out gets an ObjectError naming the holder, with Reason
// ReasonFrontendConflict. A frontend holds at most MaxBackends backends
// (the datapath's 16-bit slots); a Service port that no EndpointSlice port
// serves is reported, as are (Builder.UnusedSlices) slices whose Service
// does not exist.
//
// The rules follow kube-proxy: only an endpoint's first address is used,
// ready endpoints serve, serving-and-terminating endpoints serve only when no
// ready endpoint exists, and a frontend without usable endpoints still exists
// so that the datapath refuses connects to it instead of letting them leave
// the node untranslated.
package desired
