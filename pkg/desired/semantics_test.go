package desired

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The Service semantics beyond plain balancing, a row per case in the style
// of kube-proxy's proxier tests: the objects, the node, a client on the node
// or outside it, and what that client reaches: the backends the datapath
// picks from, "REFUSE" when it refuses the connect. Node "node-1" is in
// zone "zone-a"; the Service is 10.96.0.10:80 (NodePort 30080 on
// 192.0.2.1) to targetPort 8080.

// client says who connects: a pod or process on the node (the socket
// hooks), or a client outside it (XDP).
type client uint8

const (
	onNode client = iota
	outside
)

// reaches is what the datapath picks from for a client of fe: the internal
// scope for clients on the node when there is one, else the default scope;
// the terminating endpoints only while no endpoint is active.
func reaches(e *FrontendEntry, c client) string {
	set := e.BackendSet
	if c == onNode && e.Internal != nil {
		set = *e.Internal
	}
	list := set.Active
	if len(list) == 0 {
		list = set.Terminating
	}
	if len(list) == 0 {
		return "REFUSE"
	}
	out := make([]string, len(list))
	for i, be := range list {
		out[i] = be.Addr.String()
	}
	return strings.Join(out, " ")
}

// ep is one endpoint of the Service's slice: its address, node, zone,
// hints and conditions (nil: the condition is unset).
type ep struct {
	addr, node, zone            string
	forZones, forNodes          []string
	ready, serving, terminating *bool
}

func (e ep) endpoint() discoveryv1.Endpoint {
	out := discoveryv1.Endpoint{
		Addresses:  []string{e.addr},
		Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating},
	}
	if e.node != "" {
		out.NodeName = ptr.To(e.node)
	}
	if e.zone != "" {
		out.Zone = ptr.To(e.zone)
	}
	if len(e.forZones)+len(e.forNodes) > 0 {
		out.Hints = &discoveryv1.EndpointHints{}
		for _, z := range e.forZones {
			out.Hints.ForZones = append(out.Hints.ForZones, discoveryv1.ForZone{Name: z})
		}
		for _, n := range e.forNodes {
			out.Hints.ForNodes = append(out.Hints.ForNodes, discoveryv1.ForNode{Name: n})
		}
	}
	return out
}

// Endpoints as the EndpointSlice controller writes them.
var (
	local1  = ep{addr: "10.244.1.1", node: "node-1", zone: "zone-a", ready: yes, serving: yes, terminating: no}
	remote2 = ep{addr: "10.244.2.1", node: "node-2", zone: "zone-a", ready: yes, serving: yes, terminating: no}
	remote3 = ep{addr: "10.244.3.1", node: "node-3", zone: "zone-b", ready: yes, serving: yes, terminating: no}
)

func hint(e ep, zones, nodes []string) ep {
	e.forZones, e.forNodes = zones, nodes
	return e
}

func conditions(e ep, ready, serving, terminating *bool) ep {
	e.ready, e.serving, e.terminating = ready, serving, terminating
	return e
}

type semanticsCase struct {
	name      string
	svc       func(*corev1.Service) // on top of the plain ClusterIP Service
	endpoints []ep
	node      NodeInfo // zero: node-1 in zone-a
	frontend  string   // "" : the ClusterIP 10.96.0.10:80/TCP
	client    client
	want      string
	// wantAffinity is the frontend's affinity timeout.
	wantAffinity uint32
	wantError    string // a piece of the one Service error expected
}

func runSemantics(t *testing.T, cases []semanticsCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
				svc.Spec.Ports[0].NodePort = 30080
				if tc.svc != nil {
					tc.svc(svc)
				}
			})
			slice := makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
				eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
				for _, e := range tc.endpoints {
					eps.Endpoints = append(eps.Endpoints, e.endpoint())
				}
			})
			node := tc.node
			if node.Name == "" {
				node = NodeInfo{Name: "node-1", Zone: "zone-a"}
			}
			node.Addresses = []NodeAddress{{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("192.0.2.1")}}
			state, errs := Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}, node)
			checkOneError(t, errs, tc.wantError)
			fe := "10.96.0.10:80/TCP"
			if tc.frontend != "" {
				fe = tc.frontend
			}
			var entry *FrontendEntry
			for f, e := range state.Frontends {
				if f.String() == fe {
					entry = e
				}
			}
			if entry == nil {
				t.Fatalf("no frontend %s; the state has %v", fe, flows(t, state))
			}
			if got := reaches(entry, tc.client); got != tc.want {
				t.Errorf("a client %s reaches %q, want %q\nstate: %v", clientName(tc.client), got, tc.want, flows(t, state))
			}
			if entry.AffinityTimeout != tc.wantAffinity {
				t.Errorf("affinity timeout %d, want %d", entry.AffinityTimeout, tc.wantAffinity)
			}
		})
	}
}

