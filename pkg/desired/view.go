package desired

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// ServiceView is every field of a Service that the builder reads, and
// nothing else: the builder builds from the view alone, so two Services with
// equal views build the same frontends, and the change tracker compares
// views (as kube-proxy's trackers compare their converted ServicePorts) to
// drop updates that change nothing socklb reads (a selector, an unrelated
// annotation, the status). A field the builder starts reading goes here, and
// from then on its changes are recorded.
type ServiceView struct {
	Ref ServiceRef
	// Created is metadata.creationTimestamp (zero when unset, as in files
	// written by hand): of two new claims on one frontend, the older
	// Service's wins.
	Created time.Time
	Type    corev1.ServiceType
	// ClusterIPs is spec.clusterIPs, or spec.clusterIP when the list is
	// empty (objects written by hand often set only the singular field).
	ClusterIPs []string
	Ports      []ServicePortView
	// ExternalIPs is spec.externalIPs.
	ExternalIPs []string
	// LoadBalancerIPs are the status.loadBalancer.ingress IPs in VIP mode
	// (ipMode unset or VIP), the ones kube-proxy captures: a hostname-only
	// ingress, or one in Proxy mode, sends its traffic to the node
	// addresses instead.
	LoadBalancerIPs []string
	// ExternalPolicyLocal is spec.externalTrafficPolicy: Local.
	ExternalPolicyLocal bool
	// HealthCheckNodePort is spec.healthCheckNodePort, 0 when unset.
	HealthCheckNodePort int32
	// LoadBalancerSourceRanges is spec.loadBalancerSourceRanges, trimmed of
	// the whitespace validation lets through.
	LoadBalancerSourceRanges []string
	// InternalPolicyLocal is spec.internalTrafficPolicy: Local.
	InternalPolicyLocal bool
	// AffinityClientIP is spec.sessionAffinity: ClientIP, and
	// AffinityTimeout its sessionAffinityConfig.clientIP.timeoutSeconds (0
	// when unset, as in files written by hand: the API's default applies).
	AffinityClientIP bool
	AffinityTimeout  int32
	// LBAlgorithm is the socklb.io/lb-algorithm annotation, "" when unset.
	LBAlgorithm string
}

// ServicePortView is what the builder reads of one Service port. The
// targetPort is not read: the EndpointSlice controller already resolved it
// into the slices' port numbers.
type ServicePortView struct {
	Name     string
	Port     int32
	Protocol corev1.Protocol
	NodePort int32 // 0 when none is allocated
}

// ServiceViewOf converts a Service; it does not validate (the builder
// reports what is wrong as an ObjectError).
func ServiceViewOf(svc *corev1.Service) ServiceView {
	v := ServiceView{
		Ref:        ServiceRef{Namespace: svc.Namespace, Name: svc.Name},
		Created:    svc.CreationTimestamp.Time,
		Type:       svc.Spec.Type,
		ClusterIPs: slices.Clone(svc.Spec.ClusterIPs),
	}
	if len(v.ClusterIPs) == 0 && svc.Spec.ClusterIP != "" {
		v.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	for _, p := range svc.Spec.Ports {
		v.Ports = append(v.Ports, ServicePortView{Name: p.Name, Port: p.Port, Protocol: p.Protocol, NodePort: p.NodePort})
	}
	v.ExternalIPs = slices.Clone(svc.Spec.ExternalIPs)
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP != "" && (ing.IPMode == nil || *ing.IPMode == corev1.LoadBalancerIPModeVIP) {
			v.LoadBalancerIPs = append(v.LoadBalancerIPs, ing.IP)
		}
	}
	v.ExternalPolicyLocal = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	v.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	v.LBAlgorithm = svc.Annotations[LBAlgorithmAnnotation]
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		v.LoadBalancerSourceRanges = append(v.LoadBalancerSourceRanges, strings.TrimSpace(r))
	}
	p := svc.Spec.InternalTrafficPolicy
	v.InternalPolicyLocal = p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		v.AffinityClientIP = true
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			v.AffinityTimeout = *c.ClientIP.TimeoutSeconds
		}
	}
	return v
}

// Equal reports whether two views build the same.
func (v ServiceView) Equal(o ServiceView) bool {
	return v.Ref == o.Ref && v.Created.Equal(o.Created) && v.Type == o.Type && slices.Equal(v.ClusterIPs, o.ClusterIPs) && slices.Equal(v.Ports, o.Ports) &&
		slices.Equal(v.ExternalIPs, o.ExternalIPs) && slices.Equal(v.LoadBalancerIPs, o.LoadBalancerIPs) &&
		v.ExternalPolicyLocal == o.ExternalPolicyLocal && v.HealthCheckNodePort == o.HealthCheckNodePort &&
		slices.Equal(v.LoadBalancerSourceRanges, o.LoadBalancerSourceRanges) &&
		v.InternalPolicyLocal == o.InternalPolicyLocal && v.AffinityClientIP == o.AffinityClientIP &&
		v.AffinityTimeout == o.AffinityTimeout
}

// EndpointSliceReadsEqual reports whether the builder reads the same of two
// EndpointSlices: the Service they belong to, the address type, the ports,
// and of each endpoint its first address, conditions, node, zone and hints.
// Other fields (further addresses, which the API declares fungible,
// hostnames, target references) are not read.
func EndpointSliceReadsEqual(a, b *discoveryv1.EndpointSlice) bool {
	if a.Labels[discoveryv1.LabelServiceName] != b.Labels[discoveryv1.LabelServiceName] ||
		a.AddressType != b.AddressType || len(a.Endpoints) != len(b.Endpoints) ||
		!equality.Semantic.DeepEqual(a.Ports, b.Ports) {
		return false
	}
	for i := range a.Endpoints {
		ea, eb := &a.Endpoints[i], &b.Endpoints[i]
		if (len(ea.Addresses) == 0) != (len(eb.Addresses) == 0) || len(ea.Addresses) > 0 && ea.Addresses[0] != eb.Addresses[0] {
			return false
		}
		if !equality.Semantic.DeepEqual(ea.Conditions, eb.Conditions) ||
			!equality.Semantic.DeepEqual(ea.NodeName, eb.NodeName) ||
			!equality.Semantic.DeepEqual(ea.Zone, eb.Zone) ||
			!equality.Semantic.DeepEqual(ea.Hints, eb.Hints) {
			return false
		}
	}
	return true
}
