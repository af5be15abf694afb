package desired

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// A change the view does not see must build nothing different, and a
// change it sees must be one the builder reads.
func TestServiceView(t *testing.T) {
	base := func() *corev1.Service {
		return makeTestService("default", "web", func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.10"
			s.Spec.ClusterIPs = []string{"10.96.0.10"}
			s.Spec.Selector = map[string]string{"app": "web"}
			s.Spec.Ports = []corev1.ServicePort{makeServicePort("http", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
		})
	}
	testCases := []struct {
		name      string
		change    func(*corev1.Service)
		wantEqual bool
	}{
		{"the selector is not read", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "other"} }, true},
		{"an unrelated annotation is not read", func(s *corev1.Service) { s.Annotations = map[string]string{"team": "web"} }, true},
		{"the status conditions are not read", func(s *corev1.Service) {
			s.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
		}, true},
		{"a hostname-only ingress is not read", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
		}, true},
		{"an ingress IP in Proxy mode is not read", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)}}
		}, true},
		{"an ingress IP is read", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
		}, false},
		{"an ingress IP in VIP mode is read", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
		}, false},
		{"a nodePort is read", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, false},
		{"the creationTimestamp is read: it decides between new claims on one frontend", func(s *corev1.Service) {
			s.CreationTimestamp = metav1.Unix(1700000000, 0)
		}, false},
		{"externalIPs are read", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7"} }, false},
		{"externalTrafficPolicy Local is read", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, false},
		{"externalTrafficPolicy Cluster reads as unset", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}, true},
		{"healthCheckNodePort is read", func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 32000 }, false},
		{"loadBalancerSourceRanges are read", func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
		}, false},
		{"ipFamilies are not read: the clusterIPs carry the families", func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		}, true},
		{"the targetPort is not read (the slices carry it)", func(s *corev1.Service) {
			s.Spec.Ports[0].TargetPort = intstr.FromInt32(9090)
		}, true},
		{"the resource version is not read", func(s *corev1.Service) { s.ResourceVersion = "7" }, true},
		{"a clusterIP is read", func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.11"} }, false},
		{"a second clusterIP is read", func(s *corev1.Service) { s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00::10") }, false},
		{"the type is read", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, false},
		{"a port number is read", func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 }, false},
		{"a port name is read", func(s *corev1.Service) { s.Spec.Ports[0].Name = "web" }, false},
		{"a port protocol is read", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }, false},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			before, after := base(), base()
			tc.change(after)
			if got := ServiceViewOf(before).Equal(ServiceViewOf(after)); got != tc.wantEqual {
				t.Errorf("views equal = %t, want %t:\nbefore %+v\nafter  %+v", got, tc.wantEqual, ServiceViewOf(before), ServiceViewOf(after))
			}
			if tc.wantEqual {
				b, _ := Build([]*corev1.Service{before}, nil, NodeInfo{})
				a, _ := Build([]*corev1.Service{after}, nil, NodeInfo{})
				if !slices.Equal(flows(t, b), flows(t, a)) {
					t.Errorf("equal views built different states: %v and %v", flows(t, b), flows(t, a))
				}
			}
		})
	}
}

// Whitespace around a source range, which validation lets through, does not
// make a change.
func TestServiceViewTrimsSourceRanges(t *testing.T) {
	svc := makeTestService("default", "web", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{" 192.0.2.0/24 "} })
	if got := ServiceViewOf(svc).LoadBalancerSourceRanges; !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("LoadBalancerSourceRanges = %q, want [192.0.2.0/24]", got)
	}
}

func TestServiceViewTakesTheSingularClusterIP(t *testing.T) {
	svc := makeTestService("default", "web", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" })
	if got := ServiceViewOf(svc).ClusterIPs; !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Errorf("ClusterIPs = %v, want [10.96.0.10]", got)
	}
}
