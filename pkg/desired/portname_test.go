package desired

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A Service port that no EndpointSlice port serves (a targetPort naming a
// container port the pods lack, or a hand-written slice with another port
// name) gets one error per Service port saying so, and its frontend
// refuses connects; a Service whose slices have no endpoints yet gets none.
func TestServicePortWithoutSlicePort(t *testing.T) {
	web := func(families int, ports ...corev1.ServicePort) *corev1.Service {
		return makeTestService("default", "web", func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}[:families]
			s.Spec.Ports = ports
		})
	}
	http := makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromString("web"))
	dns := makeServicePort("dns", 53, corev1.ProtocolUDP, intstr.FromInt32(5353))
	slice := func(num int, family discoveryv1.AddressType, addr string, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
		return makeTestEndpointSlice("default", "web", num, func(eps *discoveryv1.EndpointSlice) {
			eps.AddressType = family
			eps.Ports = ports
			if addr != "" {
				eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint(addr)}
			}
		})
	}
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	testCases := []struct {
		name       string
		svc        *corev1.Service
		slices     []*discoveryv1.EndpointSlice
		wantFlows  []string
		wantErrors []wantError
	}{
		{
			name:      "a slice port of another name",
			svc:       web(1, http),
			slices:    []*discoveryv1.EndpointSlice{slice(1, v4, "10.244.0.2", makeSlicePort("web", 8080, corev1.ProtocolTCP))},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
			wantErrors: []wantError{{"Service default/web",
				`port "http"/TCP: no EndpointSlice port has this name and protocol (slice ports: "web"/TCP); the frontend has no backends`}},
		},
		{
			name:      "pods without the targetPort: the controller lists their endpoints with no port",
			svc:       web(1, http),
			slices:    []*discoveryv1.EndpointSlice{slice(1, v4, "10.244.0.2")},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
			wantErrors: []wantError{{"Service default/web",
				`port "http"/TCP: no EndpointSlice port has this name and protocol (slice ports: none); the frontend has no backends`}},
		},
		{
			name:      "one port served, the other not: one error, for the other",
			svc:       web(1, http, dns),
			slices:    []*discoveryv1.EndpointSlice{slice(1, v4, "10.244.0.2", makeSlicePort("http", 8080, corev1.ProtocolTCP), makeSlicePort("dns", 5353, corev1.ProtocolTCP))},
			wantFlows: []string{"10.96.0.10:53/UDP default/web:dns -> REJECT", "10.96.0.10:80/TCP default/web:http -> 10.244.0.2:8080"},
			wantErrors: []wantError{{"Service default/web",
				`port "dns"/UDP: no EndpointSlice port has this name and protocol (slice ports: "dns"/TCP, "http"/TCP)`}},
		},
		{
			name: "dual-stack, neither family's slices serve it: one error for the port",
			svc:  web(2, http),
			slices: []*discoveryv1.EndpointSlice{
				slice(1, v4, "10.244.0.2", makeSlicePort("web", 8080, corev1.ProtocolTCP)),
				slice(2, v6, "fd00:244::2", makeSlicePort("web", 8080, corev1.ProtocolTCP)),
			},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT", "[fd00::10]:80/TCP default/web:http -> REJECT"},
			wantErrors: []wantError{{"Service default/web",
				`port "http"/TCP: no EndpointSlice port has this name and protocol (slice ports: "web"/TCP)`}},
		},
		{
			name: "some pods lack the port, others have it: no error",
			svc:  web(1, http),
			slices: []*discoveryv1.EndpointSlice{
				slice(1, v4, "10.244.0.2"),
				slice(2, v4, "10.244.0.3", makeSlicePort("http", 8080, corev1.ProtocolTCP)),
			},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> 10.244.0.3:8080"},
		},
		{
			name:      "a placeholder slice without endpoints says nothing about names",
			svc:       web(1, http),
			slices:    []*discoveryv1.EndpointSlice{slice(1, v4, "")},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
		},
		{
			name:      "no slices yet: no error",
			svc:       web(1, http),
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
		},
		{
			name:      "slices of the other family only say nothing about this one",
			svc:       web(1, http),
			slices:    []*discoveryv1.EndpointSlice{slice(1, v6, "fd00:244::2", makeSlicePort("web", 8080, corev1.ProtocolTCP))},
			wantFlows: []string{"10.96.0.10:80/TCP default/web:http -> REJECT"},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			state, errs := Build([]*corev1.Service{tc.svc}, tc.slices, NodeInfo{Name: "node-1"})
			if got := flows(t, state); !slices.Equal(got, tc.wantFlows) {
				t.Errorf("flows:\ngot\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.wantFlows, "\n\t"))
			}
			checkErrors(t, errs, tc.wantErrors)
		})
	}
}
