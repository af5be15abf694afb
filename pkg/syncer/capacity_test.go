package syncer

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"testing"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// desired.MaxBackends is what the slot numbers and the master's counts
// hold, so a capped frontend never wraps one.
func TestMaxBackendsFitsTheLayout(t *testing.T) {
	for _, f := range []struct {
		name string
		v    any
	}{
		{"lb_service_key.slot", lbmap.ServiceKey{}.Slot},
		{"lb_service_value.count", lbmap.ServiceValue{}.Count},
		{"lb_service_value.terminating", lbmap.ServiceValue{}.Terminating},
	} {
		if most := uint64(1)<<reflect.TypeOf(f.v).Bits() - 1; most != desired.MaxBackends {
			t.Errorf("%s holds up to %d, desired.MaxBackends is %d", f.name, most, desired.MaxBackends)
		}
	}
}

// bigService is Service default/big (10.96.0.10:80) with ready, then
// terminating endpoints in slices of 1,000, and default/small
// (10.96.0.11:80) with one endpoint beside it.
func bigService(ready, terminating int) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := func(name, ip string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
	}
	slice := func(service string, n int) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("%s-%d", service, n), Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
	}
	var out []*discoveryv1.EndpointSlice
	for i := range ready + terminating {
		if i%1000 == 0 {
			out = append(out, slice("big", len(out)))
		}
		ep := discoveryv1.Endpoint{
			Addresses:  []string{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(i < ready), Serving: ptr.To(true), Terminating: ptr.To(i >= ready)},
		}
		out[len(out)-1].Endpoints = append(out[len(out)-1].Endpoints, ep)
	}
	small := slice("small", 0)
	small.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.250.0.1"}}}
	return []*corev1.Service{svc("big", "10.96.0.10"), svc("small", "10.96.0.11")}, append(out, small)
}

// A Service with more endpoints than a frontend holds is programmed with
// the first desired.MaxBackends of them: its master entry keeps its count
// and id, its slots run 1..65,535 each naming a distinct backend, nothing
// wraps onto the master, and the Service beside it is untouched.
func TestSyncMoreBackendsThanSlots(t *testing.T) {
	testCases := []struct {
		name                       string
		ready, terminating         int
		wantCount, wantTerminating uint16
	}{
		{"70,000 ready endpoints", 70000, 0, 65535, 0},
		{"60,000 ready and 10,000 terminating", 60000, 10000, 60000, 5535},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			svcs, eps := bigService(tc.ready, tc.terminating)
			state, errs := desired.Build(svcs, eps, desired.NodeInfo{Name: "node-1"})
			if len(errs) != 1 {
				t.Errorf("Build errors %v, want one saying how many backends were left out", errs)
			}
			mem := lbmap.NewMemoryTables(map[string]uint32{lbmap.ServicesMap: 1 << 18, lbmap.BackendsMap: 1 << 17})
			s, err := NewWithTables(mem.Tables(), zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sync(state); err != nil {
				t.Fatalf("sync: %v", err)
			}
			keys, values, err := mem.Tables().Services.Dump()
			if err != nil {
				t.Fatal(err)
			}
			frontends := lbmap.DecodeFrontends(keys, values, nil)
			if len(frontends) != 2 {
				t.Fatalf("the services map holds %d frontends, want 2", len(frontends))
			}
			big, small := frontends[0], frontends[1]
			if !big.HasMaster || big.Master.Count != tc.wantCount || big.Master.Terminating != tc.wantTerminating || big.Master.BackendId != 0 || big.Master.ServiceId == 0 {
				t.Fatalf("default/big's master is %+v, want count %d, terminating %d, a service id and no backend", big.Master, tc.wantCount, tc.wantTerminating)
			}
			if len(big.Slots) != desired.MaxBackends {
				t.Errorf("default/big has %d slots, want %d", len(big.Slots), desired.MaxBackends)
			}
			seen := map[uint32]bool{}
			for slot := uint16(1); slot != 0 && int(slot) <= desired.MaxBackends; slot++ {
				id, ok := big.Slots[slot]
				if !ok || seen[id] {
					t.Fatalf("slot %d is missing or names backend %d twice", slot, id)
				}
				seen[id] = true
			}
			if !small.HasMaster || small.Master.Count != 1 || len(small.Slots) != 1 {
				t.Errorf("default/small is %+v with %d slots, want one backend", small.Master, len(small.Slots))
			}
		})
	}
}

// A new Syncer over maps another one programmed names each frontend's
// Service, for the first build after a restart to keep.
func TestOwnersFromTheMaps(t *testing.T) {
	mem := lbmap.NewMemoryTables(nil)
	first, err := NewWithTables(mem.Tables(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	web := svc("web", tcp("10.96.0.10", 80), backends(desired.TCP, 8080, "10.244.0.2"), nil)
	web.Name.Port = "http"
	api := svc("api", tcp("10.96.0.11", 80), nil, nil)
	api.Name.Namespace = "prod"
	if _, err := first.Sync(state(web, api)); err != nil {
		t.Fatal(err)
	}
	restarted, err := NewWithTables(mem.Tables(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[desired.Frontend]desired.ServiceRef{
		tcp("10.96.0.10", 80): {Namespace: "default", Name: "web"},
		tcp("10.96.0.11", 80): {Namespace: "prod", Name: "api"},
	}
	if got := restarted.Owners(); !maps.Equal(got, want) {
		t.Errorf("owners %v, want %v", got, want)
	}
}
