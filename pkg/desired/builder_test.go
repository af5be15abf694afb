package desired

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Updating one Service at a time must give exactly what a Reset with every
// object gives on a Builder with the same past (the agent's periodic full
// sync), and report as changed exactly the frontends whose entry changed.
// It must also give what a Build from scratch gives, except where a
// frontend two Services claim stays with the one that was there first: a
// Build has no past, and gives it to the older, then the first by name.
func TestBuilderMatchesBuild(t *testing.T) {
	p8080 := intstr.FromInt32(8080)
	svc := func(name, ip string, ports ...int32) *corev1.Service {
		return makeTestService("default", name, func(s *corev1.Service) {
			s.Spec.ClusterIP = ip
			for _, p := range ports {
				s.Spec.Ports = append(s.Spec.Ports, makeServicePort("", p, corev1.ProtocolTCP, p8080))
			}
		})
	}
	slice := func(name string, addrs ...string) *discoveryv1.EndpointSlice {
		return makeTestEndpointSlice("default", name, 1, func(eps *discoveryv1.EndpointSlice) {
			eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("", 8080, corev1.ProtocolTCP)}
			for _, a := range addrs {
				eps.Endpoints = append(eps.Endpoints, readyEndpoint(a))
			}
		})
	}
	lb := func(ingress []string, ranges []string, endpointNode string) (*corev1.Service, []*discoveryv1.EndpointSlice) {
		s := makeTestService("default", "lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ClusterIP = "10.96.0.12"
			s.Spec.Ports = []corev1.ServicePort{{Name: "", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080, TargetPort: p8080}}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.ExternalIPs = []string{"203.0.113.7"}
			s.Spec.LoadBalancerSourceRanges = ranges
			for _, ip := range ingress {
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
			}
		})
		sl := slice("lb", "10.244.0.20", "10.244.1.20")
		sl.Endpoints[0].NodeName = &endpointNode
		return s, []*discoveryv1.EndpointSlice{sl}
	}
	lbFrontends := []string{"10.96.0.12:80/TCP", "127.0.0.1:30080/TCP", "192.0.2.10:30080/TCP", "198.18.0.1:80/TCP", "203.0.113.7:80/TCP"}
	lbLocal, lbLocalSlices := lb([]string{"198.18.0.1"}, nil, "node-1")
	lbRanges, lbRangesSlices := lb([]string{"198.18.0.1"}, []string{"192.0.2.0/24"}, "node-1")
	lbTwo, lbTwoSlices := lb([]string{"198.18.0.1", "198.18.0.2"}, []string{"192.0.2.0/24"}, "node-1")
	lbMoved, lbMovedSlices := lb([]string{"198.18.0.1", "198.18.0.2"}, []string{"192.0.2.0/24"}, "node-2")
	type step struct {
		desc        string
		service     string          // the Service updated in this step
		svc         *corev1.Service // nil: deleted
		slices      []*discoveryv1.EndpointSlice
		wantChanged []string
		// fromScratch, when set, is the owner of the contested frontend
		// 10.96.0.10:80/TCP in a Build from scratch, which differs.
		fromScratch string
	}
	steps := []step{
		{"web appears", "web", svc("web", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("web", "10.244.0.2")}, []string{"10.96.0.10:80/TCP"}, ""},
		{"api appears", "api", svc("api", "10.96.0.11", 80, 81), nil, []string{"10.96.0.11:80/TCP", "10.96.0.11:81/TCP"}, ""},
		{"web gets an endpoint", "web", svc("web", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("web", "10.244.0.2", "10.244.0.3")}, []string{"10.96.0.10:80/TCP"}, ""},
		{"the same again changes nothing", "web", svc("web", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("web", "10.244.0.2", "10.244.0.3")}, nil, ""},
		{"aaa claims web's frontend: web was there first and keeps it", "aaa", svc("aaa", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("aaa", "10.244.0.9")}, nil, "aaa"},
		{"aaa changes its endpoints: web keeps the frontend", "aaa", svc("aaa", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("aaa", "10.244.0.8")}, nil, "aaa"},
		{"web gets an endpoint and keeps the frontend", "web", svc("web", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("web", "10.244.0.2", "10.244.0.3", "10.244.0.4")}, []string{"10.96.0.10:80/TCP"}, "aaa"},
		{"web goes, aaa gets the frontend", "web", nil, nil, []string{"10.96.0.10:80/TCP"}, ""},
		{"web comes back: aaa holds the frontend now", "web", svc("web", "10.96.0.10", 80), []*discoveryv1.EndpointSlice{slice("web", "10.244.0.2", "10.244.0.3")}, nil, ""},
		{"aaa goes, web gets the frontend", "aaa", nil, nil, []string{"10.96.0.10:80/TCP"}, ""},
		{"api drops a port", "api", svc("api", "10.96.0.11", 80), nil, []string{"10.96.0.11:81/TCP"}, ""},
		{"web deleted", "web", nil, nil, []string{"10.96.0.10:80/TCP"}, ""},
		{"a LoadBalancer Service with eTP=Local and an externalIP appears", "lb", lbLocal, lbLocalSlices, lbFrontends, ""},
		{"its source ranges change only its LoadBalancer frontend", "lb", lbRanges, lbRangesSlices, []string{"198.18.0.1:80/TCP"}, ""},
		{"an ingress IP is added", "lb", lbTwo, lbTwoSlices, []string{"198.18.0.2:80/TCP"}, ""},
		{"its local endpoint moves to another node", "lb", lbMoved, lbMovedSlices, append(slices.Clone(lbFrontends[:4]), "198.18.0.2:80/TCP", "203.0.113.7:80/TCP"), ""},
		{"lb deleted", "lb", nil, nil, append(slices.Clone(lbFrontends[:4]), "198.18.0.2:80/TCP", "203.0.113.7:80/TCP"), ""},
	}
	node := NodeInfo{Name: "node-1", Addresses: []NodeAddress{{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("192.0.2.10")}}}
	opts := Options{ExternalIPAllow: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
	inc := NewBuilderWithOptions(node, opts)
	resets := NewBuilderWithOptions(node, opts)
	services := map[string]*corev1.Service{}
	slicesOf := map[string][]*discoveryv1.EndpointSlice{}
	for _, st := range steps {
		changed := inc.Update(ServiceRef{Namespace: "default", Name: st.service}, st.svc, st.slices)
		if st.svc == nil {
			delete(services, st.service)
			delete(slicesOf, st.service)
		} else {
			services[st.service] = st.svc
			slicesOf[st.service] = st.slices
		}
		var allSvcs []*corev1.Service
		var allSlices []*discoveryv1.EndpointSlice
		for name, s := range services {
			allSvcs = append(allSvcs, s)
			allSlices = append(allSlices, slicesOf[name]...)
		}
		resets.Reset(node, allSvcs, allSlices)
		want, wantErrs := resets.State(), resets.Errors()
		if got, w := flows(t, inc.State()), flows(t, want); !slices.Equal(got, w) {
			t.Fatalf("%s: incremental state\n\t%s\nfull sync\n\t%s", st.desc, strings.Join(got, "\n\t"), strings.Join(w, "\n\t"))
		}
		fresh, freshErrs := BuildWithOptions(allSvcs, allSlices, node, opts)
		if st.fromScratch != "" {
			checkOwners(t, st.desc+": a Build from scratch", fresh, []string{"10.96.0.10:80/TCP"}, st.fromScratch)
		} else if got, w := flows(t, inc.State()), flows(t, fresh); !slices.Equal(got, w) || !slices.Equal(errorStrings(inc.Errors()), errorStrings(freshErrs)) {
			t.Fatalf("%s: incremental state\n\t%s\nBuild from scratch\n\t%s", st.desc, strings.Join(got, "\n\t"), strings.Join(w, "\n\t"))
		}
		if got, w := inc.State().HealthChecks, want.HealthChecks; !maps.Equal(got, w) {
			t.Fatalf("%s: incremental health checks %v, full build %v", st.desc, got, w)
		}
		if got, w := inc.State().SNAT, want.SNAT; got != w {
			t.Fatalf("%s: incremental SNAT %+v, full build %+v", st.desc, got, w)
		}
		if got, w := errorStrings(inc.Errors()), errorStrings(wantErrs); !slices.Equal(got, w) {
			t.Fatalf("%s: incremental errors %v, full build %v", st.desc, got, w)
		}
		var gotChanged []string
		for _, fe := range changed {
			gotChanged = append(gotChanged, fe.String())
		}
		if !slices.Equal(gotChanged, st.wantChanged) {
			t.Fatalf("%s: changed frontends %v, want %v", st.desc, gotChanged, st.wantChanged)
		}
	}
}

