package desired

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"
)

// fuzzObjects is what FuzzBuild decodes its input into.
type fuzzObjects struct {
	Services       []corev1.Service            `json:"services"`
	EndpointSlices []discoveryv1.EndpointSlice `json:"endpointSlices"`
}

// fuzzSeeds start the fuzzer on inputs that reach every frontend kind,
// both families, conflicts, terminating endpoints and bad values; the
// corpus under testdata/fuzz/FuzzBuild keeps what it found since.
var fuzzSeeds = []string{
	`services:
- metadata: {name: web, creationTimestamp: "2026-12-01T10:00:00Z"}
  spec:
    type: LoadBalancer
    clusterIPs: [10.96.0.10, "fd00::10"]
    ports: [{name: http, port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]
    externalIPs: [203.0.113.7, "2001:db8::7"]
    externalTrafficPolicy: Local
    healthCheckNodePort: 32000
    loadBalancerSourceRanges: [192.0.2.0/24, "2001:db8::/32"]
  status: {loadBalancer: {ingress: [{ip: 198.18.0.1}, {ip: "2001:db8::1"}]}}
- metadata: {name: aaa, creationTimestamp: "2026-11-01T10:00:00Z"}
  spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
endpointSlices:
- metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]
  endpoints:
  - {addresses: [10.244.0.2], nodeName: node-1, zone: zone-a, conditions: {ready: true}}
  - {addresses: [10.244.1.2], nodeName: node-2, conditions: {ready: false, serving: true, terminating: true}}
  - {addresses: ["fd00::1"]}
- metadata: {name: web-2, labels: {kubernetes.io/service-name: web}}
  addressType: IPv6
  ports: [{name: http, port: 8080}]
  endpoints: [{addresses: ["fd00:244::2"], hints: {forZones: [{name: zone-a}]}}]
- metadata: {name: aaa-1, labels: {kubernetes.io/service-name: aaa}}
  addressType: IPv4
  ports: [{name: web, port: 8080}]
  endpoints: [{addresses: [10.244.0.9]}]
`,
	`services:
- metadata: {name: bad}
  spec: {type: NodePort, clusterIP: 10.96.0.300, clusterIPs: [10.96.0.20, 10.96.0.21, "::ffff:10.0.0.1"], ports: [{port: 0}, {port: 70000, nodePort: -1}, {port: 80, protocol: SCTP}, {port: 81, protocol: tcp}, {port: 82}]}
- metadata: {name: headless}
  spec: {clusterIP: None, ports: [{port: 80}]}
- metadata: {name: alias}
  spec: {type: ExternalName, externalName: example.com}
endpointSlices:
- metadata: {name: bad-1, labels: {kubernetes.io/service-name: bad}}
  addressType: ipv4
  endpoints: [{addresses: []}]
- metadata: {name: bad-2, labels: {kubernetes.io/service-name: bad}}
  addressType: IPv4
  ports: [{port: 99999}, {name: x}]
  endpoints: [{addresses: ["fd00::1"]}, {addresses: [bogus]}, {addresses: [10.0.0.1, 10.0.0.2]}]
- metadata: {name: stray}
  addressType: FQDN
  endpoints: [{addresses: [example.com]}]
`,
	`{"services":[{"metadata":{"name":"u"},"spec":{"clusterIP":"10.96.0.30","ports":[{"port":53,"protocol":"UDP"}]}}]}`,
	``,
	`services: [null, {}]`,
}

