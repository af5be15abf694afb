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
	"k8s.io/utils/ptr"
)

// webSvc is a Service "web" of type typ with one TCP port 80 -> 8080 named
// http, nodePort 30080 when the type allocates one.
func webSvc(typ corev1.ServiceType, clusterIPs []string, f func(*corev1.Service)) *corev1.Service {
	return makeTestService("default", "web", func(s *corev1.Service) {
		s.Spec.Type = typ
		s.Spec.ClusterIP = clusterIPs[0]
		s.Spec.ClusterIPs = clusterIPs
		port := makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))
		if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
			port.NodePort = 30080
		}
		s.Spec.Ports = []corev1.ServicePort{port}
		if f != nil {
			f(s)
		}
	})
}

// webSlice is slice n of web's endpoints of one family, port http 8080;
// each endpoint is "addr" or "addr@node" and ready.
func webSlice(n int, family discoveryv1.AddressType, endpoints ...string) *discoveryv1.EndpointSlice {
	return makeTestEndpointSlice("default", "web", n, func(eps *discoveryv1.EndpointSlice) {
		eps.AddressType = family
		eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
		for _, e := range endpoints {
			addr, node, _ := strings.Cut(e, "@")
			ep := readyEndpoint(addr)
			if node != "" {
				ep.NodeName = ptr.To(node)
			}
			eps.Endpoints = append(eps.Endpoints, ep)
		}
	})
}

