// Package sandbox builds disposable kernel environments for socklb's
// end-to-end tests: a child cgroup of the cgroup2 hierarchy, a fresh bpffs,
// a "node" network namespace and "pod" namespaces joined to it by veth pairs,
// and helpers to run processes (namesrv backends, sockprobe clients) in them.
//
// Everything a Sandbox creates is its own and is removed in t.Cleanup:
// processes (killed by pid), network namespaces, the cgroup and the bpffs
// mount. It never touches the machine's existing interfaces or cgroups, and
// no namespace it creates has a route off the machine: the node and pods
// route only the pod ranges 10.244.0.0/16 and fd00:10:244::/48, so a connect
// to an untranslated VIP fails locally with ENETUNREACH.
//
// Addressing: the node has 10.244.0.1 and fd00:10:244::1 on lo and
// fe80::1/64 on each of its veths; pod N (N = 2, 3, ... per sandbox) has
// 10.244.0.N/32 and fd00:10:244::N/128 on its eth0 and routes the pod ranges
// through the node.
//
// Cluster (NewCluster) is the multi-node topology of the north-south tests:
// an outside client and nodes on a LAN bridge (198.51.100.0/24,
// 2001:db8:1::/64), each node with its own cgroup, pin directory and pods
// (10.244.<i>.0/24, fd00:10:244:<i>::/64). Every veth end it creates has TX
// checksum offload off (ETHTOOL_STXCSUM; offload hides checksum bugs) and GRO
// on (ETHTOOL_SGRO): on veth, GRO gives the device the NAPI context that a
// native XDP program's XDP_TX and XDP_REDIRECT on its peer need (kernel 5.13
// and later; without it those frames are dropped). Generic-mode XDP needs
// neither.
//
// Never use `ip netns exec` with these namespaces (it remounts /sys, hiding
// cgroup2 and bpffs); Start uses nsenter --net.
package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	podNet4   = netip.MustParsePrefix("10.244.0.0/16")
	podNet6   = netip.MustParsePrefix("fd00:10:244::/48")
	nodeIPv4  = netip.MustParseAddr("10.244.0.1")
	nodeIPv6  = netip.MustParseAddr("fd00:10:244::1")
	gatewayLL = netip.MustParseAddr("fe80::1")
)

// Sandbox is one disposable test environment. Create it with New.
type Sandbox struct {
	// Cgroup is a fresh child cgroup directory under the cgroup2 root,
	// named socklb-test-<random>. Removed on cleanup.
	Cgroup string
	// PinDir is <a fresh bpffs mounted at t.TempDir()/bpffs>/socklb; it is
	// not created. The bpffs is unmounted on cleanup.
	PinDir string
	// BPFFS is the mount point of the sandbox's bpffs (PinDir's parent).
	BPFFS string
	// Node is the node network namespace: lo up, forwarding on (IPv4 and
	// IPv6), no default route.
	Node *Host
	// Prefix is the random prefix of this sandbox's netns names
	// ("slb-<random>"); the node is "<Prefix>-node", pods "<Prefix>-<name>".
	Prefix string

	mu      sync.Mutex
	pods    []*Host
	nextPod int
	procs   []*Process
}

// Host is a network namespace of the sandbox: the node or a pod.
type Host struct {
	Name  string     // "node", or the pod name given to AddPod
	Netns string     // /run/netns/<Prefix>-<Name>
	IPv4  netip.Addr // 10.244.0.1 for the node, 10.244.0.N for pod N
	IPv6  netip.Addr // fd00:10:244::1 for the node, fd00:10:244::N for pod N
	// Link is the pod's interface inside its netns ("eth0"); "" for the node.
	Link string
	// NodeLink is the peer of Link inside the node netns ("pod<N>"); "" for
	// the node.
	NodeLink string
}

