package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	lanNet4    = netip.MustParsePrefix("198.51.100.0/24")
	lanNet6    = netip.MustParsePrefix("2001:db8:1::/64")
	clientIPv4 = netip.MustParseAddr("198.51.100.100")
	clientIPv6 = netip.MustParseAddr("2001:db8:1::100")
)

const (
	lanBridge      = "br0"
	clusterLink    = "eth0" // the LAN interface of the nodes and the client
	maxNodes       = 99     // node addresses .1 to .99; the client is .100
	maxPodsPerNode = 254
)

// Cluster is the multi-node topology of the north-south (NodePort, XDP)
// end-to-end tests. All of it lives in network namespaces it creates:
//
//	"<Prefix>-lan"     bridge br0 (up, no addresses, IPv6 off, no multicast
//	                   snooping); the LAN end of every veth below is a port
//	                   of br0, named after the other end ("node1", "client")
//	"<Prefix>-node<i>" eth0 198.51.100.<i>/24, 2001:db8:1::<i>/64; lo up and
//	                   nothing else; forwarding on, rp_filter 0, accept_dad
//	                   0; a route to every other node's pod range through
//	                   that node (10.244.<j>.0/24 via 198.51.100.<j>,
//	                   fd00:10:244:<j>::/64 via 2001:db8:1::<j>); pod<N>
//	                   (fe80::1/64) towards each of its pods, with a /32 and
//	                   a /128 route to the pod
//	"<Prefix>-client"  eth0 198.51.100.100/24, 2001:db8:1::100/64, lo up;
//	                   no default route and no route to the pod ranges: an
//	                   outside client knows only the node addresses (add
//	                   LoadBalancer / external IP routes with RouteVia)
//	pods               "<Prefix>-node<i>-<name>": eth0 10.244.<i>.N/32 and
//	                   fd00:10:244:<i>::N/128 (N = 2, 3, ... per node),
//	                   routes to 10.244.0.0/16, fd00:10:244::/48 and the
//	                   LAN (198.51.100.0/24, 2001:db8:1::/64) through the
//	                   node only
//
// Every node has its own child cgroup (<cgroup2>/socklb-test-<id>/node<i>)
// and its own pin directory (<bpffs>/node<i>/socklb, not created) on the
// cluster's fresh bpffs. Nothing has a route off the machine.
//
// Every veth end the cluster creates has TX checksum offload off (veth
// offload hides checksum bugs of XDP and tc programs: the packet never gets
// a real checksum) and GRO on. GRO is the setting that makes native XDP
// work fully on veth: a native XDP program's XDP_TX and XDP_REDIRECT hand
// the frame to the peer's (or the redirect target's peer's) NAPI receive
// queue, and a veth without an XDP program of its own has NAPI only while
// GRO is on (kernel 5.13 and later; set with the ETHTOOL_SGRO ioctl, read
// back with ETHTOOL_GGRO). Without it such frames are dropped
// (TestClusterXDP proves both). Generic-mode XDP needs neither.
//
// Everything is removed in t.Cleanup: processes (by pid), namespaces, the
// cgroups and the bpffs mount.
//
// Create it with NewCluster.
type Cluster struct {
	// Prefix is the random prefix of the cluster's netns names ("slc-<id>").
	Prefix string
	// Cgroup is the cluster's cgroup, parent of the nodes' cgroups.
	Cgroup string
	// BPFFS is the mount point of the cluster's bpffs.
	BPFFS string
	// LAN is the namespace holding br0.
	LAN *Host
	// Client is the outside client (no cgroup).
	Client *Host
	// Nodes are node1..noden; Nodes[i-1] is node i.
	Nodes []*ClusterNode

	mu     sync.Mutex
	procs  []*Process
	owners map[*Host]*ClusterNode // node and pod hosts -> their node
}

// ClusterNode is one node of a Cluster.
type ClusterNode struct {
	Host  *Host // Name "node<i>", Link "eth0"
	Index int   // i, 1-based
	// Cgroup is <Cluster.Cgroup>/node<i>; PinDir <BPFFS>/node<i>/socklb.
	Cgroup, PinDir string
	// IPv4 and IPv6 are the node's LAN addresses on eth0.
	IPv4, IPv6 netip.Addr

	mu      sync.Mutex
	pods    []*Host
	nextPod int
}

