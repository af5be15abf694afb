package desired

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// testEndpoint is one row's endpoint: address (port 80/TCP), conditions, and
// locality.
type testEndpoint struct {
	addr      string
	state     endpointState
	nodeName  string
	zoneHints []string
	nodeHints []string
}

type endpointState uint8

const (
	ready endpointState = iota
	servingTerminating
	notServing          // terminating and no longer serving
	notReadyNotTerminal // not ready, not terminating: a starting pod
)

func (te testEndpoint) endpoint() Endpoint {
	e := Endpoint{
		Backend:  Backend{Addr: netip.MustParseAddr(te.addr), Port: 80, Proto: TCP},
		NodeName: te.nodeName,
		Hints:    EndpointHints{ForZones: te.zoneHints, ForNodes: te.nodeHints},
	}
	switch te.state {
	case ready:
		e.Ready, e.Serving = true, true
	case servingTerminating:
		e.Serving, e.Terminating = true, true
	case notServing:
		e.Terminating = true
	}
	return e
}

// setString renders a set like "10.0.0.1 10.0.0.2 (terminating 10.0.0.3)",
// "" when empty.
func setString(s BackendSet) string {
	var parts []string
	for _, be := range s.Active {
		parts = append(parts, be.Addr.String())
	}
	if len(s.Terminating) > 0 {
		var t []string
		for _, be := range s.Terminating {
			t = append(t, be.Addr.String())
		}
		parts = append(parts, "(terminating "+strings.Join(t, " ")+")")
	}
	return strings.Join(parts, " ")
}

