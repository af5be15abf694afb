package desired

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// TopologyPolicy says whether the cluster set follows the endpoints'
// topology hints.
type TopologyPolicy uint8

const (
	// IgnoreHints sends clients to every usable endpoint, wherever it runs.
	IgnoreHints TopologyPolicy = iota
	// FollowHints narrows the cluster set to the endpoints hinted for this
	// node, else for its zone, when the hints allow it (see
	// CategorizeEndpoints).
	FollowHints
)

// TopologyMode is how the hints narrowed the cluster set; the values are
// the Service API's trafficDistribution names.
type TopologyMode string

const (
	TopologyNone   TopologyMode = ""
	PreferSameZone TopologyMode = corev1.ServiceTrafficDistributionPreferSameZone
	PreferSameNode TopologyMode = corev1.ServiceTrafficDistributionPreferSameNode
)

// EndpointCategories are the backend sets of one Service port that the
// traffic policies choose from.
type EndpointCategories struct {
	// Cluster is what the Cluster traffic policy sends a client on this
	// node to: every usable endpoint, narrowed by the hints when Topology
	// is set.
	Cluster BackendSet
	// Local is what the Local traffic policy sends it to: the usable
	// endpoints on this node.
	Local BackendSet
	// Topology says whether and how the hints narrowed Cluster.
	Topology TopologyMode
}

// CategorizeEndpoints sorts the endpoints of one Service port into the
// cluster and local sets, by kube-proxy's rules (CategorizeEndpoints in
// pkg/proxy/topology.go) for a node described by node:
//
//   - Ready endpoints serve; serving-and-terminating ones are the fallback
//     when no ready one exists; an endpoint that is not serving never is.
//     Unlike kube-proxy, which picks one list, each set keeps both, as
//     Active and Terminating, and the datapath falls back by itself, so a
//     rollout that drains the last ready pod needs no sync to keep working.
//     The fallback is independent for Cluster and Local, as in kube-proxy.
//   - Local holds the endpoints whose nodeName is node.Name; in both sets
//     their Backend.Local is set.
//   - With FollowHints, hints narrow Cluster's ready endpoints only when
//     every ready endpoint has one: to those hinted for this node (forNodes)
//     when some are, else to those hinted for this zone (forZones) when some
//     are, else not at all. Terminating endpoints are never narrowed: the
//     fallback already means nothing is ready anywhere.
//
// endpoints must hold each Backend once; the sets come out sorted.
func CategorizeEndpoints(endpoints []Endpoint, node NodeInfo, policy TopologyPolicy) EndpointCategories {
	var c EndpointCategories
	if policy == FollowHints {
		c.Topology = topologyModeFromHints(endpoints, node)
	}
	for _, ep := range endpoints {
		be := ep.Backend
		be.Local = ep.IsLocal(node)
		switch {
		case ep.Ready:
			if availableForTopology(ep, c.Topology, node) {
				c.Cluster.Active = append(c.Cluster.Active, be)
			}
			if be.Local {
				c.Local.Active = append(c.Local.Active, be)
			}
		case ep.servingTerminating():
			c.Cluster.Terminating = append(c.Cluster.Terminating, be)
			if be.Local {
				c.Local.Terminating = append(c.Local.Terminating, be)
			}
		}
	}
	for _, set := range []*BackendSet{&c.Cluster, &c.Local} {
		slices.SortFunc(set.Active, Backend.Compare)
		slices.SortFunc(set.Terminating, Backend.Compare)
	}
	return c
}

// topologyModeFromHints decides how the hints narrow the cluster set:
// PreferSameNode when every ready endpoint has a node hint and one is for
// this node, else PreferSameZone when every ready endpoint has a zone hint
// and one is for this node's zone, else not at all. One endpoint without a
// hint means the EndpointSlice controller is not (or not yet) hinting the
// Service, and following partial hints would overload the hinted endpoints.
func topologyModeFromHints(endpoints []Endpoint, node NodeInfo) TopologyMode {
	anyReady := false
	allNodeHints, forNode := true, false
	allZoneHints, forZone := true, false
	for _, ep := range endpoints {
		if !ep.Ready {
			continue
		}
		anyReady = true
		if len(ep.Hints.ForNodes) == 0 {
			allNodeHints = false
		} else if node.Name != "" && slices.Contains(ep.Hints.ForNodes, node.Name) {
			forNode = true
		}
		if len(ep.Hints.ForZones) == 0 {
			allZoneHints = false
		} else if node.Zone != "" && slices.Contains(ep.Hints.ForZones, node.Zone) {
			forZone = true
		}
	}
	switch {
	case !anyReady:
		return TopologyNone
	case allNodeHints && forNode:
		return PreferSameNode
	case allZoneHints && forZone:
		return PreferSameZone
	}
	return TopologyNone
}

func availableForTopology(ep Endpoint, mode TopologyMode, node NodeInfo) bool {
	switch mode {
	case PreferSameNode:
		return slices.Contains(ep.Hints.ForNodes, node.Name)
	case PreferSameZone:
		return slices.Contains(ep.Hints.ForZones, node.Zone)
	}
	return true
}
