package k8s

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/socklb/socklb/pkg/desired"
)

// The informers' caches hold objects trimmed of what socklb never reads;
// each case builds the desired state (or the node) from an object before
// and after trimming and wants the same, and the trimmed fields gone.
func TestTrimForCacheKeepsWhatTheBuildReads(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler"}}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.example/a:1"}, SizeBytes: 1 << 30}},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web",
			Annotations:   map[string]string{corev1.LastAppliedConfigAnnotation: "{}", "socklb.io/lb-algorithm": "maglev"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
		Status: corev1.ServiceStatus{Conditions: []metav1.Condition{{Type: "Ready"}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:          []string{"10.244.1.2"},
			Conditions:         discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName:           ptr.To("node-1"),
			Zone:               ptr.To("zone-a"),
			Hints:              &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}},
			TargetRef:          &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-a", UID: "0f3c"},
			DeprecatedTopology: map[string]string{"kubernetes.io/hostname": "node-1"},
		}},
	}
	trimmed := func(obj any) any {
		out, err := trimForCache(obj)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("the node reads the same and keeps its spec", func(t *testing.T) {
		before, errBefore := NodeInfoFromNode(node)
		after := trimmed(node.DeepCopy()).(*corev1.Node)
		got, errAfter := NodeInfoFromNode(after)
		if !got.Equal(before) || (errBefore == nil) != (errAfter == nil) {
			t.Errorf("node after trimming %+v (%v), before %+v (%v)", got, errAfter, before, errBefore)
		}
		if len(after.Status.Images) != 0 || len(after.Status.Conditions) != 0 || !reflect.DeepEqual(after.Spec, node.Spec) {
			t.Errorf("trimmed node keeps images %v, conditions %v, or lost its spec %+v", after.Status.Images, after.Status.Conditions, after.Spec)
		}
	})
	t.Run("a Service and its slice build the same state", func(t *testing.T) {
		info, _ := NodeInfoFromNode(node)
		before, _ := desired.Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}, info)
		s := trimmed(svc.DeepCopy()).(*corev1.Service)
		es := trimmed(slice.DeepCopy()).(*discoveryv1.EndpointSlice)
		after, _ := desired.Build([]*corev1.Service{s}, []*discoveryv1.EndpointSlice{es}, info)
		if len(before.Frontends) == 0 || !reflect.DeepEqual(after, before) {
			t.Errorf("state after trimming %+v, before %+v", after.Frontends, before.Frontends)
		}
		if es.Endpoints[0].TargetRef != nil || es.Endpoints[0].DeprecatedTopology != nil || s.Status.Conditions != nil ||
			s.ManagedFields != nil || s.Annotations[corev1.LastAppliedConfigAnnotation] != "" {
			t.Errorf("trimmed objects keep what socklb never reads: %+v %+v", es.Endpoints[0], s.ObjectMeta)
		}
		if s.Annotations["socklb.io/lb-algorithm"] != "maglev" {
			t.Errorf("trimming dropped the annotations socklb reads: %v", s.Annotations)
		}
	})
}