// Pods returns the node's pods added so far.
func (n *ClusterNode) Pods() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.pods)
}

// Node returns node i (1-based), failing the test if there is none.
func (c *Cluster) Node(t testing.TB, i int) *ClusterNode {
	t.Helper()
	if i < 1 || i > len(c.Nodes) {
		t.Fatalf("sandbox: cluster has no node %d (it has %d)", i, len(c.Nodes))
	}
	return c.Nodes[i-1]
}

// lanAddr is the LAN address .<i> of the given family.
func lanAddr(i int, v6 bool) netip.Addr {
	if v6 {
		b := lanNet6.Addr().As16()
		b[15] = byte(i)
		return netip.AddrFrom16(b)
	}
	b := lanNet4.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}

// nodePodNets are node i's pod ranges: 10.244.<i>.0/24, fd00:10:244:<i>::/64.
func nodePodNets(i int) (netip.Prefix, netip.Prefix) {
	b4 := podNet4.Addr().As4()
	b4[2] = byte(i)
	b6 := podNet6.Addr().As16()
	b6[7] = byte(i)
	return netip.PrefixFrom(netip.AddrFrom4(b4), 24), netip.PrefixFrom(netip.AddrFrom16(b6), 64)
}

// NewCluster builds a cluster of nodes nodes (1 to 99) with the LAN, the
// client, the cgroups and the bpffs; everything is removed in t.Cleanup.
func NewCluster(t testing.TB, nodes int) *Cluster {
	t.Helper()
	Require(t)
	if nodes < 1 || nodes > maxNodes {
		t.Fatalf("sandbox: NewCluster: %d nodes, want 1 to %d", nodes, maxNodes)
	}
	id := randomHex(3)
	c := &Cluster{Prefix: "slc-" + id, owners: map[*Host]*ClusterNode{}}
	c.makeCgroups(t, id, nodes)
	c.mountBPFFS(t)
	c.LAN = &Host{Name: "lan", Netns: c.newNetns(t, "lan")}
	if err := buildLAN(c.LAN.Netns); err != nil {
		t.Fatalf("sandbox: cluster lan: %v", err)
	}
	c.Client = &Host{Name: "client", IPv4: clientIPv4, IPv6: clientIPv6, Link: clusterLink}
	c.Client.Netns = c.newNetns(t, "client")
	if err := c.joinLAN(c.Client, "client"); err != nil {
		t.Fatalf("sandbox: cluster client: %v", err)
	}
	for _, n := range c.Nodes {
		n.Host.Netns = c.newNetns(t, n.Host.Name)
		if err := writeSysctls(n.Host.Netns, nodeSysctls); err != nil {
			t.Fatalf("sandbox: %s: %v", n.Host.Name, err)
		}
		if err := c.joinLAN(n.Host, n.Host.Name); err != nil {
			t.Fatalf("sandbox: %s: %v", n.Host.Name, err)
		}
	}
	for _, n := range c.Nodes {
		if err := c.routePodRanges(n); err != nil {
			t.Fatalf("sandbox: %s: %v", n.Host.Name, err)
		}
	}
	return c
}