func nodeWith(addrs ...string) NodeInfo {
	n := NodeInfo{Name: "node-1"}
	for _, a := range addrs {
		typ := corev1.NodeInternalIP
		if s, ok := strings.CutPrefix(a, "ext:"); ok {
			typ, a = corev1.NodeExternalIP, s
		}
		n.Addresses = append(n.Addresses, NodeAddress{Type: typ, Addr: netip.MustParseAddr(a)})
	}
	return n
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestBuildExternalFrontends(t *testing.T) {
	v4 := []string{"10.96.0.10"}
	dual := []string{"10.96.0.10", "fd00:10:96::10"}
	local4 := webSlice(1, discoveryv1.AddressTypeIPv4, "10.244.1.2@node-1", "10.244.2.2@node-2")
	node := nodeWith("192.0.2.10", "ext:203.0.113.10")
	eTPLocal := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	lbWith := func(ips ...string) func(*corev1.Service) {
		return func(s *corev1.Service) {
			for _, ip := range ips {
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
			}
		}
	}
	both := func(fs ...func(*corev1.Service)) func(*corev1.Service) {
		return func(s *corev1.Service) {
			for _, f := range fs {
				f(s)
			}
		}
	}

	testCases := []struct {
		name       string
		services   []*corev1.Service
		slices     []*discoveryv1.EndpointSlice
		node       NodeInfo
		opts       Options
		wantFlows  []string
		wantErrors []wantError
		wantHealth map[ServiceRef]HealthCheck
	}{{
		name:     "ClusterIP Service: unchanged, locality marked on the backends",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeClusterIP, v4, nil)},
		slices:   []*discoveryv1.EndpointSlice{local4},
		node:     node,
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080",
		},
	}, {
		name:     "NodePort on every node address and loopback",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, v4, nil)},
		slices:   []*discoveryv1.EndpointSlice{local4},
		node:     node,
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080",
			"127.0.0.1:30080/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080 kind=NodePort",
			"192.0.2.10:30080/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080 kind=NodePort",
			"203.0.113.10:30080/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080 kind=NodePort",
		},
	}, {
		name:     "NodePort of an IPv4-only Service: no IPv6 node address or ::1",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, v4, nil)},
		node:     nodeWith("192.0.2.10", "2001:db8::10"),
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"127.0.0.1:30080/TCP default/web:http -> REJECT kind=NodePort",
			"192.0.2.10:30080/TCP default/web:http -> REJECT kind=NodePort",
		},
	}, {
		name:     "--nodeport-addresses narrows IPv4 and drops 127.0.0.1; IPv6 without a prefix keeps every address",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, dual, nil)},
		node:     nodeWith("192.0.2.10", "198.51.100.10", "2001:db8::10"),
		opts:     Options{NodePortAddresses: prefixes("198.51.100.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"198.51.100.10:30080/TCP default/web:http -> REJECT kind=NodePort",
			"[::1]:30080/TCP default/web:http -> REJECT kind=NodePort",
			"[2001:db8::10]:30080/TCP default/web:http -> REJECT kind=NodePort",
			"[fd00:10:96::10]:80/TCP default/web:http -> REJECT",
		},
	}, {
		name:     "--nodeport-addresses with a loopback prefix keeps 127.0.0.1",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, v4, nil)},
		node:     node,
		opts:     Options{NodePortAddresses: prefixes("127.0.0.0/8", "192.0.2.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"127.0.0.1:30080/TCP default/web:http -> REJECT kind=NodePort",
			"192.0.2.10:30080/TCP default/web:http -> REJECT kind=NodePort",
		},
	}, {
		name:     "dual stack: each family's NodePorts get that family's endpoints",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, dual, nil)},
		slices: []*discoveryv1.EndpointSlice{
			webSlice(1, discoveryv1.AddressTypeIPv4, "10.244.1.2@node-1"),
			webSlice(2, discoveryv1.AddressTypeIPv6, "fd00:10:244::2@node-2"),
		},
		node: nodeWith("192.0.2.10", "2001:db8::10"),
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local)",
			"127.0.0.1:30080/TCP default/web:http -> 10.244.1.2:8080(local) kind=NodePort",
			"192.0.2.10:30080/TCP default/web:http -> 10.244.1.2:8080(local) kind=NodePort",
			"[::1]:30080/TCP default/web:http -> [fd00:10:244::2]:8080 kind=NodePort",
			"[2001:db8::10]:30080/TCP default/web:http -> [fd00:10:244::2]:8080 kind=NodePort",
			"[fd00:10:96::10]:80/TCP default/web:http -> [fd00:10:244::2]:8080",
		},
	}, {
		name: "LoadBalancer: ingress IPs of the Service's families, hostname-only and Proxy-mode ingress ignored",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, v4, func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 0 // allocateLoadBalancerNodePorts: false
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
				{IP: "198.18.0.1"}, {Hostname: "lb.example.com"}, {IP: "198.18.0.2", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)},
				{IP: "2001:db8:ff::1"}, {IP: "198.18.0.1"},
			}
		})},
		slices: []*discoveryv1.EndpointSlice{local4},
		node:   node,
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080",
			"198.18.0.1:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080 kind=LoadBalancer",
		},
	}, {
		name: "LoadBalancer with hostname-only ingress: NodePorts only",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, v4, func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
		})},
		node: nodeWith("192.0.2.10"),
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"127.0.0.1:30080/TCP default/web:http -> REJECT kind=NodePort",
			"192.0.2.10:30080/TCP default/web:http -> REJECT kind=NodePort",
		},
	}, {
		name: "ingress IPs on a Service that is not of type LoadBalancer are not served",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeClusterIP, v4, both(lbWith("198.18.0.1"), func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
		}))},
		wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
	}, {
		name: "loadBalancerSourceRanges: masked, deduplicated, sorted, per family, on LoadBalancer frontends only",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, dual, both(lbWith("198.18.0.1", "2001:db8:ff::1"), func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 0
			s.Spec.LoadBalancerSourceRanges = []string{" 192.0.2.77/24", "10.0.0.0/8", "192.0.2.0/24", "2001:db8:1::/48", "bogus"}
		}))},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"198.18.0.1:80/TCP default/web:http -> REJECT kind=LoadBalancer ranges=[10.0.0.0/8 192.0.2.0/24]",
			"[2001:db8:ff::1]:80/TCP default/web:http -> REJECT kind=LoadBalancer ranges=[2001:db8:1::/48]",
			"[fd00:10:96::10]:80/TCP default/web:http -> REJECT",
		},
		wantErrors: []wantError{{"Service default/web", `parse loadBalancerSourceRange: netip.ParsePrefix("bogus")`}},
	}, {
		name: "a zero-length source range lets every client of its family in",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, dual, both(lbWith("198.18.0.1", "2001:db8:ff::1"), func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 0
			s.Spec.LoadBalancerSourceRanges = []string{"0.0.0.0/0", "192.0.2.0/24", "2001:db8:1::/48"}
		}))},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"198.18.0.1:80/TCP default/web:http -> REJECT kind=LoadBalancer",
			"[2001:db8:ff::1]:80/TCP default/web:http -> REJECT kind=LoadBalancer ranges=[2001:db8:1::/48]",
			"[fd00:10:96::10]:80/TCP default/web:http -> REJECT",
		},
	}, {
		name: "externalIPs: allowed ones served, each refused one an error with its reason",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeClusterIP, v4, func(s *corev1.Service) {
			s.Spec.ExternalIPs = []string{"203.0.113.7", "198.51.100.7", "203.0.113.300", "198.51.100.7"}
		})},
		slices: []*discoveryv1.EndpointSlice{local4},
		opts:   Options{ExternalIPAllow: prefixes("203.0.113.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080 10.244.2.2:8080",
			"203.0.113.7:80/TCP default/web:http -> 10.244.1.2:8080 10.244.2.2:8080 kind=ExternalIP",
		},
		wantErrors: []wantError{
			{"Service default/web", `parse externalIP: ParseAddr("203.0.113.300")`},
			{"Service default/web", "refuse externalIP 198.51.100.7: it is not inside --external-ip-allow (203.0.113.0/24)"},
		},
	}, {
		name:       "externalIPs with no --external-ip-allow: all refused",
		services:   []*corev1.Service{webSvc(corev1.ServiceTypeClusterIP, v4, func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7"} })},
		wantFlows:  []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
		wantErrors: []wantError{{"Service default/web", "refuse externalIP 203.0.113.7: it is not inside --external-ip-allow (empty)"}},
	}, {
		name:     "eTP=Local with a local endpoint: outside clients local only, node clients every endpoint",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, v4, both(eTPLocal, lbWith("198.18.0.1"), func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 32000 }))},
		slices:   []*discoveryv1.EndpointSlice{local4},
		node:     nodeWith("192.0.2.10"),
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080",
			"127.0.0.1:30080/TCP default/web:http -> 10.244.1.2:8080(local) kind=NodePort ext-local internal=[10.244.1.2:8080(local) 10.244.2.2:8080]",
			"192.0.2.10:30080/TCP default/web:http -> 10.244.1.2:8080(local) kind=NodePort ext-local internal=[10.244.1.2:8080(local) 10.244.2.2:8080]",
			"198.18.0.1:80/TCP default/web:http -> 10.244.1.2:8080(local) kind=LoadBalancer ext-local internal=[10.244.1.2:8080(local) 10.244.2.2:8080]",
		},
		wantHealth: map[ServiceRef]HealthCheck{{"default", "web"}: {Port: 32000, LocalEndpoints: 1}},
	}, {
		name:     "eTP=Local without a local endpoint: outside clients dropped, health check reports 0",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, v4, both(eTPLocal, func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 32000 }))},
		slices:   []*discoveryv1.EndpointSlice{webSlice(1, discoveryv1.AddressTypeIPv4, "10.244.2.2@node-2")},
		node:     nodeWith("192.0.2.10"),
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.2.2:8080",
			"127.0.0.1:30080/TCP default/web:http -> REJECT kind=NodePort ext-local internal=[10.244.2.2:8080]",
			"192.0.2.10:30080/TCP default/web:http -> REJECT kind=NodePort ext-local internal=[10.244.2.2:8080]",
		},
		wantHealth: map[ServiceRef]HealthCheck{{"default", "web"}: {Port: 32000, LocalEndpoints: 0}},
	}, {
		name:     "eTP=Local with only local endpoints: one scope, the flag still set",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeNodePort, v4, eTPLocal)},
		slices:   []*discoveryv1.EndpointSlice{webSlice(1, discoveryv1.AddressTypeIPv4, "10.244.1.2@node-1")},
		node:     nodeWith("192.0.2.10"),
		opts:     Options{NodePortAddresses: prefixes("192.0.2.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local)",
			"192.0.2.10:30080/TCP default/web:http -> 10.244.1.2:8080(local) kind=NodePort ext-local",
		},
	}, {
		name: "eTP=Local on an ExternalIP frontend of a ClusterIP Service",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeClusterIP, v4, both(eTPLocal, func(s *corev1.Service) {
			s.Spec.ExternalIPs = []string{"203.0.113.7"}
		}))},
		slices: []*discoveryv1.EndpointSlice{local4},
		node:   nodeWith("192.0.2.10"),
		opts:   Options{ExternalIPAllow: prefixes("203.0.113.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.2.2:8080",
			"203.0.113.7:80/TCP default/web:http -> 10.244.1.2:8080(local) kind=ExternalIP ext-local internal=[10.244.1.2:8080(local) 10.244.2.2:8080]",
		},
	}, {
		name: "health check: each ready local address once across ports and slices; NodePort type gets none",
		services: []*corev1.Service{
			webSvc(corev1.ServiceTypeLoadBalancer, v4, both(eTPLocal, func(s *corev1.Service) {
				s.Spec.HealthCheckNodePort = 32000
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, NodePort: 30443})
			})),
			makeTestService("default", "np", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.ClusterIP = "10.96.0.11"
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32001 // validation refuses it; kube-proxy ignores it
			}),
		},
		slices: []*discoveryv1.EndpointSlice{
			makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
				eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP), makeSlicePort("https", 8443, corev1.ProtocolTCP)}
				eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.1.2"), readyEndpoint("10.244.1.3"), terminatingEndpoint("10.244.1.4"), readyEndpoint("10.244.2.2")}
				for i, n := range []string{"node-1", "node-1", "node-1", "node-2"} {
					eps.Endpoints[i].NodeName = ptr.To(n)
				}
			}),
			makeTestEndpointSlice("default", "web", 2, func(eps *discoveryv1.EndpointSlice) {
				eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
				eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.1.2")}
				eps.Endpoints[0].NodeName = ptr.To("node-1")
			}),
		},
		node:       NodeInfo{Name: "node-1"},
		opts:       Options{NodePortAddresses: prefixes("192.0.2.0/24")}, // no frontends but the ClusterIPs
		wantFlows:  []string{"10.96.0.10:80/TCP default/web:http -> 10.244.1.2:8080(local) 10.244.1.3:8080(local) 10.244.2.2:8080 (terminating 10.244.1.4:8080(local))", "10.96.0.10:443/TCP default/web:https -> 10.244.1.2:8443(local) 10.244.1.3:8443(local) 10.244.2.2:8443 (terminating 10.244.1.4:8443(local))"},
		wantHealth: map[ServiceRef]HealthCheck{{"default", "web"}: {Port: 32000, LocalEndpoints: 2}},
	}, {
		name: "a NodePort claimed by two Services: the first by namespace/name keeps it",
		services: []*corev1.Service{
			webSvc(corev1.ServiceTypeNodePort, v4, nil),
			makeTestService("default", "api", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.ClusterIP = "10.96.0.11"
				s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}}
			}),
		},
		node: NodeInfo{Name: "node-1"},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"10.96.0.11:80/TCP default/api:http -> REJECT",
			"127.0.0.1:30080/TCP default/api:http -> REJECT kind=NodePort",
		},
		wantErrors: []wantError{{"Service default/web", "claim frontend 127.0.0.1:30080/TCP: Service default/api holds it"}},
	}, {
		name: "an externalIP that is also an ingress IP of the Service: one frontend and an error",
		services: []*corev1.Service{webSvc(corev1.ServiceTypeLoadBalancer, v4, both(lbWith("203.0.113.7"), func(s *corev1.Service) {
			s.Spec.Ports[0].NodePort = 0
			s.Spec.ExternalIPs = []string{"203.0.113.7"}
		}))},
		opts: Options{ExternalIPAllow: prefixes("203.0.113.0/24")},
		wantFlows: []string{
			"10.96.0.10:80/TCP default/web:http -> REJECT",
			"203.0.113.7:80/TCP default/web:http -> REJECT kind=LoadBalancer",
		},
		wantErrors: []wantError{{"Service default/web", `claim ExternalIP frontend 203.0.113.7:80/TCP for port "http": this Service has it as a LoadBalancer frontend`}},
	}, {
		name: "ExternalName and headless Services still get nothing",
		services: []*corev1.Service{
			makeTestService("default", "ext", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeExternalName
				s.Spec.ExternalName = "example.com"
				s.Spec.ExternalIPs = []string{"203.0.113.7"}
			}),
			makeTestService("default", "db", func(s *corev1.Service) {
				s.Spec.ClusterIP = corev1.ClusterIPNone
				s.Spec.ExternalIPs = []string{"203.0.113.8"}
				s.Spec.Ports = []corev1.ServicePort{{Name: "pg", Port: 5432, NodePort: 30432}}
			}),
		},
		node: node,
		opts: Options{ExternalIPAllow: prefixes("203.0.113.0/24")},
	}}

	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			state, errs := BuildWithOptions(tc.services, tc.slices, tc.node, tc.opts)
			if got := flows(t, state); !slices.Equal(got, tc.wantFlows) {
				t.Errorf("flows:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.wantFlows, "\n\t"))
			}
			checkErrors(t, errs, tc.wantErrors)
			if tc.wantHealth == nil {
				tc.wantHealth = map[ServiceRef]HealthCheck{}
			}
			if !maps.Equal(state.HealthChecks, tc.wantHealth) {
				t.Errorf("health checks %v, want %v", state.HealthChecks, tc.wantHealth)
			}
			reversedState, _ := BuildWithOptions(reversed(tc.services), reversed(tc.slices), tc.node, tc.opts)
			if got, want := flows(t, reversedState), flows(t, state); !slices.Equal(got, want) {
				t.Errorf("flows with inputs reversed:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}

// The refusal of an externalIP carries the reason the agent's Event uses.
func TestRefusedExternalIPHasAReason(t *testing.T) {
	svc := webSvc(corev1.ServiceTypeClusterIP, []string{"10.96.0.10"}, func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7", "10.0.0.1"} })
	_, errs := BuildWithOptions([]*corev1.Service{svc}, nil, NodeInfo{}, Options{ExternalIPAllow: prefixes("10.0.0.0/8")})
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one", errs)
	}
	oe, ok := errs[0].(*ObjectError)
	if !ok || oe.Reason != ReasonExternalIPRefused || oe.Object() != "Service default/web" || !strings.Contains(oe.Error(), "203.0.113.7") {
		t.Errorf("error %#v, want an ObjectError of Service default/web with reason %s naming 203.0.113.7", errs[0], ReasonExternalIPRefused)
	}
}

func TestSNATConfig(t *testing.T) {
	testCases := []struct {
		name string
		node NodeInfo
		opts Options
		want SNATConfig
	}{
		{"no addresses: no SNAT source, the default ports", NodeInfo{}, Options{}, SNATConfig{PortMin: 61000, PortMax: 65535}},
		{"the first InternalIP of each family", nodeWith("ext:203.0.113.10", "192.0.2.10", "192.0.2.11", "2001:db8::10"), Options{SNATPorts: [2]uint16{40000, 40999}},
			SNATConfig{Addr4: netip.MustParseAddr("192.0.2.10"), Addr6: netip.MustParseAddr("2001:db8::10"), PortMin: 40000, PortMax: 40999}},
		{"an ExternalIP when the family has no InternalIP", nodeWith("192.0.2.10", "ext:2001:db8::99", "ext:2001:db8::98"), Options{},
			SNATConfig{Addr4: netip.MustParseAddr("192.0.2.10"), Addr6: netip.MustParseAddr("2001:db8::99"), PortMin: 61000, PortMax: 65535}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := BuildWithOptions(nil, nil, tc.node, tc.opts)
			if state.SNAT != tc.want {
				t.Errorf("SNAT = %+v, want %+v", state.SNAT, tc.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	testCases := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"zero value", Options{}, ""},
		{"a port range", Options{SNATPorts: [2]uint16{40000, 40000}}, ""},
		{"a reversed port range", Options{SNATPorts: [2]uint16{40001, 40000}}, "SNAT ports 40001-40000"},
		{"port 0", Options{SNATPorts: [2]uint16{0, 40000}}, "SNAT ports 0-40000"},
		{"an invalid prefix", Options{ExternalIPAllow: []netip.Prefix{{}}}, "externalIPAllow: invalid Prefix is not a valid prefix"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
