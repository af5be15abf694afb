package desired

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// The annotation, else the default option, makes a Service's north-south
// frontends Maglev ones; a ClusterIP never is (the socket hooks pick).
func TestLBAlgorithm(t *testing.T) {
	annotated := func(v string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Annotations = map[string]string{LBAlgorithmAnnotation: v} }
	}
	cases := []struct {
		name       string
		annotation func(*corev1.Service)
		def        LBAlgorithm
		wantMaglev []string // frontends with Maglev set
		wantErr    bool
	}{
		{"no annotation, default random", nil, Random, nil, false},
		{"no annotation, default maglev", nil, Maglev, []string{"127.0.0.1:30080/TCP", "192.0.2.10:30080/TCP"}, false},
		{"annotated maglev", annotated("maglev"), Random, []string{"127.0.0.1:30080/TCP", "192.0.2.10:30080/TCP"}, false},
		{"annotated random beats a maglev default", annotated("random"), Maglev, nil, false},
		{"a value it cannot read: reported, the default used", annotated("round-robin"), Random, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := webSvc(corev1.ServiceTypeNodePort, []string{"10.96.0.10"}, tc.annotation)
			state, errs := BuildWithOptions([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{webSlice(1, discoveryv1.AddressTypeIPv4, "10.244.1.2")},
				nodeWith("192.0.2.10"), Options{LBAlgorithm: tc.def})
			var got []string
			for fe, e := range state.Frontends {
				if e.Maglev {
					got = append(got, fe.String())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.wantMaglev) {
				t.Errorf("Maglev frontends %v, want %v", got, tc.wantMaglev)
			}
			if (len(errs) > 0) != tc.wantErr {
				t.Errorf("problems %v, want some: %v", errs, tc.wantErr)
			}
		})
	}
}