var nodeSysctls = [][2]string{
	{"net/ipv4/ip_forward", "1"},
	{"net/ipv4/conf/all/forwarding", "1"},
	{"net/ipv4/conf/default/forwarding", "1"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/ipv6/conf/all/forwarding", "1"},
	{"net/ipv6/conf/default/forwarding", "1"},
	{"net/ipv6/conf/all/accept_dad", "0"},
	{"net/ipv6/conf/default/accept_dad", "0"},
}

// makeCgroups creates the cluster's cgroup and one child per node, and
// fills c.Nodes (their namespaces come later).
func (c *Cluster) makeCgroups(t testing.TB, id string, nodes int) {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	c.Cgroup = filepath.Join(root, "socklb-test-"+id)
	if err := os.Mkdir(c.Cgroup, 0o755); err != nil {
		t.Fatalf("sandbox: create cgroup: %v", err)
	}
	t.Cleanup(func() {
		c.killAll()
		if err := removeCgroupTree(c.Cgroup, 10*time.Second); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		n := &ClusterNode{
			Index: i, Cgroup: filepath.Join(c.Cgroup, name),
			IPv4: lanAddr(i, false), IPv6: lanAddr(i, true), nextPod: 2,
		}
		n.Host = &Host{Name: name, IPv4: n.IPv4, IPv6: n.IPv6, Link: clusterLink}
		if err := os.Mkdir(n.Cgroup, 0o755); err != nil {
			t.Fatalf("sandbox: create cgroup: %v", err)
		}
		c.Nodes = append(c.Nodes, n)
		c.owners[n.Host] = n
	}
}

// mountBPFFS mounts the cluster's bpffs and makes each node's directory on
// it (its PinDir's parent).
func (c *Cluster) mountBPFFS(t testing.TB) {
	t.Helper()
	// t.TempDir's RemoveAll was registered first, so it runs after the unmount.
	fs := filepath.Join(t.TempDir(), "bpffs")
	if err := os.Mkdir(fs, 0o700); err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("sandbox: mount bpffs on %s: %v", fs, err)
	}
	c.BPFFS = fs
	t.Cleanup(func() {
		if err := unmount(fs); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})
	for _, n := range c.Nodes {
		dir := filepath.Join(fs, n.Host.Name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatalf("sandbox: %v", err)
		}
		n.PinDir = filepath.Join(dir, "socklb")
	}
}

// newNetns creates the netns "<Prefix>-<name>" and registers its removal.
func (c *Cluster) newNetns(t testing.TB, name string) string {
	t.Helper()
	return newNetnsKilling(t, c.Prefix+"-"+name, c.killAll)
}

// buildLAN brings up lo and br0 in the lan namespace. IPv6 is off there
// (the bridge forwards IPv6 frames all the same; its ports need no
// addresses of their own) and multicast snooping is off so that neighbour
// discovery is flooded like any other multicast.
func buildLAN(path string) error {
	if err := writeSysctls(path, [][2]string{
		{"net/ipv6/conf/all/disable_ipv6", "1"},
		{"net/ipv6/conf/default/disable_ipv6", "1"},
	}); err != nil {
		return err
	}
	h, err := handleAt(path)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := setUp(h, "lo"); err != nil {
		return err
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: lanBridge}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", lanBridge, err)
	}
	return setUp(h, lanBridge)
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addVeth creates the veth pair local (in the namespace of h) and peer (in
// the namespace at peerNetns) and prepares both ends (prepareVeth).
func addVeth(h *netlink.Handle, localNetns, local, peerNetns, peer string) error {
	ns, err := os.Open(peerNetns)
	if err != nil {
		return err
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: local},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(int(ns.Fd())),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s: %w", local, peer, err)
	}
	if err := inNetns(localNetns, func() error { return prepareVeth(local) }); err != nil {
		return err
	}
	return inNetns(peerNetns, func() error { return prepareVeth(peer) })
}

// joinLAN connects h (a node or the client) to br0 by a veth: lanName on
// the bridge, eth0 in h with h's LAN addresses.
func (c *Cluster) joinLAN(h *Host, lanName string) error {
	lan, err := handleAt(c.LAN.Netns)
	if err != nil {
		return err
	}
	defer lan.Close()
	if err := addVeth(lan, c.LAN.Netns, lanName, h.Netns, clusterLink); err != nil {
		return err
	}
	br, err := lan.LinkByName(lanBridge)
	if err != nil {
		return err
	}
	port, err := lan.LinkByName(lanName)
	if err != nil {
		return err
	}
	if err := lan.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", lanName, lanBridge, err)
	}
	if err := lan.LinkSetUp(port); err != nil {
		return err
	}

	hh, err := handleAt(h.Netns)
	if err != nil {
		return err
	}
	defer hh.Close()
	if err := setUp(hh, "lo"); err != nil {
		return err
	}
	eth, err := hh.LinkByName(clusterLink)
	if err != nil {
		return err
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(h.IPv4, lanNet4.Bits()), netip.PrefixFrom(h.IPv6, lanNet6.Bits())} {
		if err := hh.AddrAdd(eth, nlAddr(a)); err != nil {
			return fmt.Errorf("addr %s: %w", a, err)
		}
	}
	if err := hh.LinkSetUp(eth); err != nil {
		return err
	}
	return WaitIPv6Ready(hh, clusterLink, []netip.Addr{h.IPv6}, addrTimeout)
}

