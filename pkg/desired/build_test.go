package desired

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// makeTestService builds a ClusterIP Service the way kube-proxy's tests do:
// the caller fills in the spec.
func makeTestService(namespace, name string, svcFunc func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
	}
	svcFunc(svc)
	return svc
}

// makeTestEndpointSlice builds slice number sliceNum of Service name, labelled
// the way the endpointslice controller labels it.
func makeTestEndpointSlice(namespace, name string, sliceNum int, epsFunc func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      fmt.Sprintf("%s-%d", name, sliceNum),
			Labels:    map[string]string{discoveryv1.LabelServiceName: name},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	epsFunc(eps)
	return eps
}

func makeServicePort(name string, port int32, proto corev1.Protocol, targetPort intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: proto, TargetPort: targetPort}
}

func makeSlicePort(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(proto)}
}

// endpoint builds one endpoint; nil conditions stay nil so that the API's
// defaults are what the test exercises.
func endpoint(addr string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating},
	}
}

func readyEndpoint(addr string) discoveryv1.Endpoint {
	return endpoint(addr, ptr.To(true), ptr.To(true), ptr.To(false))
}

func terminatingEndpoint(addr string) discoveryv1.Endpoint {
	return endpoint(addr, ptr.To(false), ptr.To(true), ptr.To(true))
}

var (
	yes = ptr.To(true)
	no  = ptr.To(false)
)

// wantError is an error expected from Build: the object it names and a
// piece of what it says.
type wantError struct {
	object   string
	contains string
}

// flows renders a State as packet-flow rows, one per frontend, in
// frontend order; a node-local backend reads "(local)", and a frontend
// other than ClusterIP says its kind, its policy, its internal set and its
// source ranges:
//
//	10.96.0.10:80/TCP default/nginx:http -> 10.244.0.2:8080 10.244.0.3:8080
//	10.96.0.10:81/TCP default/nginx:b -> (terminating 10.244.0.5:8081)
//	10.96.0.10:82/TCP default/nginx:c -> REJECT
//	192.0.2.10:30080/TCP default/web:http -> 10.244.0.2:8080(local) kind=NodePort ext-local internal=[10.244.0.2:8080(local) 10.244.1.2:8080]
func flows(t *testing.T, state *State) []string {
	t.Helper()
	var rows []string
	for _, svc := range state.Sorted() {
		if state.Frontends[svc.Frontend] != svc {
			t.Errorf("service %s is stored under another frontend", svc.Frontend)
		}
		row := svc.Frontend.String() + " " + svc.Name.String() + " -> " + setRow(t, svc, svc.BackendSet)
		if svc.Kind != ClusterIP {
			row += " kind=" + svc.Kind.String()
		}
		if svc.ExternalLocal {
			row += " ext-local"
		}
		if svc.Internal != nil {
			row += " internal=[" + setRow(t, svc, *svc.Internal) + "]"
		}
		if len(svc.SourceRanges) > 0 {
			row += fmt.Sprintf(" ranges=%v", svc.SourceRanges)
		}
		rows = append(rows, row)
	}
	return rows
}

func setRow(t *testing.T, svc *FrontendEntry, set BackendSet) string {
	t.Helper()
	var parts []string
	for _, be := range set.Active {
		parts = append(parts, backendString(t, svc, be))
	}
	if len(set.Terminating) > 0 {
		var terminating []string
		for _, be := range set.Terminating {
			terminating = append(terminating, backendString(t, svc, be))
		}
		parts = append(parts, "(terminating "+strings.Join(terminating, " ")+")")
	}
	if len(parts) == 0 {
		return "REJECT"
	}
	return strings.Join(parts, " ")
}

func backendString(t *testing.T, svc *FrontendEntry, be Backend) string {
	t.Helper()
	if be.Proto != svc.Frontend.Proto {
		t.Errorf("frontend %s has backend %s of another protocol", svc.Frontend, be)
	}
	s := netip.AddrPortFrom(be.Addr, be.Port).String()
	if be.Local {
		s += "(local)"
	}
	return s
}

