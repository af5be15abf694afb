package desired

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// manyEndpointsService is Service default/big, ClusterIP 10.96.0.10:80,
// with ready endpoints then terminating ones, in EndpointSlices of 1,000
// as the endpointslice controller writes them.
func manyEndpointsService(ready, terminating int) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := makeTestService("default", "big", func(s *corev1.Service) {
		s.Spec.ClusterIP = "10.96.0.10"
		s.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
	})
	var out []*discoveryv1.EndpointSlice
	for i := 0; i < ready+terminating; i++ {
		if i%1000 == 0 {
			out = append(out, makeTestEndpointSlice("default", "big", len(out), func(eps *discoveryv1.EndpointSlice) {
				eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("", 8080, corev1.ProtocolTCP)}
			}))
		}
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		eps := out[len(out)-1]
		if i < ready {
			eps.Endpoints = append(eps.Endpoints, readyEndpoint(addr))
		} else {
			eps.Endpoints = append(eps.Endpoints, terminatingEndpoint(addr))
		}
	}
	return svc, out
}

// A frontend holds at most MaxBackends backends, active and terminating
// together; the first by address are kept, active first, and one error per
// frontend says how many were left out.
func TestBackendLimit(t *testing.T) {
	testCases := []struct {
		name                        string
		ready, terminating          int
		wantActive, wantTerminating int
		wantError                   string // "" for none
	}{
		{"70,000 ready endpoints", 70000, 0, MaxBackends, 0,
			"program frontend 10.96.0.10:80/TCP: 4465 of 70000 backends left out: a frontend holds at most 65535 backends"},
		{"exactly 65,535 ready endpoints fit", 65535, 0, 65535, 0, ""},
		{"60,000 ready and 10,000 terminating: the terminating ones are cut", 60000, 10000, 60000, 5535,
			"program frontend 10.96.0.10:80/TCP: 4465 of 70000 backends left out"},
		{"70,000 terminating endpoints", 0, 70000, 0, MaxBackends,
			"program frontend 10.96.0.10:80/TCP: 4465 of 70000 backends left out"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			svc, eps := manyEndpointsService(tc.ready, tc.terminating)
			state, errs := Build([]*corev1.Service{svc}, eps, NodeInfo{Name: "node-1"})
			e := state.Frontends[frontendOf(t, "10.96.0.10:80/TCP")]
			if e == nil {
				t.Fatal("no frontend 10.96.0.10:80/TCP")
			}
			if len(e.Active) != tc.wantActive || len(e.Terminating) != tc.wantTerminating {
				t.Errorf("%d active and %d terminating backends, want %d and %d", len(e.Active), len(e.Terminating), tc.wantActive, tc.wantTerminating)
			}
			if tc.ready > 0 {
				if first := e.Active[0].Addr.String(); first != "10.0.0.0" {
					t.Errorf("the first backend kept is %s, want 10.0.0.0 (the first by address)", first)
				}
			}
			var want []wantError
			if tc.wantError != "" {
				want = []wantError{{"Service default/big", tc.wantError}}
			}
			checkErrors(t, errs, want)
		})
	}
}

// Both scopes of a frontend are capped, in one error.
func TestBackendLimitTwoScopes(t *testing.T) {
	e := &FrontendEntry{Frontend: frontendOf(t, "198.18.0.1:80/TCP")}
	for i := range 70000 {
		b := Backend{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 8080, Proto: TCP}
		e.Active = append(e.Active, b)
	}
	e.Internal = &BackendSet{Active: e.Active[:66000]}
	err := capFrontend(e)
	want := "program frontend 198.18.0.1:80/TCP: 4465 of 70000 backends left out, 465 of 66000 backends for clients on the node left out: a frontend holds at most 65535"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want one starting %q", err, want)
	}
	if len(e.Active) != MaxBackends || len(e.Internal.Active) != MaxBackends {
		t.Errorf("%d backends and %d for clients on the node, want %d each", len(e.Active), len(e.Internal.Active), MaxBackends)
	}
}
