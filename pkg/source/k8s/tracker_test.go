package k8s

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(name, clusterIP, resourceVersion string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: resourceVersion},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP},
	}
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

func TestChangeTracker(t *testing.T) {
	type event func(*ChangeTracker)
	svcEvent := func(prev, cur *corev1.Service) event {
		return func(ct *ChangeTracker) { ct.ServiceUpdate(prev, cur) }
	}
	sliceEvent := func(prev, cur *discoveryv1.EndpointSlice) event {
		return func(ct *ChangeTracker) { ct.EndpointSliceUpdate(prev, cur) }
	}
	cases := []struct {
		name    string
		events  []event
		want    []string
		wantAll bool
	}{
		{"an added Service", []event{svcEvent(nil, svc("web", "10.96.0.1", "1"))}, []string{"default/web"}, false},
		{"an update that changes only metadata is dropped",
			[]event{svcEvent(svc("web", "10.96.0.1", "1"), svc("web", "10.96.0.1", "2"))}, nil, false},
		{"an add undone by a delete is dropped",
			[]event{svcEvent(nil, svc("web", "10.96.0.1", "1")), svcEvent(svc("web", "10.96.0.1", "1"), nil)}, nil, false},
		{"a change changed back is dropped",
			[]event{svcEvent(svc("web", "10.96.0.1", "1"), svc("web", "10.96.0.2", "2")), svcEvent(svc("web", "10.96.0.2", "2"), svc("web", "10.96.0.1", "3"))}, nil, false},
		{"a slice change concerns its Service",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), slice("web-1", "web", "10.244.0.3"))}, []string{"default/web"}, false},
		{"a slice that moves concerns both Services",
			[]event{sliceEvent(slice("x-1", "web", "10.244.0.2"), slice("x-1", "api", "10.244.0.2"))}, []string{"default/api", "default/web"}, false},
		{"a slice update with the same endpoints is dropped",
			[]event{sliceEvent(slice("web-1", "web", "10.244.0.2"), slice("web-1", "web", "10.244.0.2"))}, nil, false},
		{"MarkAll asks for everything",
			[]event{func(ct *ChangeTracker) { ct.MarkAll() }}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := NewChangeTracker()
			for _, e := range tc.events {
				e(ct)
			}
			refs, all := ct.TakeChanges()
			var got []string
			for _, r := range refs {
				got = append(got, r.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) || all != tc.wantAll {
				t.Errorf("TakeChanges() = %v, all=%t; want %v, all=%t", got, all, tc.want, tc.wantAll)
			}
			if again, all := ct.TakeChanges(); len(again) != 0 || all {
				t.Errorf("a second TakeChanges() returned %v, all=%t; want nothing", again, all)
			}
		})
	}
}