func clientName(c client) string {
	if c == onNode {
		return "on the node"
	}
	return "from outside"
}

func checkOneError(t *testing.T, errs []error, want string) {
	t.Helper()
	switch {
	case want == "" && len(errs) > 0:
		t.Errorf("errors %v, want none", errs)
	case want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), want)):
		t.Errorf("errors %v, want one saying %q", errs, want)
	}
}

func local(svc *corev1.Service) {
	svc.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
}

func nodePort(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeNodePort }

func TestInternalTrafficPolicy(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{name: "Cluster: every endpoint", endpoints: []ep{local1, remote2, remote3},
			want: "10.244.1.1 10.244.2.1 10.244.3.1"},
		{name: "Local with a local endpoint: only it", svc: local, endpoints: []ep{local1, remote2, remote3},
			want: "10.244.1.1"},
		{name: "Local without a local endpoint: refused (kube-proxy drops)", svc: local, endpoints: []ep{remote2, remote3},
			want: "REFUSE"},
		{name: "Local without any endpoint: refused", svc: local, want: "REFUSE"},
		{name: "Local: a local serving-terminating endpoint is the fallback, not a remote ready one", svc: local,
			endpoints: []ep{conditions(local1, no, yes, yes), remote2}, want: "10.244.1.1"},
		{name: "Local: a local ready endpoint wins over a local terminating one", svc: local,
			endpoints: []ep{local1, conditions(ep{addr: "10.244.1.2", node: "node-1"}, no, yes, yes)}, want: "10.244.1.1"},
		{name: "Local applies to ClusterIP traffic only: a NodePort from the node follows the external policy",
			svc: func(s *corev1.Service) { local(s); nodePort(s) }, endpoints: []ep{local1, remote2},
			frontend: "192.0.2.1:30080/TCP", client: onNode, want: "10.244.1.1 10.244.2.1"},
		{name: "Local applies to ClusterIP traffic only: a NodePort from outside too",
			svc: func(s *corev1.Service) { local(s); nodePort(s) }, endpoints: []ep{local1, remote2},
			frontend: "192.0.2.1:30080/TCP", client: outside, want: "10.244.1.1 10.244.2.1"},
		{name: "Local, and the ClusterIP of a NodePort Service stays local",
			svc: func(s *corev1.Service) { local(s); nodePort(s) }, endpoints: []ep{local1, remote2}, want: "10.244.1.1"},
		{name: "Local beside externalTrafficPolicy Local: outside clients the local set, the ClusterIP the local set",
			svc: func(s *corev1.Service) {
				local(s)
				nodePort(s)
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			},
			endpoints: []ep{remote2}, frontend: "192.0.2.1:30080/TCP", client: outside, want: "REFUSE"},
	})
}

