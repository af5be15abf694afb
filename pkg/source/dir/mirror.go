package dir

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/pkg/desired"
)

// mirrorControllerName is the managed-by value of mirrored slices, the same
// as Kubernetes' endpointslicemirroring controller writes.
const mirrorControllerName = "endpointslicemirroring-controller.k8s.io"

// mirrorEndpoints turns an Endpoints object into the EndpointSlices that
// Kubernetes' endpointslicemirroring controller would make of it: one per
// subset and address family, named "<endpoints>-mirror-<subset>-<family>"
// so that they are stable across reads. Addresses become ready endpoints,
// notReadyAddresses not-ready ones. An address that is not a usable IP is
// returned as an error and left out; the rest is still mirrored.
//
// Unlike the controller, it also mirrors Endpoints of a Service that has a
// selector: in standalone mode no controller derives slices from pods, so
// what the user wrote is all there is.
func mirrorEndpoints(ep *corev1.Endpoints) ([]*discoveryv1.EndpointSlice, []error) {
	var slices []*discoveryv1.EndpointSlice
	var errs []error
	for i, subset := range ep.Subsets {
		byFamily := map[discoveryv1.AddressType][]discoveryv1.Endpoint{}
		add := func(addr corev1.EndpointAddress, ready bool) {
			family, err := addressTypeOf(addr.IP)
			if err != nil {
				errs = append(errs, fmt.Errorf("mirror subset %d: %w", i, err))
				return
			}
			byFamily[family] = append(byFamily[family], endpointOf(addr, ready))
		}
		for _, addr := range subset.Addresses {
			add(addr, true)
		}
		for _, addr := range subset.NotReadyAddresses {
			add(addr, false)
		}

		for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
			endpoints := byFamily[family]
			if len(endpoints) == 0 {
				continue
			}
			slices = append(slices, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: ep.Namespace,
					Name:      fmt.Sprintf("%s-mirror-%d-%s", ep.Name, i, strings.ToLower(string(family))),
					Labels:    mirroredLabels(ep),
				},
				AddressType: family,
				Endpoints:   endpoints,
				Ports:       portsOf(subset.Ports),
			})
		}
	}
	return slices, errs
}

// addressTypeOf says which slice an Endpoints address goes to; an address
// desired.ParseAddr refuses goes to none.
func addressTypeOf(ip string) (discoveryv1.AddressType, error) {
	addr, err := desired.ParseAddr(ip)
	if err != nil {
		return "", err
	}
	return desired.AddressTypeOf(addr), nil
}

func endpointOf(addr corev1.EndpointAddress, ready bool) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{
		Addresses:  []string{addr.IP},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
	}
	if addr.NodeName != nil {
		nodeName := *addr.NodeName
		ep.NodeName = &nodeName
	}
	if addr.Hostname != "" {
		ep.Hostname = &addr.Hostname
	}
	if addr.TargetRef != nil {
		ref := *addr.TargetRef
		ep.TargetRef = &ref
	}
	return ep
}

func portsOf(ports []corev1.EndpointPort) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP // what the API server would have defaulted
		}
		out = append(out, discoveryv1.EndpointPort{
			Name:        &p.Name,
			Port:        &p.Port,
			Protocol:    &proto,
			AppProtocol: p.AppProtocol,
		})
	}
	return out
}

// mirroredLabels copies the Endpoints' labels, as the controller does, and
// sets the two that tie the slice to its Service and to the mirroring.
func mirroredLabels(ep *corev1.Endpoints) map[string]string {
	labels := map[string]string{}
	for k, v := range ep.Labels {
		if k == discoveryv1.LabelSkipMirror {
			continue
		}
		labels[k] = v
	}
	labels[discoveryv1.LabelServiceName] = ep.Name
	labels[discoveryv1.LabelManagedBy] = mirrorControllerName
	return labels
}
