package desired

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// external is what a Service asks for beyond its ClusterIPs, read and
// checked once per Service so that each problem is reported once.
type external struct {
	// nodePorts: the Service is of type NodePort or LoadBalancer, whose
	// ports with a nodePort get NodePort frontends.
	nodePorts   bool
	lbIPs       []netip.Addr // type LoadBalancer only
	externalIPs []netip.Addr // only those --external-ip-allow lets in
	// sourceRanges are masked, without duplicates, sorted.
	sourceRanges []netip.Prefix
	local        bool // externalTrafficPolicy: Local
}

func (b *serviceBuild) readExternal(svc ServiceView, opts Options) external {
	x := external{
		nodePorts: svc.Type == corev1.ServiceTypeNodePort || svc.Type == corev1.ServiceTypeLoadBalancer,
		local:     svc.ExternalPolicyLocal,
	}
	if svc.Type == corev1.ServiceTypeLoadBalancer {
		x.lbIPs = b.parseAddrs("status.loadBalancer.ingress IP", svc.LoadBalancerIPs)
		x.sourceRanges = b.sourceRanges(svc.LoadBalancerSourceRanges)
	}
	for _, ip := range b.parseAddrs("externalIP", svc.ExternalIPs) {
		if !opts.externalIPAllowed(ip) {
			b.errs = append(b.errs, &ObjectError{Kind: "Service", Namespace: b.ref.Namespace, Name: b.ref.Name,
				Reason: ReasonExternalIPRefused,
				Err:    fmt.Errorf("refuse externalIP %s: it is not inside --external-ip-allow (%s)", ip, opts.externalIPAllowString())})
			continue
		}
		x.externalIPs = append(x.externalIPs, ip)
	}
	return x
}

// parseAddrs parses a list of addresses, reporting each bad one and
// dropping duplicates.
func (b *serviceBuild) parseAddrs(what string, list []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		addr, err := ParseAddr(s)
		if err != nil {
			b.serviceError(fmt.Errorf("parse %s: %w", what, err))
			continue
		}
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

func (b *serviceBuild) sourceRanges(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			b.serviceError(fmt.Errorf("parse loadBalancerSourceRange: %w", err))
			continue
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, comparePrefixes)
	return slices.Compact(out)
}

// rangesOf are the source ranges of one family, as kube-proxy filters them:
// a zero-length prefix means every client, the same as no ranges.
func (x *external) rangesOf(is4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range x.sourceRanges {
		if p.Addr().Is4() != is4 {
			continue
		}
		if p.Bits() == 0 {
			return nil
		}
		out = append(out, p)
	}
	return out
}

// frontends are the external frontends of one Service port and family,
// without names or backends yet.
func (x *external) frontends(p servicePort, is4 bool, node NodeInfo, opts Options) []*FrontendEntry {
	var out []*FrontendEntry
	if x.nodePorts && p.nodePort != 0 {
		for _, a := range opts.nodePortAddrs(node, is4) {
			out = append(out, &FrontendEntry{Frontend: Frontend{Addr: a, Port: p.nodePort, Proto: p.proto}, Kind: NodePort})
		}
	}
	for _, ip := range x.lbIPs {
		if ip.Is4() == is4 {
			out = append(out, &FrontendEntry{Frontend: Frontend{Addr: ip, Port: p.port, Proto: p.proto}, Kind: LoadBalancer,
				SourceRanges: x.rangesOf(is4)})
		}
	}
	for _, ip := range x.externalIPs {
		if ip.Is4() == is4 {
			out = append(out, &FrontendEntry{Frontend: Frontend{Addr: ip, Port: p.port, Proto: p.proto}, Kind: ExternalIP})
		}
	}
	return out
}

// chooseBackends applies the external traffic policy: Cluster sends every
// client to the cluster set; Local sends outside clients to the local set
// only, and clients on the node, as kube-proxy short-circuits them, to the
// cluster set (the internal scope, when the two differ).
func (x *external) chooseBackends(e *FrontendEntry, c EndpointCategories) {
	if !x.local {
		e.BackendSet = c.Cluster
		return
	}
	e.BackendSet, e.ExternalLocal = c.Local, true
	if !c.Local.Equal(c.Cluster) {
		cluster := c.Cluster
		e.Internal = &cluster
	}
}

// healthCheck is the Service's health check: kube-proxy serves one for a
// Service of type LoadBalancer with externalTrafficPolicy: Local
// (apiservice.NeedsHealthCheck) that has a healthCheckNodePort.
// localReady holds the addresses of the ready endpoints on the node among
// those of the Service's ports.
func (b *serviceBuild) healthCheck(svc ServiceView, localReady map[netip.Addr]bool) *HealthCheck {
	if svc.Type != corev1.ServiceTypeLoadBalancer || !svc.ExternalPolicyLocal || svc.HealthCheckNodePort == 0 {
		return nil
	}
	if svc.HealthCheckNodePort < 1 || svc.HealthCheckNodePort > 65535 {
		b.serviceError(fmt.Errorf("healthCheckNodePort %d is outside 1-65535", svc.HealthCheckNodePort))
		return nil
	}
	return &HealthCheck{Port: uint16(svc.HealthCheckNodePort), LocalEndpoints: len(localReady)}
}

// addLocalReady adds to set the addresses of endpoints ready on node,
// making set only when there is one.
func addLocalReady(set map[netip.Addr]bool, endpoints []Endpoint, node NodeInfo) map[netip.Addr]bool {
	for _, e := range endpoints {
		if e.Ready && e.IsLocal(node) {
			if set == nil {
				set = map[netip.Addr]bool{}
			}
			set[e.Addr] = true
		}
	}
	return set
}