// Do runs fn on a throw-away OS thread that has joined h's network
// namespace (for netlink, sysctls under /proc/sys/net, or sockets).
func (h *Host) Do(fn func() error) error { return inNetns(h.Netns, fn) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// New creates a sandbox: checks the requirements (Require), then creates the
// cgroup, the bpffs mount and the node netns, all removed in t.Cleanup.
func New(t testing.TB) *Sandbox {
	t.Helper()
	Require(t)
	id := randomHex(3)
	s := &Sandbox{Prefix: "slb-" + id, nextPod: 2}

	// Cgroup.
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	cg := filepath.Join(root, "socklb-test-"+id)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("sandbox: create cgroup: %v", err)
	}
	s.Cgroup = cg
	t.Cleanup(func() {
		s.killAll()
		if err := removeCgroupTree(cg, 10*time.Second); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})

	// bpffs. t.TempDir's own cleanup (RemoveAll) was registered first, so
	// it runs after the unmount below.
	fs := filepath.Join(t.TempDir(), "bpffs")
	if err := os.Mkdir(fs, 0o700); err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("sandbox: mount bpffs on %s: %v", fs, err)
	}
	s.BPFFS, s.PinDir = fs, filepath.Join(fs, "socklb")
	t.Cleanup(func() {
		if err := unmount(fs); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})

	// Node netns.
	node := &Host{Name: "node", IPv4: nodeIPv4, IPv6: nodeIPv6}
	node.Netns = s.newNetns(t, "node")
	s.Node = node
	if err := writeSysctls(node.Netns, [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv4/conf/all/forwarding", "1"},
		{"net/ipv4/conf/default/forwarding", "1"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		{"net/ipv6/conf/all/forwarding", "1"},
		{"net/ipv6/conf/default/forwarding", "1"},
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
	}); err != nil {
		t.Fatalf("sandbox: node: %v", err)
	}
	nh, err := handleAt(node.Netns)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatalf("sandbox: node lo: %v", err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		t.Fatalf("sandbox: node lo up: %v", err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(nodeIPv4, 32), netip.PrefixFrom(nodeIPv6, 128)} {
		if err := nh.AddrAdd(lo, nlAddr(a)); err != nil {
			t.Fatalf("sandbox: node addr %s: %v", a, err)
		}
	}
	if err := WaitIPv6Ready(nh, "lo", []netip.Addr{nodeIPv6}, addrTimeout); err != nil {
		t.Fatalf("sandbox: node: %v", err)
	}
	return s
}

// newNetns creates the netns "<Prefix>-<name>" and registers its removal.
func (s *Sandbox) newNetns(t testing.TB, name string) string {
	t.Helper()
	return newNetnsKilling(t, s.Prefix+"-"+name, s.killAll)
}

// newNetnsKilling creates the netns name and registers its removal, after
// killAll: processes inside must go before their namespace. (Which
// processes are inside is not tracked, so killAll ends every process of the
// sandbox: make hosts with the test's own t, never a subtest's.)
func newNetnsKilling(t testing.TB, name string, killAll func()) string {
	t.Helper()
	path, err := createNetns(name)
	if err != nil {
		t.Fatalf("sandbox: netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		killAll()
		if err := deleteNetns(path); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})
	return path
}

// AddPod creates the netns "<Prefix>-<name>" joined to the node netns by a
// veth pair (eth0 in the pod, pod<N> in the node), with 10.244.0.N/32 and
// fd00:10:244::N/128 (nodad) and routes for the pod ranges only, through the
// node. N is allocated per sandbox starting at 2.
func (s *Sandbox) AddPod(t testing.TB, name string) *Host {
	t.Helper()
	if name == "" || name == "node" || len(name) > 200 || filepath.Base(name) != name {
		t.Fatalf("sandbox: bad pod name %q", name)
	}
	s.mu.Lock()
	for _, p := range s.pods {
		if p.Name == name {
			s.mu.Unlock()
			t.Fatalf("sandbox: pod %q exists", name)
		}
	}
	n := s.nextPod
	if n > 254 {
		s.mu.Unlock()
		t.Fatalf("sandbox: too many pods")
	}
	s.nextPod++
	s.mu.Unlock()

	v4 := netip.AddrFrom4([4]byte{10, 244, 0, byte(n)})
	b6 := nodeIPv6.As16()
	b6[15] = byte(n)
	v6 := netip.AddrFrom16(b6)
	h := &Host{Name: name, IPv4: v4, IPv6: v6, Link: "eth0", NodeLink: fmt.Sprintf("pod%d", n)}
	h.Netns = s.newNetns(t, name)
	if err := s.wirePod(h); err != nil {
		t.Fatalf("sandbox: pod %s: %v", name, err)
	}
	s.mu.Lock()
	s.pods = append(s.pods, h)
	s.mu.Unlock()
	return h
}

// Pods returns the pods added so far.
func (s *Sandbox) Pods() []*Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Host(nil), s.pods...)
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (s *Sandbox) wirePod(h *Host) error {
	if err := writeSysctls(h.Netns, [][2]string{
		{"net/ipv4/ip_forward", "0"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv6/conf/all/forwarding", "0"},
	}); err != nil {
		return err
	}
	nh, err := handleAt(s.Node.Netns)
	if err != nil {
		return err
	}
	defer nh.Close()
	ph, err := handleAt(h.Netns)
	if err != nil {
		return err
	}
	defer ph.Close()

	podNS, err := os.Open(h.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.NodeLink},
		PeerName:      h.Link,
		PeerNamespace: netlink.NsFd(int(podNS.Fd())),
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s: %w", h.NodeLink, h.Link, err)
	}

	// Pod side.
	lo, err := ph.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := ph.LinkSetUp(lo); err != nil {
		return err
	}
	eth, err := ph.LinkByName(h.Link)
	if err != nil {
		return err
	}
	if err := ph.LinkSetUp(eth); err != nil {
		return err
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(h.IPv4, 32), netip.PrefixFrom(h.IPv6, 128)} {
		if err := ph.AddrAdd(eth, nlAddr(a)); err != nil {
			return fmt.Errorf("addr %s: %w", a, err)
		}
	}

	// Node side.
	nl, err := nh.LinkByName(h.NodeLink)
	if err != nil {
		return err
	}
	if err := nh.LinkSetUp(nl); err != nil {
		return err
	}
	if err := nh.AddrAdd(nl, nlAddr(netip.PrefixFrom(gatewayLL, 64))); err != nil {
		return fmt.Errorf("addr %s: %w", gatewayLL, err)
	}

	// IPv6 addresses are tentative until addrconf's (asynchronous) DAD work
	// has run, even with nodad: until then they neither receive nor serve
	// as a source. Wait, so the pod is fully usable when AddPod returns.
	if err := WaitIPv6Ready(ph, h.Link, []netip.Addr{h.IPv6}, addrTimeout); err != nil {
		return err
	}
	if err := WaitIPv6Ready(nh, h.NodeLink, []netip.Addr{gatewayLL}, addrTimeout); err != nil {
		return err
	}

	ethIdx, nodeIdx := eth.Attrs().Index, nl.Attrs().Index
	podRoutes := []*netlink.Route{
		// The node's IPv4 address is directly on the link...
		{LinkIndex: ethIdx, Dst: prefixNet(netip.PrefixFrom(nodeIPv4, 32)), Scope: netlink.SCOPE_LINK, Src: net.IP(h.IPv4.AsSlice())},
		// ...and the gateway to the rest of the pod range.
		{LinkIndex: ethIdx, Dst: prefixNet(podNet4), Gw: net.IP(nodeIPv4.AsSlice()), Src: net.IP(h.IPv4.AsSlice())},
		{LinkIndex: ethIdx, Dst: prefixNet(podNet6), Gw: net.IP(gatewayLL.AsSlice())},
	}
	for _, r := range podRoutes {
		if err := ph.RouteAdd(r); err != nil {
			return fmt.Errorf("pod route %s: %w", r.Dst, err)
		}
	}
	nodeRoutes := []*netlink.Route{
		{LinkIndex: nodeIdx, Dst: prefixNet(netip.PrefixFrom(h.IPv4, 32)), Scope: netlink.SCOPE_LINK, Src: net.IP(nodeIPv4.AsSlice())},
		{LinkIndex: nodeIdx, Dst: prefixNet(netip.PrefixFrom(h.IPv6, 128))},
	}
	for _, r := range nodeRoutes {
		if err := nh.RouteAdd(r); err != nil {
			return fmt.Errorf("node route %s: %w", r.Dst, err)
		}
	}
	return nil
}

