package sandbox

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/vishvananda/netlink"
)

// podNameRE keeps pod netns names (<Prefix>-node<i>-<name>) short and plain.
var podNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// AddPod creates pod name on node (1-based): the netns
// "<Prefix>-node<node>-<name>" joined to the node by a veth pair (eth0 in
// the pod, pod<N> in the node), with 10.244.<node>.N/32 and
// fd00:10:244:<node>::N/128 (N = 2, 3, ... per node). Pod names are unique
// in the cluster.
func (c *Cluster) AddPod(t testing.TB, node int, name string) *Host {
	t.Helper()
	n := c.Node(t, node)
	if !podNameRE.MatchString(name) || filepath.Base(name) != name {
		t.Fatalf("sandbox: bad pod name %q", name)
	}
	c.mu.Lock()
	for h := range c.owners {
		if h.Name == name {
			c.mu.Unlock()
			t.Fatalf("sandbox: pod %q exists", name)
		}
	}
	c.mu.Unlock()
	n.mu.Lock()
	idx := n.nextPod
	if idx > maxPodsPerNode {
		n.mu.Unlock()
		t.Fatalf("sandbox: too many pods on %s", n.Host.Name)
	}
	n.nextPod++
	n.mu.Unlock()

	p4, p6 := nodePodNets(n.Index)
	b4, b6 := p4.Addr().As4(), p6.Addr().As16()
	b4[3], b6[15] = byte(idx), byte(idx)
	h := &Host{
		Name: name, IPv4: netip.AddrFrom4(b4), IPv6: netip.AddrFrom16(b6),
		Link: "eth0", NodeLink: fmt.Sprintf("pod%d", idx),
	}
	h.Netns = c.newNetns(t, n.Host.Name+"-"+name)
	if err := wireClusterPod(n, h); err != nil {
		t.Fatalf("sandbox: pod %s on %s: %v", name, n.Host.Name, err)
	}
	n.mu.Lock()
	n.pods = append(n.pods, h)
	n.mu.Unlock()
	c.mu.Lock()
	c.owners[h] = n
	c.mu.Unlock()
	return h
}

// wireClusterPod connects pod h to node n: the veth pair, the pod's
// addresses and routes, the node's routes to the pod.
func wireClusterPod(n *ClusterNode, h *Host) error {
	if err := writeSysctls(h.Netns, podSysctls); err != nil {
		return err
	}
	nh, err := handleAt(n.Host.Netns)
	if err != nil {
		return err
	}
	defer nh.Close()
	ph, err := handleAt(h.Netns)
	if err != nil {
		return err
	}
	defer ph.Close()
	if err := addVeth(nh, n.Host.Netns, h.NodeLink, h.Netns, h.Link); err != nil {
		return err
	}
	if err := setUp(ph, "lo"); err != nil {
		return err
	}
	eth, err := ph.LinkByName(h.Link)
	if err != nil {
		return err
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(h.IPv4, 32), netip.PrefixFrom(h.IPv6, 128)} {
		if err := ph.AddrAdd(eth, nlAddr(a)); err != nil {
			return fmt.Errorf("addr %s: %w", a, err)
		}
	}
	if err := ph.LinkSetUp(eth); err != nil {
		return err
	}
	nl, err := nh.LinkByName(h.NodeLink)
	if err != nil {
		return err
	}
	if err := nh.AddrAdd(nl, nlAddr(netip.PrefixFrom(gatewayLL, 64))); err != nil {
		return fmt.Errorf("addr %s: %w", gatewayLL, err)
	}
	if err := nh.LinkSetUp(nl); err != nil {
		return err
	}
	if err := WaitIPv6Ready(ph, h.Link, []netip.Addr{h.IPv6}, addrTimeout); err != nil {
		return err
	}
	if err := WaitIPv6Ready(nh, h.NodeLink, []netip.Addr{gatewayLL}, addrTimeout); err != nil {
		return err
	}
	if err := addRoutes(ph, clusterPodRoutes(n, h, eth.Attrs().Index)); err != nil {
		return fmt.Errorf("pod: %w", err)
	}
	node := []*netlink.Route{
		{LinkIndex: nl.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(h.IPv4, 32)), Scope: netlink.SCOPE_LINK, Src: net.IP(n.IPv4.AsSlice())},
		{LinkIndex: nl.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(h.IPv6, 128))},
	}
	if err := addRoutes(nh, node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

var podSysctls = [][2]string{
	{"net/ipv4/ip_forward", "0"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/ipv6/conf/all/accept_dad", "0"},
	{"net/ipv6/conf/default/accept_dad", "0"},
	{"net/ipv6/conf/all/forwarding", "0"},
}

// clusterPodRoutes are a pod's routes: the node's LAN address on the link
// (the IPv4 gateway), then the pod ranges and the LAN through the node, so
// that a pod can answer an outside client whose address it sees.
func clusterPodRoutes(n *ClusterNode, h *Host, link int) []*netlink.Route {
	src4 := net.IP(h.IPv4.AsSlice())
	gw4, gw6 := net.IP(n.IPv4.AsSlice()), net.IP(gatewayLL.AsSlice())
	return []*netlink.Route{
		{LinkIndex: link, Dst: prefixNet(netip.PrefixFrom(n.IPv4, 32)), Scope: netlink.SCOPE_LINK, Src: src4},
		{LinkIndex: link, Dst: prefixNet(podNet4), Gw: gw4, Src: src4},
		{LinkIndex: link, Dst: prefixNet(lanNet4), Gw: gw4, Src: src4},
		{LinkIndex: link, Dst: prefixNet(podNet6), Gw: gw6},
		{LinkIndex: link, Dst: prefixNet(lanNet6), Gw: gw6},
	}
}

func addRoutes(h *netlink.Handle, routes []*netlink.Route) error {
	for _, r := range routes {
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("route %s: %w", r.Dst, err)
		}
	}
	return nil
}