func TestBuild(t *testing.T) {
	http := intstr.FromString("http")
	p8080 := intstr.FromInt32(8080)

	nginx := makeTestService("default", "nginx", func(svc *corev1.Service) {
		svc.Spec.ClusterIP = "10.96.0.50"
		svc.Spec.ClusterIPs = []string{"10.96.0.50"}
		svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
	})

	testCases := []struct {
		name       string
		services   []*corev1.Service
		slices     []*discoveryv1.EndpointSlice
		wantFlows  []string
		wantErrors []wantError
	}{
		{
			name:     "single port, one ready endpoint",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.2:8080"},
		},
		{
			name: "two ports, each with its own target port",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{
					makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080)),
					makeServicePort("https", 443, corev1.ProtocolTCP, intstr.FromInt32(8443)),
				}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{
						makeSlicePort("https", 8443, corev1.ProtocolTCP),
						makeSlicePort("http", 8080, corev1.ProtocolTCP),
					}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.3"), readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{
				"10.96.0.10:80/TCP default/web:http -> 10.244.0.2:8080 10.244.0.3:8080",
				"10.96.0.10:443/TCP default/web:https -> 10.244.0.2:8443 10.244.0.3:8443",
			},
		},
		{
			name: "named targetPort is resolved by the slice port of the same name",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, http)}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> 10.244.0.2:8080"},
		},
		{
			name: "unnamed port matches an unnamed slice port",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, "", p8080)} // protocol defaults to TCP
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}} // nil name, nil protocol
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.10:80/TCP default/web -> 10.244.0.2:8080"},
		},
		{
			name: "dual stack: each ClusterIP gets the endpoints of its own family",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.ClusterIPs = []string{"10.96.0.10", "fd00:10:96::10"}
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
				makeTestEndpointSlice("default", "web", 2, func(eps *discoveryv1.EndpointSlice) {
					eps.AddressType = discoveryv1.AddressTypeIPv6
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("fd00:10:244::2")}
				}),
			},
			wantFlows: []string{
				"10.96.0.10:80/TCP default/web:http -> 10.244.0.2:8080",
				"[fd00:10:96::10]:80/TCP default/web:http -> [fd00:10:244::2]:8080",
			},
		},
		{
			name: "IPv6-only Service ignores IPv4 slices",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "fd00:10:96::10"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"[fd00:10:96::10]:80/TCP default/web:http -> REJECT"},
		},
		{
			name:     "several slices are merged; a duplicate endpoint keeps its most usable condition",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{
						readyEndpoint("10.244.0.2"),
						terminatingEndpoint("10.244.0.3"),   // ready in slice 2: active wins
						endpoint("10.244.0.4", no, no, no),  // terminating in slice 2: terminating wins
						terminatingEndpoint("10.244.0.6"),   // only terminating anywhere
						endpoint("10.244.0.7", no, no, yes), // not serving anywhere
					}
				}),
				makeTestEndpointSlice("default", "nginx", 2, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{
						readyEndpoint("10.244.0.2"), // plain duplicate
						readyEndpoint("10.244.0.3"),
						terminatingEndpoint("10.244.0.4"),
						readyEndpoint("10.244.0.5"),
						endpoint("10.244.0.7", no, no, yes),
					}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.2:8080 10.244.0.3:8080 10.244.0.5:8080 (terminating 10.244.0.4:8080 10.244.0.6:8080)"},
		},
		{
			name:     "the same address on two ports of one slice is two backends",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
				// A second slice whose port of the same name has another
				// number, as during a rollout that changes the container port.
				makeTestEndpointSlice("default", "nginx", 2, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 9090, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.2:8080 10.244.0.2:9090"},
		},
		{
			name:     "conditions as kube-proxy reads them: nil ready is ready, nil serving is serving, nil terminating is false",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{
						endpoint("10.244.0.1", nil, nil, nil), // all nil: ready
						endpoint("10.244.0.2", yes, nil, nil), // ready
						endpoint("10.244.0.3", no, nil, nil),  // not ready, serving but not terminating: unused
						endpoint("10.244.0.4", no, yes, nil),  // serving but not terminating: unused
						endpoint("10.244.0.5", no, yes, yes),  // serving and terminating
						endpoint("10.244.0.6", no, no, yes),   // terminating, no longer serving: unused
						endpoint("10.244.0.7", yes, no, yes),  // ready wins whatever else is said
						endpoint("10.244.0.8", nil, nil, yes), // ready nil: ready even if terminating
						endpoint("10.244.0.9", no, nil, yes),  // serving nil is serving (kube-proxy's EndpointSliceCache): terminating fallback
						endpoint("10.244.0.10", nil, no, nil), // ready nil, serving false: still ready
					}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.1:8080 10.244.0.2:8080 10.244.0.7:8080 10.244.0.8:8080 10.244.0.10:8080 (terminating 10.244.0.5:8080 10.244.0.9:8080)"},
		},
		{
			name:     "only terminating endpoints: Active empty, Terminating holds them",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{terminatingEndpoint("10.244.0.3"), terminatingEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> (terminating 10.244.0.2:8080 10.244.0.3:8080)"},
		},
		{
			name:      "no slices: the frontend exists and rejects",
			services:  []*corev1.Service{nginx},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> REJECT"},
		},
		{
			name:     "no usable endpoint: reject",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{endpoint("10.244.0.2", no, no, no)}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> REJECT"},
		},
		{
			name:     "slice port of another name or protocol does not match: reject",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{
						makeSlicePort("metrics", 9090, corev1.ProtocolTCP),
						makeSlicePort("http", 8080, corev1.ProtocolUDP),
						{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP)}, // nil port: skipped
					}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> REJECT"},
			wantErrors: []wantError{{"Service default/nginx",
				`port "http"/TCP: no EndpointSlice port has this name and protocol (slice ports: "http"/UDP, "metrics"/TCP); the frontend has no backends`}},
		},
		{
			name: "headless Service gets nothing",
			services: []*corev1.Service{makeTestService("default", "db", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = corev1.ClusterIPNone
				svc.Spec.ClusterIPs = []string{corev1.ClusterIPNone}
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("pg", 5432, corev1.ProtocolTCP, intstr.FromInt32(5432))}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "db", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("pg", 5432, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
		},
		{
			name: "ExternalName Service gets nothing",
			services: []*corev1.Service{makeTestService("default", "ext", func(svc *corev1.Service) {
				svc.Spec.Type = corev1.ServiceTypeExternalName
				svc.Spec.ExternalName = "example.com"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
			})},
		},
		{
			name: "Service without a clusterIP gets nothing",
			services: []*corev1.Service{makeTestService("default", "pending", func(svc *corev1.Service) {
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
			})},
		},
		{
			name: "clusterIPs win over clusterIP",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.99"
				svc.Spec.ClusterIPs = []string{"10.96.0.10"}
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
			})},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
		},
		{
			name: "LoadBalancer Service still gets its ClusterIP frontend, and on a node without addresses a loopback NodePort",
			services: []*corev1.Service{makeTestService("default", "lb", func(svc *corev1.Service) {
				svc.Spec.Type = corev1.ServiceTypeLoadBalancer
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, TargetPort: p8080}}
			})},
			wantFlows: []string{
				"10.96.0.10:80/TCP default/lb:http -> REJECT",
				"127.0.0.1:30080/TCP default/lb:http -> REJECT kind=NodePort",
			},
		},
		{
			name: "selector-less Service with a hand-made slice",
			services: []*corev1.Service{makeTestService("default", "external-db", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.20"
				svc.Spec.Ports = []corev1.ServicePort{makeServicePort("", 5432, corev1.ProtocolTCP, intstr.FromInt32(5432))}
			})},
			slices: []*discoveryv1.EndpointSlice{{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "default",
					Name:      "external-db-by-hand",
					Labels:    map[string]string{discoveryv1.LabelServiceName: "external-db"},
				},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](5432)}},
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.1.20"}}},
			}},
			wantFlows: []string{"10.96.0.20:5432/TCP default/external-db -> 192.168.1.20:5432"},
		},
		{
			name:     "only the first address of an endpoint is used",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2", "10.244.0.99"}}}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.2:8080"},
		},
		{
			name:     "wrong-family and unparseable addresses: errors naming the slice, the other endpoints still used",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{
						readyEndpoint("fd00:10:244::2"),
						readyEndpoint("10.244.0.300"),
						readyEndpoint("::ffff:10.244.0.4"),
						{},
						readyEndpoint("10.244.0.2"),
					}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> 10.244.0.2:8080"},
			wantErrors: []wantError{
				{"EndpointSlice default/nginx-1", `endpoint 0: address fd00:10:244::2 is IPv6 in a slice of addressType IPv4`},
				{"EndpointSlice default/nginx-1", `endpoint 1: ParseAddr("10.244.0.300")`},
				{"EndpointSlice default/nginx-1", `endpoint 2: address "::ffff:10.244.0.4" is IPv4-mapped IPv6`},
				{"EndpointSlice default/nginx-1", `endpoint 3: no addresses`},
			},
		},
		{
			name: "a bad slice is reported once however many frontends read it",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{
					makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080)),
					makeServicePort("alt", 8000, corev1.ProtocolTCP, intstr.FromInt32(8080)),
				}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.AddressType = "ipv4"
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
				makeTestEndpointSlice("default", "web", 2, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{
						makeSlicePort("http", 70000, corev1.ProtocolTCP),
						makeSlicePort("alt", 8080, "tcp"),
					}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{
				"10.96.0.10:80/TCP default/web:http -> REJECT",
				"10.96.0.10:8000/TCP default/web:alt -> REJECT",
			},
			wantErrors: []wantError{
				{"EndpointSlice default/web-1", `read addressType: "ipv4" is not IPv4, IPv6 or FQDN`},
				{"EndpointSlice default/web-2", `port "http": number 70000 is outside 1-65535`},
				{"EndpointSlice default/web-2", `port "alt": protocol "tcp" is not TCP, UDP or SCTP`},
				{"Service default/web", `port "http"/TCP: no EndpointSlice port has this name and protocol (slice ports: none)`},
				{"Service default/web", `port "alt"/TCP: no EndpointSlice port has this name and protocol (slice ports: none)`},
			},
		},
		{
			name:     "FQDN slices are ignored",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.AddressType = discoveryv1.AddressTypeFQDN
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("db.example.com")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> REJECT"},
		},
		{
			name: "unparseable clusterIP: error naming the Service, its other family still built",
			services: []*corev1.Service{
				makeTestService("default", "bad", func(svc *corev1.Service) {
					svc.Spec.ClusterIPs = []string{"10.96.0.300", "fd00:10:96::10"}
					svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
				}),
				nginx,
			},
			wantFlows: []string{
				"10.96.0.50:80/TCP default/nginx:http -> REJECT",
				"[fd00:10:96::10]:80/TCP default/bad:http -> REJECT",
			},
			wantErrors: []wantError{{"Service default/bad", `parse clusterIP: ParseAddr("10.96.0.300")`}},
		},
		{
			name: "SCTP port: error naming the Service, its other ports still built",
			services: []*corev1.Service{makeTestService("default", "mixed", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{
					makeServicePort("sig", 3868, corev1.ProtocolSCTP, intstr.FromInt32(3868)),
					makeServicePort("http", 80, corev1.ProtocolTCP, p8080),
				}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "mixed", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{
						makeSlicePort("sig", 3868, corev1.ProtocolSCTP),
						makeSlicePort("http", 8080, corev1.ProtocolTCP),
					}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows:  []string{"10.96.0.10:80/TCP default/mixed:http -> 10.244.0.2:8080"},
			wantErrors: []wantError{{"Service default/mixed", `port "sig" (3868/SCTP): protocol SCTP is not supported: the port is left unprogrammed, the Service's other ports work`}},
		},
		{
			name: "UDP and TCP on one port number are two frontends",
			services: []*corev1.Service{makeTestService("kube-system", "kube-dns", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{
					makeServicePort("dns", 53, corev1.ProtocolUDP, intstr.FromInt32(53)),
					makeServicePort("dns-tcp", 53, corev1.ProtocolTCP, intstr.FromInt32(53)),
				}
			})},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("kube-system", "kube-dns", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{
						makeSlicePort("dns-tcp", 53, corev1.ProtocolTCP),
						makeSlicePort("dns", 53, corev1.ProtocolUDP),
					}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.5"), readyEndpoint("10.244.0.4")}
				}),
			},
			wantFlows: []string{
				"10.96.0.10:53/TCP kube-system/kube-dns:dns-tcp -> 10.244.0.4:53 10.244.0.5:53",
				"10.96.0.10:53/UDP kube-system/kube-dns:dns -> 10.244.0.4:53 10.244.0.5:53",
			},
		},
		{
			name:     "slices of another Service or namespace are ignored",
			services: []*corev1.Service{nginx},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("other", "nginx", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.1.2")}
				}),
				makeTestEndpointSlice("default", "apache", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.2.2")}
				}),
				makeTestEndpointSlice("default", "nginx", 2, func(eps *discoveryv1.EndpointSlice) {
					delete(eps.Labels, discoveryv1.LabelServiceName) // no owner at all
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.3.2")}
				}),
			},
			wantFlows: []string{"10.96.0.50:80/TCP default/nginx:http -> REJECT"},
		},
		{
			name: "two Services with one ClusterIP:port created at the same time: the first by namespace/name keeps it",
			services: []*corev1.Service{
				makeTestService("default", "web-b", func(svc *corev1.Service) {
					svc.Spec.ClusterIP = "10.96.0.10"
					svc.Spec.Ports = []corev1.ServicePort{
						makeServicePort("http", 80, corev1.ProtocolTCP, p8080),
						makeServicePort("alt", 81, corev1.ProtocolTCP, p8080),
					}
				}),
				makeTestService("default", "web-a", func(svc *corev1.Service) {
					svc.Spec.ClusterIP = "10.96.0.10"
					svc.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, p8080)}
				}),
			},
			slices: []*discoveryv1.EndpointSlice{
				makeTestEndpointSlice("default", "web-b", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP), makeSlicePort("alt", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.3")}
				}),
				makeTestEndpointSlice("default", "web-a", 1, func(eps *discoveryv1.EndpointSlice) {
					eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("http", 8080, corev1.ProtocolTCP)}
					eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint("10.244.0.2")}
				}),
			},
			wantFlows: []string{
				"10.96.0.10:80/TCP default/web-a:http -> 10.244.0.2:8080",
				"10.96.0.10:81/TCP default/web-b:alt -> 10.244.0.3:8080",
			},
			wantErrors: []wantError{{"Service default/web-b", "claim frontend 10.96.0.10:80/TCP: Service default/web-a holds it"}},
		},
		{
			name: "two ports of one Service with one port number and protocol",
			services: []*corev1.Service{makeTestService("default", "web", func(svc *corev1.Service) {
				svc.Spec.ClusterIP = "10.96.0.10"
				svc.Spec.Ports = []corev1.ServicePort{
					makeServicePort("http", 80, corev1.ProtocolTCP, p8080),
					makeServicePort("again", 80, corev1.ProtocolTCP, p8080),
					makeServicePort("zero", 0, corev1.ProtocolTCP, p8080),
				}
			})},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
			wantErrors: []wantError{
				{"Service default/web", `port "zero": number 0 is outside 1-65535`},
				{"Service default/web", `claim frontend 10.96.0.10:80/TCP for port "again": another port of this Service has it`},
			},
		},
	}

	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			state, errs := Build(tc.services, tc.slices, NodeInfo{Name: "node-1"})
			if got := flows(t, state); !slices.Equal(got, tc.wantFlows) {
				t.Errorf("flows:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.wantFlows, "\n\t"))
			}
			checkErrors(t, errs, tc.wantErrors)

			// The inputs' order must not matter: informers and directory
			// reads list objects in whatever order they like.
			reversedState, reversedErrs := Build(reversed(tc.services), reversed(tc.slices), NodeInfo{Name: "node-1"})
			if got, want := flows(t, reversedState), flows(t, state); !slices.Equal(got, want) {
				t.Errorf("flows with inputs reversed:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			if got, want := errorStrings(reversedErrs), errorStrings(errs); !slices.Equal(got, want) {
				t.Errorf("errors with inputs reversed:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}

func checkErrors(t *testing.T, errs []error, want []wantError) {
	t.Helper()
	for i, err := range errs {
		var objErr *ObjectError
		if !errors.As(err, &objErr) {
			t.Errorf("error %d is %T, not *ObjectError: %v", i, err, err)
			continue
		}
		if i >= len(want) {
			t.Errorf("unexpected error: %v", err)
			continue
		}
		if objErr.Object() != want[i].object || !strings.Contains(err.Error(), want[i].contains) {
			t.Errorf("error %d:\ngot  %v\nwant one naming %s and saying %q", i, err, want[i].object, want[i].contains)
		}
	}
	for _, w := range want[min(len(errs), len(want)):] {
		t.Errorf("missing error naming %s and saying %q", w.object, w.contains)
	}
}

func errorStrings(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

func reversed[T any](in []T) []T {
	out := slices.Clone(in)
	slices.Reverse(out)
	return out
}

func TestSortedOrdersByFamilyAddressPortProtocol(t *testing.T) {
	frontends := []Frontend{
		{netip.MustParseAddr("fd00::1"), 80, TCP},
		{netip.MustParseAddr("10.96.0.10"), 53, UDP},
		{netip.MustParseAddr("10.96.0.2"), 443, TCP},
		{netip.MustParseAddr("10.96.0.10"), 53, TCP},
		{netip.MustParseAddr("10.96.0.10"), 8080, TCP},
	}
	state := &State{Frontends: map[Frontend]*FrontendEntry{}}
	for _, fe := range frontends {
		state.Frontends[fe] = &FrontendEntry{Frontend: fe}
	}
	var got []string
	for _, svc := range state.Sorted() {
		got = append(got, svc.Frontend.String())
	}
	want := []string{"10.96.0.2:443/TCP", "10.96.0.10:53/TCP", "10.96.0.10:53/UDP", "10.96.0.10:8080/TCP", "[fd00::1]:80/TCP"}
	if !slices.Equal(got, want) {
		t.Errorf("Sorted() = %v, want %v", got, want)
	}
}

func TestStrings(t *testing.T) {
	testCases := []struct {
		name string
		got  fmt.Stringer
		want string
	}{
		{"IPv4 frontend", Frontend{netip.MustParseAddr("10.96.0.10"), 80, TCP}, "10.96.0.10:80/TCP"},
		{"IPv6 frontend", Frontend{netip.MustParseAddr("fd00::10"), 80, UDP}, "[fd00::10]:80/UDP"},
		{"backend", Backend{Addr: netip.MustParseAddr("10.244.0.2"), Port: 8080, Proto: TCP}, "10.244.0.2:8080/TCP"},
		{"named port", ServicePortName{"default", "nginx", "http"}, "default/nginx:http"},
		{"unnamed port", ServicePortName{"default", "nginx", ""}, "default/nginx"},
		{"unknown protocol", Protocol(132), "Protocol(132)"},
		{"kind", ClusterIP, "ClusterIP"},
		{"NodePort kind", NodePort, "NodePort"},
		{"LoadBalancer kind", LoadBalancer, "LoadBalancer"},
		{"ExternalIP kind", ExternalIP, "ExternalIP"},
		{"unknown kind", FrontendKind(0), "FrontendKind(0)"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.got.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