// addrTimeout bounds the wait for IPv6 addresses to become usable.
const addrTimeout = 10 * time.Second

// WaitIPv6Ready waits until every address in addrs is configured on the link
// named link (in the namespace of h), not tentative, and has its local route
// in the "local" table. The kernel installs that route from its addrconf
// work queue, asynchronously, even for IFA_F_NODAD addresses (which are
// never marked tentative), and that work waits for the rtnl lock, which a
// namespace being torn down elsewhere can hold for a long time. Until then,
// packets to the address are dropped (Ip6InAddrErrors). Call it after adding
// IPv6 addresses of your own; AddPod and New already do.
func WaitIPv6Ready(h *netlink.Handle, link string, addrs []netip.Addr, timeout time.Duration) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	deadline := time.Now().Add(timeout)
	for sleep := time.Millisecond; ; sleep = min(2*sleep, 50*time.Millisecond) {
		pending, err := ipv6NotReady(h, l, addrs)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// The addresses changed during the dump (DAD finishing, say):
			// slow kernels (the matrix's guests) see it often. Ask again.
			pending, err = addrs, nil
		}
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("IPv6 addresses %v on %s not ready (missing, tentative or no local route) after %v", pending, link, timeout)
		}
		time.Sleep(sleep)
	}
}

func ipv6NotReady(h *netlink.Handle, l netlink.Link, addrs []netip.Addr) ([]netip.Addr, error) {
	list, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("local routes: %w", err)
	}
	var pending []netip.Addr
	for _, want := range addrs {
		addrOK, routeOK := false, false
		for _, a := range list {
			got, ok := netip.AddrFromSlice(a.IP)
			if ok && got == want && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				addrOK = true
				break
			}
		}
		for _, r := range routes {
			if r.Type != unix.RTN_LOCAL || r.Dst == nil || r.LinkIndex != l.Attrs().Index {
				continue
			}
			got, ok := netip.AddrFromSlice(r.Dst.IP)
			if ones, _ := r.Dst.Mask.Size(); ok && got == want && ones == 128 {
				routeOK = true
				break
			}
		}
		if !addrOK || !routeOK {
			pending = append(pending, want)
		}
	}
	return pending, nil
}

// unmount unmounts a mount point the sandbox made, lazily if it is busy.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// killAll stops every process the sandbox started that is still running.
func (s *Sandbox) killAll() {
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Kill() }()
	}
	wg.Wait()
}
