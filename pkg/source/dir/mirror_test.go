package dir

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

func makeTestEndpoints(namespace, name string, epFunc func(*corev1.Endpoints)) *corev1.Endpoints {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	epFunc(ep)
	return ep
}

// makeMirroredSlice builds the slice mirrorEndpoints should make of
// Endpoints name; suffix is "<subset>-<family>".
func makeMirroredSlice(namespace, name, suffix string, family discoveryv1.AddressType, sliceFunc func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      name + "-mirror-" + suffix,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   "endpointslicemirroring-controller.k8s.io",
			},
		},
		AddressType: family,
	}
	sliceFunc(slice)
	return slice
}

func mirroredEndpoint(ip string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
}

func mirroredPort(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(proto)}
}

func TestMirrorEndpoints(t *testing.T) {
	testCases := []struct {
		name       string
		endpoints  *corev1.Endpoints
		want       []*discoveryv1.EndpointSlice
		wantErrors []string
	}{
		{
			name: "ready and not-ready addresses, ports with names and protocols",
			endpoints: makeTestEndpoints("default", "db", func(ep *corev1.Endpoints) {
				ep.Subsets = []corev1.EndpointSubset{{
					Addresses:         []corev1.EndpointAddress{{IP: "192.168.1.20"}, {IP: "192.168.1.21"}},
					NotReadyAddresses: []corev1.EndpointAddress{{IP: "192.168.1.22"}},
					Ports: []corev1.EndpointPort{
						{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP},
						{Name: "stats", Port: 9187, Protocol: corev1.ProtocolUDP, AppProtocol: ptr.To("prometheus")},
						{Name: "defaulted", Port: 9000},
					},
				}}
			}),
			want: []*discoveryv1.EndpointSlice{
				makeMirroredSlice("default", "db", "0-ipv4", discoveryv1.AddressTypeIPv4, func(s *discoveryv1.EndpointSlice) {
					s.Endpoints = []discoveryv1.Endpoint{
						mirroredEndpoint("192.168.1.20", true),
						mirroredEndpoint("192.168.1.21", true),
						mirroredEndpoint("192.168.1.22", false),
					}
					stats := mirroredPort("stats", 9187, corev1.ProtocolUDP)
					stats.AppProtocol = ptr.To("prometheus")
					s.Ports = []discoveryv1.EndpointPort{
						mirroredPort("pg", 5432, corev1.ProtocolTCP),
						stats,
						mirroredPort("defaulted", 9000, corev1.ProtocolTCP),
					}
				}),
			},
		},
		{
			name: "dual-family subsets: one slice per subset and family",
			endpoints: makeTestEndpoints("web", "api", func(ep *corev1.Endpoints) {
				ep.Subsets = []corev1.EndpointSubset{
					{
						Addresses:         []corev1.EndpointAddress{{IP: "fd00::20"}, {IP: "10.0.0.20"}},
						NotReadyAddresses: []corev1.EndpointAddress{{IP: "fd00::21"}},
						Ports:             []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
					},
					{
						Addresses: []corev1.EndpointAddress{{IP: "10.0.0.30"}},
						Ports:     []corev1.EndpointPort{{Name: "http", Port: 9090, Protocol: corev1.ProtocolTCP}},
					},
				}
			}),
			want: []*discoveryv1.EndpointSlice{
				makeMirroredSlice("web", "api", "0-ipv4", discoveryv1.AddressTypeIPv4, func(s *discoveryv1.EndpointSlice) {
					s.Endpoints = []discoveryv1.Endpoint{mirroredEndpoint("10.0.0.20", true)}
					s.Ports = []discoveryv1.EndpointPort{mirroredPort("http", 8080, corev1.ProtocolTCP)}
				}),
				makeMirroredSlice("web", "api", "0-ipv6", discoveryv1.AddressTypeIPv6, func(s *discoveryv1.EndpointSlice) {
					s.Endpoints = []discoveryv1.Endpoint{mirroredEndpoint("fd00::20", true), mirroredEndpoint("fd00::21", false)}
					s.Ports = []discoveryv1.EndpointPort{mirroredPort("http", 8080, corev1.ProtocolTCP)}
				}),
				makeMirroredSlice("web", "api", "1-ipv4", discoveryv1.AddressTypeIPv4, func(s *discoveryv1.EndpointSlice) {
					s.Endpoints = []discoveryv1.Endpoint{mirroredEndpoint("10.0.0.30", true)}
					s.Ports = []discoveryv1.EndpointPort{mirroredPort("http", 9090, corev1.ProtocolTCP)}
				}),
			},
		},
		{
			name: "nodeName, hostname, targetRef and labels are carried over",
			endpoints: makeTestEndpoints("default", "db", func(ep *corev1.Endpoints) {
				ep.Labels = map[string]string{"team": "storage", discoveryv1.LabelServiceName: "wrong"}
				ep.Subsets = []corev1.EndpointSubset{{
					Addresses: []corev1.EndpointAddress{{
						IP:        "192.168.1.20",
						Hostname:  "db-0",
						NodeName:  ptr.To("node-1"),
						TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "db-0"},
					}},
					Ports: []corev1.EndpointPort{{Port: 5432, Protocol: corev1.ProtocolTCP}},
				}}
			}),
			want: []*discoveryv1.EndpointSlice{
				makeMirroredSlice("default", "db", "0-ipv4", discoveryv1.AddressTypeIPv4, func(s *discoveryv1.EndpointSlice) {
					s.Labels["team"] = "storage"
					e := mirroredEndpoint("192.168.1.20", true)
					e.Hostname = ptr.To("db-0")
					e.NodeName = ptr.To("node-1")
					e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "db-0"}
					s.Endpoints = []discoveryv1.Endpoint{e}
					s.Ports = []discoveryv1.EndpointPort{mirroredPort("", 5432, corev1.ProtocolTCP)}
				}),
			},
		},
		{
			name: "unusable addresses are errors naming the subset; the rest is mirrored",
			endpoints: makeTestEndpoints("default", "db", func(ep *corev1.Endpoints) {
				ep.Subsets = []corev1.EndpointSubset{{
					Addresses:         []corev1.EndpointAddress{{IP: "192.168.1.300"}, {IP: "192.168.1.20"}, {IP: "fe80::1%eth0"}},
					NotReadyAddresses: []corev1.EndpointAddress{{IP: "::ffff:192.168.1.21"}, {IP: ""}},
					Ports:             []corev1.EndpointPort{{Port: 5432, Protocol: corev1.ProtocolTCP}},
				}}
			}),
			want: []*discoveryv1.EndpointSlice{
				makeMirroredSlice("default", "db", "0-ipv4", discoveryv1.AddressTypeIPv4, func(s *discoveryv1.EndpointSlice) {
					s.Endpoints = []discoveryv1.Endpoint{mirroredEndpoint("192.168.1.20", true)}
					s.Ports = []discoveryv1.EndpointPort{mirroredPort("", 5432, corev1.ProtocolTCP)}
				}),
			},
			wantErrors: []string{
				`mirror subset 0: ParseAddr("192.168.1.300"): IPv4 field has value >255`,
				`mirror subset 0: address "fe80::1%eth0" has a zone`,
				`mirror subset 0: address "::ffff:192.168.1.21" is IPv4-mapped IPv6, whose family is ambiguous`,
				`mirror subset 0: ParseAddr(""): unable to parse IP`,
			},
		},
		{
			name: "a subset without addresses makes no slice",
			endpoints: makeTestEndpoints("default", "db", func(ep *corev1.Endpoints) {
				ep.Subsets = []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Port: 5432}}}}
			}),
		},
	}

	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := mirrorEndpoints(tc.endpoints)
			if !reflect.DeepEqual(got, tc.want) {
				gotYAML, _ := yaml.Marshal(got)
				wantYAML, _ := yaml.Marshal(tc.want)
				t.Errorf("slices:\ngot\n%s\nwant\n%s", gotYAML, wantYAML)
			}
			var gotErrors []string
			for _, err := range errs {
				gotErrors = append(gotErrors, err.Error())
			}
			if !slices.Equal(gotErrors, tc.wantErrors) {
				t.Errorf("errors:\ngot  %q\nwant %q", gotErrors, tc.wantErrors)
			}
		})
	}
}