func TestTopology(t *testing.T) {
	zoneA, zoneB := []string{"zone-a"}, []string{"zone-b"}
	runSemantics(t, []semanticsCase{
		{name: "PreferSameZone (or PreferClose): zone hints followed",
			endpoints: []ep{hint(local1, zoneA, nil), hint(remote2, zoneA, nil), hint(remote3, zoneB, nil)},
			want:      "10.244.1.1 10.244.2.1"},
		{name: "zone hints followed from outside too (eTP Cluster)", svc: nodePort,
			endpoints: []ep{hint(local1, zoneA, nil), hint(remote3, zoneB, nil)},
			frontend:  "192.0.2.1:30080/TCP", client: outside, want: "10.244.1.1"},
		{name: "fallback: one ready endpoint without a hint, every endpoint",
			endpoints: []ep{hint(local1, zoneA, nil), remote2, hint(remote3, zoneB, nil)},
			want:      "10.244.1.1 10.244.2.1 10.244.3.1"},
		{name: "fallback: no endpoint hinted for this zone, every endpoint",
			endpoints: []ep{hint(remote3, zoneB, nil), hint(ep{addr: "10.244.4.1", node: "node-4", ready: yes}, zoneB, nil)},
			want:      "10.244.3.1 10.244.4.1"},
		{name: "fallback: the node has no zone label, every endpoint", node: NodeInfo{Name: "node-1"},
			endpoints: []ep{hint(local1, zoneA, nil), hint(remote3, zoneB, nil)},
			want:      "10.244.1.1 10.244.3.1"},
		{name: "a not-ready endpoint without a hint does not stop the hints",
			endpoints: []ep{hint(local1, zoneA, nil), hint(remote3, zoneB, nil), conditions(ep{addr: "10.244.5.1"}, no, no, no)},
			want:      "10.244.1.1"},
		{name: "PreferSameNode: node hints followed",
			endpoints: []ep{hint(local1, zoneA, []string{"node-1"}), hint(remote2, zoneA, []string{"node-2"})},
			want:      "10.244.1.1"},
		{name: "PreferSameNode without an endpoint on this node: the zone hints",
			endpoints: []ep{hint(remote2, zoneA, []string{"node-2"}), hint(remote3, zoneB, []string{"node-3"})},
			want:      "10.244.2.1"},
		{name: "PreferSameNode without an endpoint on this node or zone: every endpoint",
			node:      NodeInfo{Name: "node-9", Zone: "zone-c"},
			endpoints: []ep{hint(remote2, zoneA, []string{"node-2"}), hint(remote3, zoneB, []string{"node-3"})},
			want:      "10.244.2.1 10.244.3.1"},
		{name: "no ready endpoint: the terminating ones, hints or not",
			endpoints: []ep{hint(conditions(local1, no, yes, yes), zoneA, nil), hint(conditions(remote3, no, yes, yes), zoneB, nil)},
			want:      "10.244.1.1 10.244.3.1"},
		{name: "internalTrafficPolicy Local is not narrowed by the hints", svc: local,
			endpoints: []ep{hint(local1, zoneB, nil), hint(remote3, zoneA, nil)},
			want:      "10.244.1.1"},
	})
}

func TestSessionAffinity(t *testing.T) {
	clientIP := func(timeout *int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			if timeout != nil {
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: timeout}}
			}
		}
	}
	all := "10.244.1.1 10.244.2.1"
	eps := []ep{local1, remote2}
	runSemantics(t, []semanticsCase{
		{name: "None: no affinity", endpoints: eps, want: all},
		{name: "ClientIP without a config: the API's default, 10800 s", svc: clientIP(nil), endpoints: eps, want: all,
			wantAffinity: DefaultAffinityTimeout},
		{name: "ClientIP with a timeout", svc: clientIP(ptr.To[int32](60)), endpoints: eps, want: all, wantAffinity: 60},
		{name: "ClientIP at the API's maximum", svc: clientIP(ptr.To[int32](86400)), endpoints: eps, want: all, wantAffinity: 86400},
		{name: "ClientIP above the maximum: reported, the default used", svc: clientIP(ptr.To[int32](86401)), endpoints: eps,
			want: all, wantAffinity: DefaultAffinityTimeout, wantError: "timeoutSeconds 86401 is outside 1-86400"},
		{name: "ClientIP on a NodePort: the NodePort frontend has it too",
			svc:      func(s *corev1.Service) { clientIP(ptr.To[int32](30))(s); nodePort(s) },
			frontend: "192.0.2.1:30080/TCP", client: outside, endpoints: eps, want: all, wantAffinity: 30},
		{name: "ClientIP with internalTrafficPolicy Local: affinity among the local endpoints",
			svc: func(s *corev1.Service) { clientIP(ptr.To[int32](30))(s); local(s) }, endpoints: eps,
			want: "10.244.1.1", wantAffinity: 30},
	})
}