// BenchmarkBuilderUpdate is the cost of one Service's change among n.
func BenchmarkBuilderUpdate(b *testing.B) {
	svcs, endpointSlices := benchObjects(10000)
	index := indexEndpointSlices(endpointSlices)
	inc := NewBuilder(NodeInfo{})
	for _, s := range svcs {
		ref := ServiceRef{Namespace: s.Namespace, Name: s.Name}
		inc.Update(ref, s, index[ref])
	}
	target := svcs[5000]
	ref := ServiceRef{Namespace: target.Namespace, Name: target.Name}
	b.ReportAllocs()
	for b.Loop() {
		inc.Update(ref, target, index[ref])
	}
}

// Reset on a used Builder gives what a new one gives when no Service it
// held is listed again: nothing of the previous Services, claims or node
// survives.
func TestBuilderResetForgetsThePast(t *testing.T) {
	p8080 := intstr.FromInt32(8080)
	svc := func(name, ip string) *corev1.Service {
		return makeTestService("default", name, func(s *corev1.Service) {
			s.Spec.ClusterIP = ip
			s.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, corev1.ProtocolTCP, p8080)}
		})
	}
	x := NewBuilder(NodeInfo{Name: "node-1", Zone: "zone-a"})
	x.Reset(NodeInfo{Name: "node-1", Zone: "zone-a"}, []*corev1.Service{svc("aaa", "10.96.0.10"), svc("old", "10.96.0.11")}, nil)
	now := []*corev1.Service{svc("web", "10.96.0.10")}
	x.Reset(NodeInfo{Name: "node-1", Zone: "zone-b"}, now, nil)
	want, wantErrs := Build(now, nil, NodeInfo{Name: "node-1", Zone: "zone-b"})
	if got, w := flows(t, x.State()), flows(t, want); !slices.Equal(got, w) {
		t.Errorf("after Reset\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(w, "\n\t"))
	}
	if got, w := errorStrings(x.Errors()), errorStrings(wantErrs); !slices.Equal(got, w) {
		t.Errorf("errors after Reset %v, want %v", got, w)
	}
	if x.Node().Zone != "zone-b" || x.State().Node.Zone != "zone-b" {
		t.Errorf("after Reset the node is %+v (state %+v), want zone-b", x.Node(), x.State().Node)
	}
}

