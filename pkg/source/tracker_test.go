package source

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/socklb/socklb/pkg/desired"
)

func svc(name, clusterIP, resourceVersion string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: resourceVersion},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP},
	}
}

// withSpec returns a copy of s changed by f.
func withSpec(s *corev1.Service, f func(*corev1.Service)) *corev1.Service {
	c := s.DeepCopy()
	f(c)
	return c
}

func slice(name, service string, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return s
}

// withEndpoint changes the first endpoint of s.
func withEndpoint(s *discoveryv1.EndpointSlice, f func(*discoveryv1.Endpoint)) *discoveryv1.EndpointSlice {
	f(&s.Endpoints[0])
	return s
}

// triggeredAt annotates s the way the EndpointSlice controller does.
func triggeredAt(s *discoveryv1.EndpointSlice, at time.Time) *discoveryv1.EndpointSlice {
	s.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: at.Format(time.RFC3339Nano)}
	return s
}

// The tracker's clock starts at t0 and each event happens one second after
// the previous one: event i (from 0) is seen at t0+i+1s.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(seconds int) time.Time { return t0.Add(time.Duration(seconds) * time.Second) }

func TestChangeTracker(t *testing.T) {
	type event func(*ChangeTracker)
	svcEvent := func(prev, cur *corev1.Service) event {
		return func(ct *ChangeTracker) { ct.ServiceUpdate(prev, cur) }
	}
	sliceEvent := func(prev, cur *discoveryv1.EndpointSlice) event {
		return func(ct *ChangeTracker) { ct.EndpointSliceUpdate(prev, cur) }
	}
	nodeEvent := func(prev, cur *desired.NodeInfo) event {
		return func(ct *ChangeTracker) { ct.NodeUpdate(prev, cur) }
	}
	web := svc("web", "10.96.0.1", "1")
	zoneA := &desired.NodeInfo{Name: "node-1", Zone: "zone-a"}
	zoneB := &desired.NodeInfo{Name: "node-1", Zone: "zone-b"}
	withAddr := &desired.NodeInfo{Name: "node-1", Zone: "zone-a",
		Addresses: []desired.NodeAddress{{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("192.0.2.10")}}}
	cases := []struct {
		name    string
		events  []event
		want    map[string]time.Time // Service -> trigger time
		wantAll time.Time            // zero: All is false
	}{
		{"an added Service", []event{svcEvent(nil, web)}, map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"an update that changes only metadata is dropped",
			[]event{svcEvent(web, svc("web", "10.96.0.1", "2"))}, nil, time.Time{}},
		{"an update of the selector, which socklb does not read, is dropped",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "x"} }))}, nil, time.Time{}},
		{"an update of an unrelated annotation is dropped",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) { s.Annotations = map[string]string{"team": "web"} }))}, nil, time.Time{}},
		{"an update of a port, which socklb reads, is recorded",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) { s.Spec.Ports = []corev1.ServicePort{{Port: 80}} }))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"an update of the load balancer's ingress IP in the status is recorded",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.1"}}
			}))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"an update of the external traffic policy is recorded",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"an update of a status condition is dropped",
			[]event{svcEvent(web, withSpec(web, func(s *corev1.Service) {
				s.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
			}))}, nil, time.Time{}},
		{"an add undone by a delete is dropped",
			[]event{svcEvent(nil, web), svcEvent(web, nil)}, nil, time.Time{}},
		{"a change changed back is dropped",
			[]event{svcEvent(web, svc("web", "10.96.0.2", "2")), svcEvent(svc("web", "10.96.0.2", "2"), svc("web", "10.96.0.1", "3"))}, nil, time.Time{}},
		{"a change keeps the time it was first seen",
			[]event{svcEvent(web, svc("web", "10.96.0.2", "2")), svcEvent(svc("web", "10.96.0.2", "2"), svc("web", "10.96.0.3", "3"))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a slice change concerns its Service",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), slice("web-1", "web", "10.244.0.3"))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a slice change is triggered when its annotation says",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), triggeredAt(slice("web-1", "web", "10.244.0.3"), t0.Add(500*time.Millisecond)))},
			map[string]time.Time{"default/web": t0.Add(500 * time.Millisecond)}, time.Time{}},
		{"an annotation from before the tracker started is not believed",
			[]event{sliceEvent(nil, triggeredAt(slice("web-1", "web", "10.244.0.3"), t0.Add(-time.Hour)))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a Service's trigger time is its oldest pending change",
			[]event{svcEvent(nil, web), sliceEvent(nil, slice("web-1", "web", "10.244.0.2")), sliceEvent(nil, slice("web-2", "web", "10.244.0.3"))},
			map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a dropped change takes its trigger time with it",
			[]event{sliceEvent(nil, slice("web-1", "web", "10.244.0.2")), sliceEvent(slice("web-1", "web", "10.244.0.2"), nil), svcEvent(nil, web)},
			map[string]time.Time{"default/web": at(3)}, time.Time{}},
		{"a slice that moves concerns both Services",
			[]event{sliceEvent(slice("x-1", "web", "10.244.0.2"), slice("x-1", "api", "10.244.0.2"))},
			map[string]time.Time{"default/api": at(1), "default/web": at(1)}, time.Time{}},
		{"a slice update of what socklb does not read (hostname, target, a second address) is dropped",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), withEndpoint(slice("web-1", "web", "10.244.0.2"), func(e *discoveryv1.Endpoint) {
				e.Hostname = ptr.To("web-0")
				e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: "web-0"}
				e.Addresses = append(e.Addresses, "10.244.0.9")
			}))}, nil, time.Time{}},
		{"a slice update of an endpoint's node is recorded",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), withEndpoint(slice("web-1", "web", "10.244.0.2"), func(e *discoveryv1.Endpoint) {
				e.NodeName = ptr.To("node-1")
			}))}, map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a slice update of an endpoint's hints is recorded",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), withEndpoint(slice("web-1", "web", "10.244.0.2"), func(e *discoveryv1.Endpoint) {
				e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}}
			}))}, map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a slice update of an endpoint's conditions is recorded",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), withEndpoint(slice("web-1", "web", "10.244.0.2"), func(e *discoveryv1.Endpoint) {
				e.Conditions.Terminating = ptr.To(true)
			}))}, map[string]time.Time{"default/web": at(1)}, time.Time{}},
		{"a slice update with the same endpoints is dropped",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), slice("web-1", "web", "10.244.0.2"))}, nil, time.Time{}},
		{"MarkAll asks for everything",
			[]event{func(ct *ChangeTracker) { ct.MarkAll() }}, nil, at(1)},
		{"a Node seen for the first time changes everything",
			[]event{nodeEvent(nil, zoneA)}, nil, at(1)},
		{"a Node zone change changes everything, from its first time",
			[]event{nodeEvent(zoneA, zoneB), nodeEvent(zoneB, zoneA), nodeEvent(zoneA, zoneB)}, nil, at(1)},
		{"a Node address change changes everything",
			[]event{nodeEvent(zoneA, withAddr)}, nil, at(1)},
		{"a Node update that changes nothing socklb reads is dropped",
			[]event{nodeEvent(zoneA, &desired.NodeInfo{Name: "node-1", Zone: "zone-a"})}, nil, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := t0
			ct := NewChangeTracker(func() time.Time { return clock })
			for _, e := range tc.events {
				clock = clock.Add(time.Second)
				e(ct)
			}
			c := ct.TakeChanges()
			got := map[string]time.Time{}
			var names []string
			for _, r := range c.Services {
				names = append(names, r.String())
				got[r.String()] = c.TriggerTimes[r]
			}
			if len(c.TriggerTimes) != len(c.Services) {
				t.Errorf("TriggerTimes %v does not match Services %v", c.TriggerTimes, c.Services)
			}
			slices.Sort(names)
			var want []string
			for name, w := range tc.want {
				want = append(want, name)
				if !got[name].Equal(w) {
					t.Errorf("trigger time of %s = %s, want %s", name, got[name].Format(time.RFC3339Nano), w.Format(time.RFC3339Nano))
				}
			}
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("TakeChanges() Services = %v, want %v", names, want)
			}
			if c.All != !tc.wantAll.IsZero() || !c.AllTriggered.Equal(tc.wantAll) {
				t.Errorf("TakeChanges() All=%t triggered %s, want All=%t triggered %s", c.All, c.AllTriggered, !tc.wantAll.IsZero(), tc.wantAll)
			}
			if again := ct.TakeChanges(); len(again.Services) != 0 || again.All {
				t.Errorf("a second TakeChanges() returned %v, all=%t; want nothing", again.Services, again.All)
			}
		})
	}
}

