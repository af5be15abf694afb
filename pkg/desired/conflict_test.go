package desired

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	olderCreated = metav1.NewTime(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC))
	newerCreated = metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
)

// conflictHolder is a running Service with a frontend of every kind:
// ClusterIP 10.96.0.10:80, NodePort 30080, LoadBalancer 198.18.0.1:80 and
// ExternalIP 203.0.113.7:80. It is the newer by creationTimestamp, and the
// later by name, so only its being there first can keep its frontends.
func conflictHolder() (*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := makeTestService("default", "web", func(s *corev1.Service) {
		s.CreationTimestamp = newerCreated
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ClusterIP = "10.96.0.10"
		s.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080, TargetPort: intstr.FromInt32(8080)}}
		s.Spec.ExternalIPs = []string{"203.0.113.7"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.1"}}
	})
	return svc, []*discoveryv1.EndpointSlice{conflictSlice("web", "10.244.0.2")}
}

func conflictSlice(service, addr string) *discoveryv1.EndpointSlice {
	return makeTestEndpointSlice("default", service, 1, func(eps *discoveryv1.EndpointSlice) {
		eps.Ports = []discoveryv1.EndpointPort{makeSlicePort("", 8080, corev1.ProtocolTCP)}
		eps.Endpoints = []discoveryv1.Endpoint{readyEndpoint(addr)}
	})
}

// conflictNewcomer is a Service added after the holder, older by
// creationTimestamp and first by name, with its own ClusterIP 10.96.0.20:80
// and whatever claim makes.
func conflictNewcomer(claim func(*corev1.Service)) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := makeTestService("default", "aaa", func(s *corev1.Service) {
		s.CreationTimestamp = olderCreated
		s.Spec.ClusterIP = "10.96.0.20"
		s.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}
		claim(s)
	})
	return svc, []*discoveryv1.EndpointSlice{conflictSlice("aaa", "10.244.0.9")}
}