// A slice whose Service does not exist translates nothing; the builder
// lists it (the agent logs it at debug level), after a Reset and after an
// Update alike, until its Service appears or it goes.
func TestUnusedSlices(t *testing.T) {
	web := makeTestService("default", "web", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.96.0.10"
		s.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
	})
	slice := func(service string) *discoveryv1.EndpointSlice {
		return makeTestEndpointSlice("default", service, 1, func(*discoveryv1.EndpointSlice) {})
	}
	unlabelled := slice("x")
	unlabelled.Name, unlabelled.Labels = "stray", nil
	x := NewBuilder(NodeInfo{Name: "node-1"})
	x.Reset(NodeInfo{Name: "node-1"}, []*corev1.Service{web}, []*discoveryv1.EndpointSlice{slice("web"), slice("gone"), unlabelled})
	want := []UnusedSlice{{"default", "gone-1", "gone"}, {"default", "stray", ""}}
	if got := x.UnusedSlices(); !slices.Equal(got, want) {
		t.Errorf("after Reset: unused slices %v, want %v", got, want)
	}
	x.Update(ServiceRef{"default", "web"}, nil, []*discoveryv1.EndpointSlice{slice("web")})
	want = []UnusedSlice{{"default", "gone-1", "gone"}, {"default", "stray", ""}, {"default", "web-1", "web"}}
	if got := x.UnusedSlices(); !slices.Equal(got, want) {
		t.Errorf("after web is deleted: unused slices %v, want %v", got, want)
	}
	gone := web.DeepCopy()
	gone.Name = "gone"
	x.Update(ServiceRef{"default", "gone"}, gone, []*discoveryv1.EndpointSlice{slice("gone")})
	x.Update(ServiceRef{"default", "web"}, nil, nil)
	want = []UnusedSlice{{"default", "stray", ""}}
	if got := x.UnusedSlices(); !slices.Equal(got, want) {
		t.Errorf("after gone appears and web's slice goes: unused slices %v, want %v", got, want)
	}
}