// routePodRanges routes every other node's pod ranges through that node.
func (c *Cluster) routePodRanges(n *ClusterNode) error {
	h, err := handleAt(n.Host.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName(clusterLink)
	if err != nil {
		return err
	}
	for _, o := range c.Nodes {
		if o == n {
			continue
		}
		p4, p6 := nodePodNets(o.Index)
		for _, r := range []*netlink.Route{
			{LinkIndex: eth.Attrs().Index, Dst: prefixNet(p4), Gw: net.IP(o.IPv4.AsSlice())},
			{LinkIndex: eth.Attrs().Index, Dst: prefixNet(p6), Gw: net.IP(o.IPv6.AsSlice())},
		} {
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via %s: %w", r.Dst, r.Gw, err)
			}
		}
	}
	return nil
}

// RouteVia adds a route on the client for prefix (a LoadBalancer or
// external IP range) through node's LAN address of the prefix's family.
func (c *Cluster) RouteVia(t testing.TB, prefix netip.Prefix, node int) {
	t.Helper()
	n := c.Node(t, node)
	gw := n.IPv4
	if prefix.Addr().Is6() {
		gw = n.IPv6
	}
	h, err := handleAt(c.Client.Netns)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	defer h.Close()
	eth, err := h.LinkByName(clusterLink)
	if err != nil {
		t.Fatalf("sandbox: client: %v", err)
	}
	r := &netlink.Route{LinkIndex: eth.Attrs().Index, Dst: prefixNet(prefix.Masked()), Gw: net.IP(gw.AsSlice())}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("sandbox: client route %s via %s: %v", prefix, gw, err)
	}
}

// killAll stops every process the cluster started that is still running.
func (c *Cluster) killAll() {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Kill() }()
	}
	wg.Wait()
}

// cgroupFor is the cgroup a process on h starts in: a node's own cgroup
// for the node and its pods (pods live below their node, as kubelet's do),
// none when inCgroup is false. The client and the LAN have no cgroup.
func (c *Cluster) cgroupFor(h *Host, inCgroup bool) (string, error) {
	if h == nil {
		return "", fmt.Errorf("no host given")
	}
	if !inCgroup {
		return "", nil
	}
	c.mu.Lock()
	n := c.owners[h]
	c.mu.Unlock()
	if n == nil {
		return "", fmt.Errorf("%s is outside every node: it has no cgroup", h.Name)
	}
	return n.Cgroup, nil
}

func (c *Cluster) start(h *Host, inCgroup bool, argv []string) (*Process, error) {
	cg, err := c.cgroupFor(h, inCgroup)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := startProcess(h.Netns, cg, argv)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// Start runs argv on h (a node's Host, a pod, or Client) like
// Sandbox.Start: through nsenter --net, output captured, killed by pid in
// t.Cleanup. inCgroup clones it into the cgroup of h's node (for a pod:
// the node it runs on); asking for it on the client fails the test.
func (c *Cluster) Start(t testing.TB, h *Host, inCgroup bool, argv ...string) *Process {
	t.Helper()
	p, err := c.start(h, inCgroup, argv)
	if err != nil {
		t.Fatalf("sandbox: start %q: %v", argv, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Run runs argv like Start and waits for it, like Sandbox.Run.
func (c *Cluster) Run(t testing.TB, ctx context.Context, h *Host, inCgroup bool, argv ...string) (string, error) {
	t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
	}
	p, err := c.start(h, inCgroup, argv)
	if err != nil {
		return "", fmt.Errorf("start %q: %w", argv, err)
	}
	return waitRun(ctx, p, argv)
}

// Probe runs sockprobe args on h like Sandbox.Probe.
func (c *Cluster) Probe(t testing.TB, h *Host, inCgroup bool, args ...string) []ProbeResult {
	t.Helper()
	return runProbe(t, args, func(ctx context.Context, argv []string) (string, error) {
		return c.Run(t, ctx, h, inCgroup, argv...)
	})
}

// StartNameServer starts namesrv --name h.Name --log-peers on h outside any
// cgroup, dual-stack on the given ports, and waits for "ready".
func (c *Cluster) StartNameServer(t testing.TB, h *Host, tcpPorts, udpPorts []int) *Process {
	t.Helper()
	p := c.Start(t, h, false, nameServerArgv(t, h.Name, tcpPorts, udpPorts)...)
	if err := p.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatalf("sandbox: namesrv on %s: %v", h.Name, err)
	}
	return p
}