// A Service that claims a frontend another Service holds is left out of
// it, whatever kind either frontend is, however much older the newcomer or
// earlier its name, across incremental updates and a full Reset with the
// same objects (a periodic resync); the newcomer gets one error per
// frontend naming both, with the Event reason; the frontend passes to it
// once the holder lets go. A Build from scratch has no history: there the
// older creationTimestamp wins.
func TestFrontendTakeover(t *testing.T) {
	node := NodeInfo{Name: "node-1", Addresses: []NodeAddress{{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("192.0.2.10")}}}
	opts := Options{ExternalIPAllow: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
	testCases := []struct {
		name      string
		claim     func(*corev1.Service)
		contested []string // in the order the newcomer claims them
	}{
		{"its ClusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }, []string{"10.96.0.10:80/TCP"}},
		{"its nodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}, []string{"192.0.2.10:30080/TCP", "127.0.0.1:30080/TCP"}},
		{"its LoadBalancer IP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30090
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.1"}}
		}, []string{"198.18.0.1:80/TCP"}},
		{"its externalIP", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7"} }, []string{"203.0.113.7:80/TCP"}},
		{"its ClusterIP, as a LoadBalancer IP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30090
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.96.0.10"}}
		}, []string{"10.96.0.10:80/TCP"}},
	}
	for _, tc := range testCases {
		t.Run("a newcomer claims "+tc.name, func(t *testing.T) {
			holder, holderSlices := conflictHolder()
			newcomer, newcomerSlices := conflictNewcomer(tc.claim)
			web, aaa := ServiceRef{"default", "web"}, ServiceRef{"default", "aaa"}
			x := NewBuilderWithOptions(node, opts)
			x.Update(web, holder, holderSlices)
			before := flows(t, x.State())
			changed := x.Update(aaa, newcomer, newcomerSlices)
			for _, fe := range frontendStrings(changed) {
				if slices.Contains(tc.contested, fe) {
					t.Errorf("the newcomer's update changed the contested frontend %s", fe)
				}
			}
			checkOwners(t, "after the newcomer's update", x.State(), tc.contested, "web")
			checkConflictErrors(t, x.ErrorsOf(aaa), tc.contested)
			if errs := x.ErrorsOf(web); len(errs) != 0 {
				t.Errorf("the holder has errors: %v", errs)
			}
			afterUpdate := flows(t, x.State())
			for _, row := range before {
				if !slices.Contains(afterUpdate, row) {
					t.Errorf("the holder's flow %q changed: now\n\t%s", row, strings.Join(afterUpdate, "\n\t"))
				}
			}

			all := []*corev1.Service{newcomer, holder}
			allSlices := append(slices.Clone(newcomerSlices), holderSlices...)
			x.Reset(node, all, allSlices)
			if got := flows(t, x.State()); !slices.Equal(got, afterUpdate) {
				t.Errorf("a Reset with the same objects changed the state:\n\t%s\nwas\n\t%s", strings.Join(got, "\n\t"), strings.Join(afterUpdate, "\n\t"))
			}
			checkConflictErrors(t, x.ErrorsOf(aaa), tc.contested)

			fresh, _ := BuildWithOptions(all, allSlices, node, opts)
			checkOwners(t, "a Build from scratch", fresh, tc.contested, "aaa")

			restarted := NewBuilderWithOptions(node, opts)
			held := map[Frontend]ServiceRef{}
			for _, fe := range tc.contested {
				held[frontendOf(t, fe)] = web
			}
			restarted.Hold(held)
			restarted.Reset(node, all, allSlices)
			if got := flows(t, restarted.State()); !slices.Equal(got, afterUpdate) {
				t.Errorf("a restarted agent's Builder, told who the maps hold, built\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(afterUpdate, "\n\t"))
			}

			x.Update(web, nil, nil)
			checkOwners(t, "after the holder is deleted", x.State(), tc.contested, "aaa")
			if errs := x.ErrorsOf(aaa); len(errs) != 0 {
				t.Errorf("after the holder is deleted the newcomer has errors: %v", errs)
			}
		})
	}
}

// Between claims new at the same time the older creationTimestamp wins,
// then namespace/name, whatever order the Services come in; a Service
// without a creationTimestamp (a file written by hand) counts as oldest.
func TestFrontendClaimOrder(t *testing.T) {
	svc := func(name string, created metav1.Time) *corev1.Service {
		return makeTestService("default", name, func(s *corev1.Service) {
			s.CreationTimestamp = created
			s.Spec.ClusterIP = "10.96.0.10"
			s.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
		})
	}
	testCases := []struct {
		name      string
		services  []*corev1.Service
		wantOwner string
		wantError wantError
	}{
		{"the older creationTimestamp wins over the first name",
			[]*corev1.Service{svc("aaa", newerCreated), svc("zzz", olderCreated)}, "zzz",
			wantError{"Service default/aaa", "claim frontend 10.96.0.10:80/TCP: Service default/zzz (created 2026-11-01T10:00:00Z) holds it"}},
		{"created at the same time: the first by name wins",
			[]*corev1.Service{svc("zzz", olderCreated), svc("aaa", olderCreated)}, "aaa",
			wantError{"Service default/zzz", "claim frontend 10.96.0.10:80/TCP: Service default/aaa (created 2026-11-01T10:00:00Z) holds it"}},
		{"no creationTimestamps: the first by name wins",
			[]*corev1.Service{svc("zzz", metav1.Time{}), svc("aaa", metav1.Time{})}, "aaa",
			wantError{"Service default/zzz", "claim frontend 10.96.0.10:80/TCP: Service default/aaa holds it, and a frontend stays with the claim that was there first"}},
	}
	for _, tc := range testCases {
		for _, order := range []struct {
			name     string
			services []*corev1.Service
		}{{"in order", tc.services}, {"reversed", reversed(tc.services)}} {
			t.Run(tc.name+"/"+order.name, func(t *testing.T) {
				state, errs := Build(order.services, nil, NodeInfo{Name: "node-1"})
				checkOwners(t, "Build", state, []string{"10.96.0.10:80/TCP"}, tc.wantOwner)
				checkErrors(t, errs, []wantError{tc.wantError})
				checkConflictReason(t, errs)
			})
		}
	}
}

func frontendStrings(fes []Frontend) []string {
	var out []string
	for _, fe := range fes {
		out = append(out, fe.String())
	}
	return out
}

// checkOwners checks that the Service called owner holds each frontend.
func checkOwners(t *testing.T, when string, state *State, frontends []string, owner string) {
	t.Helper()
	for _, s := range frontends {
		e := state.Frontends[frontendOf(t, s)]
		switch {
		case e == nil:
			t.Errorf("%s: no Service holds %s, want default/%s", when, s, owner)
		case e.Name.Name != owner:
			t.Errorf("%s: %s holds %s, want default/%s", when, e.Name, s, owner)
		}
	}
}

func frontendOf(t *testing.T, s string) Frontend {
	t.Helper()
	addrPort, proto, _ := strings.Cut(s, "/")
	ap := netip.MustParseAddrPort(addrPort)
	fe := Frontend{Addr: ap.Addr(), Port: ap.Port(), Proto: TCP}
	if proto == "UDP" {
		fe.Proto = UDP
	}
	return fe
}

// checkConflictErrors checks that the newcomer's errors are one per
// contested frontend, each naming the newcomer and the holder.
func checkConflictErrors(t *testing.T, errs []error, contested []string) {
	t.Helper()
	var want []wantError
	for _, fe := range contested {
		want = append(want, wantError{"Service default/aaa", "claim frontend " + fe + ": Service default/web (created 2026-12-01T10:00:00Z) holds it"})
	}
	checkErrors(t, errs, want)
	checkConflictReason(t, errs)
}

func checkConflictReason(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		if oe := (*ObjectError)(nil); errors.As(err, &oe) && oe.Reason != ReasonFrontendConflict {
			t.Errorf("error %q has reason %q, want %q (the agent records a Warning Event for it)", err, oe.Reason, ReasonFrontendConflict)
		}
	}
}

// With three claims on one frontend, the holder keeps it while it claims
// it, then it passes to the oldest of the others, and so on; the Builder
// records rivals only for contested frontends.
func TestFrontendPassesDownTheClaims(t *testing.T) {
	svc := func(name string, created time.Time, clusterIP string) *corev1.Service {
		return makeTestService("default", name, func(s *corev1.Service) {
			s.CreationTimestamp = metav1.NewTime(created)
			s.Spec.ClusterIP = clusterIP
			s.Spec.Ports = []corev1.ServicePort{makeServicePort("", 80, corev1.ProtocolTCP, intstr.FromInt32(8080))}
		})
	}
	day := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	contested := []string{"10.96.0.10:80/TCP"}
	x := NewBuilder(NodeInfo{Name: "node-1"})
	steps := []struct {
		name      string
		ref       string
		svc       *corev1.Service // nil: deleted
		wantOwner string          // "": nobody holds it
		wantRival int
	}{
		{"the first claim holds it", "mid", svc("mid", day.Add(time.Hour), "10.96.0.10"), "mid", 0},
		{"an older newcomer is left out", "old", svc("old", day, "10.96.0.10"), "mid", 1},
		{"a younger newcomer is left out", "new", svc("new", day.Add(2*time.Hour), "10.96.0.10"), "mid", 2},
		{"the holder updated keeps it", "mid", svc("mid", day.Add(time.Hour), "10.96.0.10"), "mid", 2},
		{"the holder deleted: the oldest claim takes it", "mid", nil, "old", 1},
		{"that holder moves away: the last claim takes it", "old", svc("old", day, "10.96.0.11"), "new", 0},
		{"the last claim deleted: nobody holds it", "new", nil, "", 0},
	}
	for _, step := range steps {
		x.Update(ServiceRef{"default", step.ref}, step.svc, nil)
		fe := frontendOf(t, contested[0])
		if step.wantOwner == "" {
			if e := x.State().Frontends[fe]; e != nil {
				t.Errorf("%s: %s holds %s, want nobody", step.name, e.Name, contested[0])
			}
		} else {
			checkOwners(t, step.name, x.State(), contested, step.wantOwner)
		}
		if got := len(x.rivals[fe]); got != step.wantRival {
			t.Errorf("%s: %d rivals recorded, want %d", step.name, got, step.wantRival)
		}
		if len(x.rivals) > 1 {
			t.Errorf("%s: rivals recorded for %d frontends, want only the contested one", step.name, len(x.rivals))
		}
	}
}