func TestCategorizeEndpoints(t *testing.T) {
	node := NodeInfo{Name: "node-1", Zone: "zone-a"}
	testCases := []struct {
		name         string
		node         NodeInfo
		policy       TopologyPolicy
		endpoints    []testEndpoint
		wantCluster  string
		wantLocal    string
		wantTopology TopologyMode
	}{{
		name:      "no endpoints",
		node:      node,
		endpoints: nil,
	}, {
		name: "ready endpoints serve; local ones are those on this node",
		node: node,
		endpoints: []testEndpoint{
			{addr: "10.0.0.2", nodeName: "node-2"},
			{addr: "10.0.0.1", nodeName: "node-1"},
			{addr: "10.0.0.3"},
		},
		wantCluster: "10.0.0.1 10.0.0.2 10.0.0.3",
		wantLocal:   "10.0.0.1",
	}, {
		name: "serving-terminating endpoints are the fallback, kept beside the ready ones",
		node: node,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", nodeName: "node-1"},
			{addr: "10.0.0.2", state: servingTerminating, nodeName: "node-2"},
		},
		wantCluster: "10.0.0.1 (terminating 10.0.0.2)",
		wantLocal:   "10.0.0.1",
	}, {
		name: "the local fallback is independent of the cluster's",
		node: node,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", state: servingTerminating, nodeName: "node-1"},
			{addr: "10.0.0.2", nodeName: "node-2"},
		},
		wantCluster: "10.0.0.2 (terminating 10.0.0.1)",
		wantLocal:   "(terminating 10.0.0.1)",
	}, {
		name: "not-serving and not-ready endpoints never serve",
		node: node,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", state: notServing, nodeName: "node-1"},
			{addr: "10.0.0.2", state: notReadyNotTerminal, nodeName: "node-1"},
		},
	}, {
		name: "an endpoint without nodeName is never local, even on a node without a name",
		node: NodeInfo{},
		endpoints: []testEndpoint{
			{addr: "10.0.0.1"},
		},
		wantCluster: "10.0.0.1",
	}, {
		name:   "zone hints narrow the cluster set when every ready endpoint has one and one is for this zone",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", nodeName: "node-2", zoneHints: []string{"zone-a"}},
			{addr: "10.0.0.2", nodeName: "node-1", zoneHints: []string{"zone-b"}},
			{addr: "10.0.0.3", nodeName: "node-3", zoneHints: []string{"zone-b", "zone-a"}},
		},
		wantCluster:  "10.0.0.1 10.0.0.3",
		wantLocal:    "10.0.0.2",
		wantTopology: PreferSameZone,
	}, {
		name:   "hints are ignored unless asked for",
		node:   node,
		policy: IgnoreHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-a"}},
			{addr: "10.0.0.2", zoneHints: []string{"zone-b"}},
		},
		wantCluster: "10.0.0.1 10.0.0.2",
	}, {
		name:   "one ready endpoint without a hint means no topology",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-a"}},
			{addr: "10.0.0.2"},
		},
		wantCluster: "10.0.0.1 10.0.0.2",
	}, {
		name:   "a terminating endpoint without a hint does not stop topology",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-a"}},
			{addr: "10.0.0.2", zoneHints: []string{"zone-b"}},
			{addr: "10.0.0.3", state: servingTerminating},
		},
		wantCluster:  "10.0.0.1 (terminating 10.0.0.3)",
		wantTopology: PreferSameZone,
	}, {
		name:   "no endpoint hinted for this zone means no topology",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-b"}},
			{addr: "10.0.0.2", zoneHints: []string{"zone-c"}},
		},
		wantCluster: "10.0.0.1 10.0.0.2",
	}, {
		name:   "a node without a zone label uses no zone hints",
		node:   NodeInfo{Name: "node-1"},
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-a"}},
			{addr: "10.0.0.2", zoneHints: []string{"zone-b"}},
		},
		wantCluster: "10.0.0.1 10.0.0.2",
	}, {
		name:   "node hints win over zone hints when every ready endpoint has one and one is for this node",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", nodeName: "node-1", zoneHints: []string{"zone-a"}, nodeHints: []string{"node-1"}},
			{addr: "10.0.0.2", nodeName: "node-2", zoneHints: []string{"zone-a"}, nodeHints: []string{"node-2"}},
			{addr: "10.0.0.3", nodeName: "node-3", zoneHints: []string{"zone-b"}, nodeHints: []string{"node-3"}},
		},
		wantCluster:  "10.0.0.1",
		wantLocal:    "10.0.0.1",
		wantTopology: PreferSameNode,
	}, {
		name:   "node hints for other nodes only fall back to zone hints",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.2", zoneHints: []string{"zone-a"}, nodeHints: []string{"node-2"}},
			{addr: "10.0.0.3", zoneHints: []string{"zone-b"}, nodeHints: []string{"node-3"}},
		},
		wantCluster:  "10.0.0.2",
		wantTopology: PreferSameZone,
	}, {
		name:   "partial node hints fall back to zone hints",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", zoneHints: []string{"zone-a"}, nodeHints: []string{"node-1"}},
			{addr: "10.0.0.2", zoneHints: []string{"zone-b"}},
		},
		wantCluster:  "10.0.0.1",
		wantTopology: PreferSameZone,
	}, {
		name:   "with nothing ready the hints are not read and the fallback is not narrowed",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", state: servingTerminating, zoneHints: []string{"zone-b"}},
			{addr: "10.0.0.2", state: servingTerminating, zoneHints: []string{"zone-a"}},
		},
		wantCluster: "(terminating 10.0.0.1 10.0.0.2)",
	}, {
		name:   "topology narrows the cluster set only, never the local one",
		node:   node,
		policy: FollowHints,
		endpoints: []testEndpoint{
			{addr: "10.0.0.1", nodeName: "node-1", zoneHints: []string{"zone-b"}},
			{addr: "10.0.0.2", nodeName: "node-2", zoneHints: []string{"zone-a"}},
		},
		wantCluster:  "10.0.0.2",
		wantLocal:    "10.0.0.1",
		wantTopology: PreferSameZone,
	}}

	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var endpoints []Endpoint
			for _, te := range tc.endpoints {
				endpoints = append(endpoints, te.endpoint())
			}
			got := CategorizeEndpoints(endpoints, tc.node, tc.policy)
			if s := setString(got.Cluster); s != tc.wantCluster {
				t.Errorf("cluster set = %q, want %q", s, tc.wantCluster)
			}
			if s := setString(got.Local); s != tc.wantLocal {
				t.Errorf("local set = %q, want %q", s, tc.wantLocal)
			}
			if got.Topology != tc.wantTopology {
				t.Errorf("topology = %q, want %q", got.Topology, tc.wantTopology)
			}
			// The input order must not matter.
			again := CategorizeEndpoints(reversed(endpoints), tc.node, tc.policy)
			if !again.Cluster.Equal(got.Cluster) || !again.Local.Equal(got.Local) || again.Topology != got.Topology {
				t.Errorf("with endpoints reversed: %+v, want %+v", again, got)
			}
		})
	}
}