// The figures kube-proxy's metrics read: every update counted, the objects
// pending, and, apart, the EndpointSlice controller's trigger times alone.
func TestChangeTrackerCounts(t *testing.T) {
	web := svc("web", "10.96.0.1", "1")
	annotated := t0.Add(1500 * time.Millisecond) // after the tracker starts (t0+1s), before it sees the slice
	cases := []struct {
		name       string
		events     func(*ChangeTracker)
		wantCounts ChangeCounts
		wantTimes  map[string]time.Time // EndpointTriggerTimes
	}{
		{"nothing", func(*ChangeTracker) {}, ChangeCounts{}, nil},
		{"a no-op update counts, and nothing is pending",
			func(ct *ChangeTracker) { ct.ServiceUpdate(web, svc("web", "10.96.0.1", "2")) },
			ChangeCounts{ServiceEvents: 1}, nil},
		{"two changes of one Service are one pending",
			func(ct *ChangeTracker) {
				ct.ServiceUpdate(nil, web)
				ct.ServiceUpdate(web, svc("web", "10.96.0.2", "2"))
			},
			ChangeCounts{ServiceEvents: 2, ServicesPending: 1}, nil},
		{"a slice without the annotation has no endpoint trigger time",
			func(ct *ChangeTracker) { ct.EndpointSliceUpdate(nil, slice("web-1", "web", "10.244.0.2")) },
			ChangeCounts{EndpointSliceEvents: 1, EndpointSlicesPending: 1}, nil},
		{"an annotated slice gives its Service the annotation's time",
			func(ct *ChangeTracker) {
				ct.EndpointSliceUpdate(nil, triggeredAt(slice("web-1", "web", "10.244.0.2"), annotated))
				ct.EndpointSliceUpdate(nil, triggeredAt(slice("web-2", "web", "10.244.0.3"), annotated.Add(time.Second)))
			},
			ChangeCounts{EndpointSliceEvents: 2, EndpointSlicesPending: 2}, map[string]time.Time{"default/web": annotated}},
		{"a deleted slice's annotation dates its last update: not used",
			func(ct *ChangeTracker) {
				ct.EndpointSliceUpdate(triggeredAt(slice("web-1", "web", "10.244.0.2"), annotated), nil)
			},
			ChangeCounts{EndpointSliceEvents: 1, EndpointSlicesPending: 1}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := t0
			ct := NewChangeTracker(func() time.Time { clock = clock.Add(time.Second); return clock })
			tc.events(ct)
			if got := ct.ChangeCounts(); got != tc.wantCounts {
				t.Errorf("ChangeCounts() = %+v, want %+v", got, tc.wantCounts)
			}
			c := ct.TakeChanges()
			if len(c.EndpointTriggerTimes) != len(tc.wantTimes) {
				t.Errorf("EndpointTriggerTimes = %v, want %v", c.EndpointTriggerTimes, tc.wantTimes)
			}
			for ref, got := range c.EndpointTriggerTimes {
				if want := tc.wantTimes[ref.String()]; !got.Equal(want) {
					t.Errorf("EndpointTriggerTimes[%s] = %s, want %s", ref, got, want)
				}
			}
			after := ct.ChangeCounts()
			if after.ServicesPending+after.EndpointSlicesPending != 0 || after.ServiceEvents != tc.wantCounts.ServiceEvents {
				t.Errorf("after TakeChanges: %+v; want nothing pending and the totals kept", after)
			}
		})
	}
}