// FuzzBuild feeds arbitrary objects to Build and to a Builder one Service
// at a time: nothing panics, every frontend's backends are of its family
// and protocol and fit the datapath, every error is an *ObjectError naming
// an object of the input, and a Reset with the same objects keeps what the
// updates built (an agent's periodic full sync changes nothing).
func FuzzBuild(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}
	node := NodeInfo{Name: "node-1", Zone: "zone-a", Addresses: []NodeAddress{
		{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("192.0.2.10")},
		{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr("2001:db8::10")},
	}}
	opts := Options{ExternalIPAllow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return // the decoder, not the builder, is what large inputs exercise
		}
		var in fuzzObjects
		if yaml.Unmarshal(data, &in) != nil {
			return
		}
		services, endpointSlices := fuzzInputs(&in)
		state, errs := BuildWithOptions(services, endpointSlices, node, opts)
		checkFuzzState(t, state)
		checkFuzzErrors(t, errs, services, endpointSlices)

		x := NewBuilderWithOptions(node, opts)
		index := indexEndpointSlices(endpointSlices)
		for _, svc := range services {
			ref := ServiceRef{Namespace: svc.Namespace, Name: svc.Name}
			x.Update(ref, svc, index[ref])
		}
		checkFuzzState(t, x.State())
		incremental, incrementalErrs := cloneState(x.State()), x.Errors()
		checkFuzzErrors(t, incrementalErrs, services, endpointSlices)
		x.Reset(node, services, endpointSlices)
		if !statesEqual(x.State(), incremental) || !slices.Equal(errorStrings(x.Errors()), errorStrings(incrementalErrs)) {
			t.Errorf("a Reset with the same objects changed what the updates built:\n%v\n%v\nthen\n%v\n%v",
				flowsOf(incremental), incrementalErrs, flowsOf(x.State()), x.Errors())
		}
		if !hasConflict(errs) && !statesEqual(state, incremental) {
			t.Errorf("without conflicts the updates built\n%v\nand Build\n%v", flowsOf(incremental), flowsOf(state))
		}
	})
}

// fuzzInputs names the objects that have no name, as the API server and
// the directory source require, so that an error can name its object.
func fuzzInputs(in *fuzzObjects) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	var services []*corev1.Service
	for i := range in.Services {
		s := &in.Services[i]
		s.Namespace = cmpOr(s.Namespace, "default")
		s.Name = cmpOr(s.Name, fmt.Sprintf("svc-%d", i))
		services = append(services, s)
	}
	var endpointSlices []*discoveryv1.EndpointSlice
	for i := range in.EndpointSlices {
		s := &in.EndpointSlices[i]
		s.Namespace = cmpOr(s.Namespace, "default")
		s.Name = cmpOr(s.Name, fmt.Sprintf("slice-%d", i))
		endpointSlices = append(endpointSlices, s)
	}
	return services, endpointSlices
}

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func checkFuzzState(t *testing.T, state *State) {
	t.Helper()
	for fe, e := range state.Frontends {
		if e.Frontend != fe || fe.Addr.Is4In6() || !fe.Addr.IsValid() {
			t.Fatalf("frontend %s is held under %s", e.Frontend, fe)
		}
		sets := []BackendSet{e.BackendSet}
		if e.Internal != nil {
			sets = append(sets, *e.Internal)
		}
		for _, set := range sets {
			if n := len(set.Active) + len(set.Terminating); n > MaxBackends {
				t.Fatalf("frontend %s has %d backends, more than %d", fe, n, MaxBackends)
			}
			for _, b := range slices.Concat(set.Active, set.Terminating) {
				if b.Addr.Is4() != fe.Addr.Is4() || b.Addr.Is4In6() || b.Proto != fe.Proto {
					t.Fatalf("frontend %s has backend %s of another family or protocol", fe, b)
				}
			}
		}
	}
}

func checkFuzzErrors(t *testing.T, errs []error, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) {
	t.Helper()
	named := map[string]bool{}
	for _, s := range services {
		named["Service "+s.Namespace+"/"+s.Name] = true
	}
	for _, s := range endpointSlices {
		named["EndpointSlice "+s.Namespace+"/"+s.Name] = true
	}
	for _, err := range errs {
		var oe *ObjectError
		if !errors.As(err, &oe) || oe.Err == nil {
			t.Fatalf("error %T is not an *ObjectError: %v", err, err)
		}
		if !named[oe.Object()] {
			t.Fatalf("error names %q, which is not an input object: %v", oe.Object(), err)
		}
	}
}

func hasConflict(errs []error) bool {
	for _, err := range errs {
		if oe := (*ObjectError)(nil); errors.As(err, &oe) && oe.Reason == ReasonFrontendConflict {
			return true
		}
	}
	return false
}

func cloneState(s *State) *State {
	c := *s
	c.Frontends = maps.Clone(s.Frontends)
	c.HealthChecks = maps.Clone(s.HealthChecks)
	return &c
}

func statesEqual(a, b *State) bool {
	return maps.EqualFunc(a.Frontends, b.Frontends, (*FrontendEntry).Equal) && maps.Equal(a.HealthChecks, b.HealthChecks) && a.SNAT == b.SNAT
}

func flowsOf(s *State) []string {
	var out []string
	for _, e := range s.Sorted() {
		out = append(out, fmt.Sprintf("%s %s %v %v internal=%v", e.Frontend, e.Name, e.Active, e.Terminating, e.Internal))
	}
	return out
}