// The build reads each endpoint's locality and conditions, merged across
// slices, and chooses the ClusterIP backends through the categorisation.
func TestBuilderReadsEndpointLocality(t *testing.T) {
	svc := makeTestService("default", "web", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.96.0.10"
		s.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
	})
	hinted := func(addr, nodeName, zone string, hintZones, hintNodes []string) discoveryv1.Endpoint {
		ep := readyEndpoint(addr)
		ep.NodeName, ep.Zone = ptr.To(nodeName), ptr.To(zone)
		ep.Hints = &discoveryv1.EndpointHints{}
		for _, z := range hintZones {
			ep.Hints.ForZones = append(ep.Hints.ForZones, discoveryv1.ForZone{Name: z})
		}
		for _, n := range hintNodes {
			ep.Hints.ForNodes = append(ep.Hints.ForNodes, discoveryv1.ForNode{Name: n})
		}
		return ep
	}
	slice1 := makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
		eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
		eps.Endpoints = []discoveryv1.Endpoint{
			hinted("10.244.1.2", "node-1", "zone-a", []string{"zone-a"}, []string{"node-1"}),
			terminatingEndpoint("10.244.2.2"),
			endpoint("10.244.3.2", no, no, yes), // not serving: kept, never a backend
		}
	})
	// The same endpoint, ready, in a second slice wins over its
	// terminating copy in the first.
	slice2 := makeTestEndpointSlice("default", "web", 2, func(eps *discoveryv1.EndpointSlice) {
		eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
		eps.Endpoints = []discoveryv1.Endpoint{hinted("10.244.2.2", "node-2", "zone-b", []string{"zone-b"}, nil)}
	})

	x := NewBuilder(NodeInfo{Name: "node-1", Zone: "zone-a"})
	x.Update(ServiceRef{Namespace: "default", Name: "web"}, svc, []*discoveryv1.EndpointSlice{slice2, slice1})
	fe := Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: TCP}
	be := func(addr string) Backend { return Backend{Addr: netip.MustParseAddr(addr), Port: 8080, Proto: TCP} }
	want := []Endpoint{
		{Backend: be("10.244.1.2"), NodeName: "node-1", Zone: "zone-a", Ready: true, Serving: true,
			Hints: EndpointHints{ForZones: []string{"zone-a"}, ForNodes: []string{"node-1"}}},
		{Backend: be("10.244.2.2"), NodeName: "node-2", Zone: "zone-b", Ready: true, Serving: true,
			Hints: EndpointHints{ForZones: []string{"zone-b"}}},
		{Backend: be("10.244.3.2"), Terminating: true},
	}
	// What the frontend's backends are chosen from, read as the build does.
	inProgress := &serviceBuild{parsed: map[*discoveryv1.EndpointSlice]*parsedSlice{}, slices: []*discoveryv1.EndpointSlice{slice1, slice2}}
	got := inProgress.endpointsOf(discoveryv1.AddressTypeIPv4, servicePort{name: "http", port: 80, proto: TCP})
	if !slices.EqualFunc(got, want, Endpoint.Equal) {
		t.Errorf("endpoints of %s:\ngot  %+v\nwant %+v", fe, got, want)
	}
	entry := x.State().Frontends[fe]
	if entry == nil {
		t.Fatalf("no entry for %s", fe)
	}
	// As kube-proxy, the builder follows the hints: every ready endpoint
	// has one and one is for node-1.
	wantCategories := CategorizeEndpoints(want, x.Node(), FollowHints)
	if !entry.BackendSet.Equal(wantCategories.Cluster) || entry.Internal != nil {
		t.Errorf("entry backends = %s (internal %v), want the hint-narrowed cluster set %s and no internal set",
			setString(entry.BackendSet), entry.Internal, setString(wantCategories.Cluster))
	}
}

// The sets carry each backend's locality for the datapath: Local on those
// whose nodeName is this node's, in the cluster set as in the local one.
func TestCategorizeEndpointsMarksLocalBackends(t *testing.T) {
	eps := []Endpoint{
		testEndpoint{addr: "10.0.0.1", nodeName: "node-1"}.endpoint(),
		testEndpoint{addr: "10.0.0.2", nodeName: "node-2"}.endpoint(),
		testEndpoint{addr: "10.0.0.3"}.endpoint(),
		testEndpoint{addr: "10.0.0.4", state: servingTerminating, nodeName: "node-1"}.endpoint(),
	}
	c := CategorizeEndpoints(eps, NodeInfo{Name: "node-1"}, IgnoreHints)
	var got []string
	for _, set := range []BackendSet{c.Cluster, c.Local} {
		for _, be := range append(slices.Clone(set.Active), set.Terminating...) {
			got = append(got, be.Addr.String()+"="+map[bool]string{true: "local", false: "remote"}[be.Local])
		}
	}
	want := []string{"10.0.0.1=local", "10.0.0.2=remote", "10.0.0.3=remote", "10.0.0.4=local", "10.0.0.1=local", "10.0.0.4=local"}
	if !slices.Equal(got, want) {
		t.Errorf("locality %v, want %v", got, want)
	}
}