func TestEndpointConditions(t *testing.T) {
	publish := func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }
	runSemantics(t, []semanticsCase{
		{name: "ready first: a serving-terminating endpoint waits", endpoints: []ep{remote2, conditions(remote3, no, yes, yes)},
			want: "10.244.2.1"},
		{name: "serving and terminating, nothing ready: the fallback",
			endpoints: []ep{conditions(remote2, no, yes, yes), conditions(remote3, no, no, yes)}, want: "10.244.2.1"},
		{name: "serving=true, ready=false, not terminating: never (a pod starting up)",
			endpoints: []ep{conditions(remote2, no, yes, no)}, want: "REFUSE"},
		{name: "not serving: never", endpoints: []ep{conditions(remote2, no, no, yes)}, want: "REFUSE"},
		{name: "serving unset reads as serving, as kube-proxy's EndpointSliceCache reads it",
			endpoints: []ep{conditions(remote2, no, nil, yes)}, want: "10.244.2.1"},
		{name: "ready unset reads as ready", endpoints: []ep{conditions(remote2, nil, nil, nil)}, want: "10.244.2.1"},
		{name: "publishNotReadyAddresses: the controller's ready=true is used",
			svc: publish, endpoints: []ep{conditions(remote2, yes, no, no)}, want: "10.244.2.1"},
		{name: "publishNotReadyAddresses is not read by the proxy: ready=false stays unused",
			svc: publish, endpoints: []ep{conditions(remote2, no, yes, no)}, want: "REFUSE"},
		{name: "a ready endpoint marked terminating (publishNotReadyAddresses) is ready",
			svc: publish, endpoints: []ep{conditions(remote2, yes, yes, yes)}, want: "10.244.2.1"},
	})
}

// An SCTP port is left out with one error naming the Service; its TCP port
// is built.
func TestSCTPPortLeftOut(t *testing.T) {
	runSemantics(t, []semanticsCase{
		{name: "SCTP beside TCP",
			svc: func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, makeServicePort("sig", 3868, corev1.ProtocolSCTP, intstr.FromInt32(3868)))
			},
			endpoints: []ep{remote2}, want: "10.244.2.1",
			wantError: `Service default/web: port "sig" (3868/SCTP): protocol SCTP is not supported`},
	})
}

// Service CIDRs reach the state masked, sorted and without duplicates,
// and survive a Reset.
func TestServiceCIDRs(t *testing.T) {
	x := NewBuilder(NodeInfo{Name: "node-1"})
	in := []netip.Prefix{netip.MustParsePrefix("fd00:10:96::/108"), netip.MustParsePrefix("10.96.7.7/12"), netip.MustParsePrefix("10.96.0.0/12")}
	if !x.SetServiceCIDRs(in) {
		t.Fatal("SetServiceCIDRs reported no change")
	}
	if x.SetServiceCIDRs(in) {
		t.Error("the same CIDRs again reported a change")
	}
	want := "[10.96.0.0/12 fd00:10:96::/108]"
	x.Reset(NodeInfo{Name: "node-1"}, nil, nil)
	if got := fmtPrefixes(x.State().ServiceCIDRs); got != want {
		t.Errorf("ServiceCIDRs after Reset %s, want %s", got, want)
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// An Update that changes only the affinity or the internal policy reports
// the frontend changed, so an incremental sync rewrites its master entry.
func TestUpdateReportsSemanticsChanges(t *testing.T) {
	ref := ServiceRef{Namespace: "default", Name: "web"}
	base := func(mod func(*corev1.Service)) *corev1.Service {
		return makeTestService("default", "web", func(svc *corev1.Service) {
			svc.Spec.ClusterIP = "10.96.0.10"
			svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
			if mod != nil {
				mod(svc)
			}
		})
	}
	slice := makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
		eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
		eps.Endpoints = []discoveryv1.Endpoint{local1.endpoint()}
	})
	affinity := func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }
	testCases := []struct {
		name     string
		from, to func(*corev1.Service)
	}{
		{"affinity on", nil, affinity},
		{"affinity off", affinity, nil},
		{"iTP Local on (the one endpoint is local: same backends)", nil, local},
		{"iTP Local off", local, nil},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			x := NewBuilder(NodeInfo{Name: "node-1"})
			x.Update(ref, base(tc.from), []*discoveryv1.EndpointSlice{slice})
			changed := x.Update(ref, base(tc.to), []*discoveryv1.EndpointSlice{slice})
			if len(changed) != 1 {
				t.Errorf("Update reported %v changed, want the ClusterIP frontend", changed)
			}
		})
	}
}
