package dir

import (
	"time"

	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestStoreKeepsWhatIsRead stores objects as `kubectl get -o yaml` gives
// them and checks that what comes back is the object without the fields
// store leaves out, and with every spec and endpoint field.
func TestStoreKeepsWhatIsRead(t *testing.T) {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: "web", Namespace: "shop", UID: "1234", ResourceVersion: "99",
			CreationTimestamp: metav1.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
			Labels:            map[string]string{"app": "web", discoveryv1.LabelServiceName: "web"},
			Annotations: map[string]string{
				corev1.LastAppliedConfigAnnotation:      `{"apiVersion":"v1","kind":"Service"}`,
				corev1.EndpointsLastChangeTriggerTime:   "2026-12-01T10:00:00Z",
				"service.kubernetes.io/topology-mode":   "Auto",
				"service.beta.kubernetes.io/some-cloud": "x",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		}
	}
	leaveOut := func(m *metav1.ObjectMeta) {
		m.ManagedFields = nil
		delete(m.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	service := &corev1.Service{
		ObjectMeta: meta(),
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), NodePort: 30080, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http")},
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP},
			},
			Selector: map[string]string{"app": "web"}, ExternalIPs: []string{"192.0.2.1"},
			SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			HealthCheckNodePort: 31000, PublishNotReadyAddresses: true, LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
			TrafficDistribution: ptr.To("PreferClose"), AllocateLoadBalancerNodePorts: ptr.To(false),
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}},
			Conditions:   []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Up"}},
		},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  meta(),
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.244.1.5", "10.244.1.6"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
			Hostname:   ptr.To("web-0"), NodeName: ptr.To("node-a"), Zone: ptr.To("zone-1"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-0", Namespace: "shop"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-1"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-a"}}},
		}, {
			Addresses: []string{"10.244.2.5"},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP), AppProtocol: ptr.To("http")}},
	}

	testCases := []struct {
		name  string
		check func(t *testing.T)
	}{
		{
			name: "a Service keeps its whole spec, metadata and load balancer status; managedFields, last-applied and conditions go",
			check: func(t *testing.T) {
				stored := store(&fileObjects{services: []*corev1.Service{service.DeepCopy()}})
				want := service.DeepCopy()
				leaveOut(&want.ObjectMeta)
				want.Status.Conditions = nil
				want.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
				if got := stored.services[0].service(); !apiequality.Semantic.DeepEqual(got, want) {
					t.Errorf("stored Service decodes to\n%+v\nwant\n%+v", got, want)
				}
			},
		},
		{
			name: "an EndpointSlice keeps every endpoint and port field and the Service it belongs to",
			check: func(t *testing.T) {
				stored := store(&fileObjects{slices: []*discoveryv1.EndpointSlice{slice.DeepCopy()}})
				want := slice.DeepCopy()
				leaveOut(&want.ObjectMeta)
				want.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
				got := &stored.slices[0]
				if decoded := got.slice(); !apiequality.Semantic.DeepEqual(decoded, want) {
					t.Errorf("stored EndpointSlice decodes to\n%+v\nwant\n%+v", decoded, want)
				}
				if !got.ofService || got.service.Namespace != "shop" || got.service.Name != "web" {
					t.Errorf("stored EndpointSlice belongs to %v (%v), want shop/web", got.service, got.ofService)
				}
			},
		},
		{
			name: "each decode is a new object: a caller that changes one changes nothing stored",
			check: func(t *testing.T) {
				stored := store(&fileObjects{services: []*corev1.Service{service.DeepCopy()}})
				first := stored.services[0].service()
				first.Spec.ClusterIP = "10.96.9.9"
				if got := stored.services[0].service().Spec.ClusterIP; got != "10.96.0.10" {
					t.Errorf("clusterIP after a caller changed its copy: %s", got)
				}
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, tc.check)
	}
}
