package datapath_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/packet"
	"github.com/socklb/socklb/tests/sandbox"
)

// The fixtures' world. The node has 198.51.100.1 and 2001:db8:1::1 on eth0;
// clients (192.0.2.0/24, 198.18.0.0/15, 2001:db8::/64) are behind a router
// at .254/::fe, the other node's pods (10.244.2.0/24, fd00:10:244:2::/64)
// behind that node at .2/::2; this node's pods are 10.244.1.0/24.
var (
	nodeIP4 = netip.MustParseAddr("198.51.100.1")
	nodeIP6 = netip.MustParseAddr("2001:db8:1::1")
	lbIP    = netip.MustParseAddr("203.0.113.7")

	routerMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	otherNodeMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb2}

	localPod4  = netip.MustParseAddrPort("10.244.1.5:8080")
	remotePod4 = netip.MustParseAddrPort("10.244.2.5:8080")
	localPod6  = netip.MustParseAddrPort("[fd00:10:244:1::5]:8080")
	remotePod6 = netip.MustParseAddrPort("[fd00:10:244:2::5]:8080")

	snatMin, snatMax uint16 = 61000, 61999
)

func ap(addr netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(addr, port) }

// frontendFixture is one frontend the maps hold.
type frontendFixture struct {
	addr     netip.AddrPort
	proto    uint8
	flags    lbmap.ServiceFlags
	backends []netip.AddrPort
	local    bool           // the backends run on this node
	ranges   []netip.Prefix // loadBalancerSourceRanges
}

var frontends = []frontendFixture{
	{addr: ap(nodeIP4, 30080), proto: 6, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{localPod4}, local: true},
	{addr: ap(nodeIP4, 30081), proto: 6, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{remotePod4}},
	{addr: ap(nodeIP4, 30082), proto: 17, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{localPod4}, local: true},
	{addr: ap(nodeIP4, 30083), proto: 17, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{remotePod4}},
	{addr: ap(nodeIP6, 30080), proto: 6, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{localPod6}, local: true},
	{addr: ap(nodeIP6, 30081), proto: 6, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{remotePod6}},
	{addr: ap(nodeIP6, 30083), proto: 17, flags: lbmap.FlagNodePort, backends: []netip.AddrPort{remotePod6}},
	{addr: ap(nodeIP4, 30090), proto: 6, flags: lbmap.FlagNodePort},                      // no endpoints
	{addr: ap(nodeIP4, 30091), proto: 6, flags: lbmap.FlagNodePort | lbmap.FlagExtLocal}, // eTP=Local, none here
	{addr: ap(nodeIP4, 30092), proto: 6, flags: lbmap.FlagNodePort | lbmap.FlagExtLocal, backends: []netip.AddrPort{localPod4}, local: true},
	{addr: ap(lbIP, 80), proto: 6, flags: lbmap.FlagLoadBalancer | lbmap.FlagSourceRanges, backends: []netip.AddrPort{localPod4}, local: true,
		ranges: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
	{addr: netip.MustParseAddrPort("10.96.0.10:80"), proto: 6, flags: lbmap.FlagClusterIP, backends: []netip.AddrPort{localPod4}, local: true},
}

type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// fixtureNode holds the programs, their maps and the netns whose FIB the
// XDP program consults.
type fixtureNode struct {
	host     *sandbox.Host
	ifindex  int
	mac      net.HardwareAddr
	maps     *lbmap.Maps
	xdp, tc  *ebpf.Program
	services map[netip.AddrPort]uint32 // frontend -> service id
}

func newFixtureNode(t *testing.T) *fixtureNode {
	t.Helper()
	// run passes XDP an xdp_md (the ingress ifindex the program reads).
	sandbox.RequireKernel(t, "5.15", "BPF_PROG_TEST_RUN of XDP with an xdp_md context")
	sb := sandbox.New(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	f := &fixtureNode{host: sb.Node, services: map[netip.AddrPort]uint32{}}
	if err := f.host.Do(f.wire); err != nil {
		t.Fatalf("wire the fixture node: %v", err)
	}
	m, err := lbmap.Create("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f.maps = m
	f.xdp, f.tc, err = datapath.LoadNodePortPrograms(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.xdp.Close(); f.tc.Close() })
	f.fill(t)
	return f
}

// wire gives the node netns eth0 (a veth whose peer stays beside it) with
// the node's addresses, the routes and permanent neighbours of the world
// above, so bpf_fib_lookup answers without any traffic.
func (f *fixtureNode) wire() error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}
	if err := netlink.LinkAdd(veth); err != nil {
		return err
	}
	for _, name := range []string{"eth0", "peer0"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	eth0, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	f.ifindex, f.mac = eth0.Attrs().Index, eth0.Attrs().HardwareAddr
	for _, a := range []string{"198.51.100.1/24", "2001:db8:1::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = 0x02 // IFA_F_NODAD: usable at once
		if err := netlink.AddrAdd(eth0, addr); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		ip  string
		mac net.HardwareAddr
	}{{"198.51.100.254", routerMAC}, {"2001:db8:1::fe", routerMAC}, {"198.51.100.2", otherNodeMAC}, {"2001:db8:1::2", otherNodeMAC}} {
		ip := net.ParseIP(n.ip)
		fam := netlink.FAMILY_V4
		if ip.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: f.ifindex, Family: fam, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: n.mac}); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.ip, err)
		}
	}
	for _, r := range []struct{ dst, via string }{
		{"192.0.2.0/24", "198.51.100.254"}, {"198.18.0.0/15", "198.51.100.254"}, {"2001:db8::/64", "2001:db8:1::fe"},
		{"10.244.2.0/24", "198.51.100.2"}, {"fd00:10:244:2::/64", "2001:db8:1::2"},
	} {
		_, dst, _ := net.ParseCIDR(r.dst)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: f.ifindex, Dst: dst, Gw: net.ParseIP(r.via)}); err != nil {
			return fmt.Errorf("route %s: %w", r.dst, err)
		}
	}
	return nil
}

// fill writes the frontends the way the syncer lays them out: backends,
// slots, then the master entry.
func (f *fixtureNode) fill(t *testing.T) {
	t.Helper()
	backendIDs := map[netip.AddrPort]uint32{}
	for i, fe := range frontends {
		id := uint32(i + 1)
		f.services[fe.addr] = id
		for slot, b := range fe.backends {
			bid, ok := backendIDs[b]
			if !ok {
				bid = uint32(len(backendIDs) + 1)
				backendIDs[b] = bid
			}
			v := lbmap.NewBackend(b.Addr(), b.Port(), fe.proto, lbmap.BackendActive)
			if fe.local {
				v.Flags = lbmap.BackendLocal
			}
			must(t, f.maps.Backends.Put(bid, v))
			must(t, f.maps.Services.Put(lbmap.NewServiceKey(fe.addr.Addr(), fe.addr.Port(), fe.proto, lbmap.ScopeDefault, uint16(slot+1)),
				lbmap.ServiceValue{BackendId: bid, ServiceId: id}))
		}
		for _, p := range fe.ranges {
			must(t, f.maps.SourceRanges.Put(lbmap.NewSourceRangeKey(id, p), uint8(1)))
		}
		must(t, f.maps.Services.Put(lbmap.NewServiceKey(fe.addr.Addr(), fe.addr.Port(), fe.proto, lbmap.ScopeDefault, 0),
			lbmap.ServiceValue{ServiceId: id, Count: uint16(len(fe.backends)), Flags: fe.flags}))
	}
	must(t, f.maps.NodeConfig.Put(uint32(0), lbmap.NewNodeConfig(nodeIP4, nodeIP6, snatMin, snatMax)))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run runs prog on frame in the node netns, as if it arrived on (XDP) or
// left through (tc) eth0.
func (f *fixtureNode) run(t *testing.T, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	var verdict uint32
	out := make([]byte, len(frame)+256)
	err := f.host.Do(func() error {
		opts := &ebpf.RunOptions{Data: frame, DataOut: out}
		if prog.Type() == ebpf.XDP {
			opts.Context = xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(f.ifindex)}
		}
		var err error
		verdict, err = prog.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return verdict, out
}

// snatPort is the source port a flow client -> frontend was given.
func (f *fixtureNode) snatPort(t *testing.T, client, frontend netip.AddrPort, proto uint8) uint16 {
	t.Helper()
	var flow lbmap.Flow
	if err := f.maps.Nat.Lookup(lbmap.NewFlowKey(client, frontend, proto, lbmap.FlowForward), &flow); err != nil {
		t.Fatalf("flow %s -> %s: %v", client, frontend, err)
	}
	src, ok := flow.NewSrc()
	if !ok {
		t.Fatalf("flow %s -> %s is not SNATed", client, frontend)
	}
	if src.Port() < snatMin || src.Port() > snatMax {
		t.Errorf("SNAT port %d is outside %d-%d", src.Port(), snatMin, snatMax)
	}
	return src.Port()
}

const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTX      = 3
	tcOK       = 0
)

var verdictNames = map[uint32]string{0: "XDP_ABORTED/TC_ACT_OK", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}

// fixture is one packet through one program, Katran-style: description,
// input, expected verdict, expected output. Inputs and outputs may depend
// on the flows earlier fixtures created (their SNAT ports), so they are
// functions; an empty want means the packet must come out unchanged.
type fixture struct {
	name    string
	tc      bool // run the tc egress program instead of XDP
	in      func(t *testing.T, f *fixtureNode) []byte
	verdict uint32
	want    func(t *testing.T, f *fixtureNode) string
}

func tcp4(src, dst netip.AddrPort, payload string) packet.Spec {
	return packet.Spec{Src: src, Dst: dst, Proto: layers.IPProtocolTCP, TCP: packet.TCPFlags{SYN: true}, Payload: []byte(payload)}
}

func udp(src, dst netip.AddrPort, payload string) packet.Spec {
	return packet.Spec{Src: src, Dst: dst, Proto: layers.IPProtocolUDP, Payload: []byte(payload)}
}

func build(s packet.Spec) func(*testing.T, *fixtureNode) []byte {
	return func(t *testing.T, _ *fixtureNode) []byte {
		b, err := packet.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// summary is the expected output of a packet rewritten to s (MACs as given).
func summary(s packet.Spec) string {
	b := packet.MustBuild(s)
	sum, err := packet.Summarize(b)
	if err != nil {
		panic(err)
	}
	return sum.String()
}

func fixed(s packet.Spec) func(*testing.T, *fixtureNode) string {
	return func(*testing.T, *fixtureNode) string { return summary(s) }
}

// forwarded is s as XDP sends it out of eth0 to next hop mac: MACs from the
// FIB, one hop less.
func forwarded(f *fixtureNode, s packet.Spec, mac net.HardwareAddr) packet.Spec {
	s.SrcMAC, s.DstMAC, s.TTL = f.mac, mac, 63
	return s
}

func icmpError(t *testing.T, from netip.Addr, original []byte, typ, code uint8, mtu uint16) []byte {
	t.Helper()
	b, err := packet.ICMPError(from, original, typ, code, mtu)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodePortFixtures(t *testing.T) {
	f := newFixtureNode(t)
	client := netip.MustParseAddrPort("192.0.2.10:40000")
	client6 := netip.MustParseAddrPort("[2001:db8::10]:40000")
	outsider := netip.MustParseAddrPort("198.18.0.1:40000")
	snat := func(port uint16) netip.AddrPort { return ap(nodeIP4, port) }

	fixtures := []fixture{
		{name: "NodePort TCP to a local backend: DNAT, passed to the stack",
			in: build(tcp4(client, ap(nodeIP4, 30080), "GET")), verdict: xdpPass,
			want: fixed(tcp4(client, localPod4, "GET"))},
		{name: "the same flow again keeps its translation",
			in: build(tcp4(client, ap(nodeIP4, 30080), "more")), verdict: xdpPass,
			want: fixed(tcp4(client, localPod4, "more"))},
		{name: "the local backend's reply leaves from the frontend (tc)", tc: true,
			in: build(tcp4(localPod4, client, "200 OK")), verdict: tcOK,
			want: fixed(tcp4(ap(nodeIP4, 30080), client, "200 OK"))},
		{name: "NodePort TCP to a remote backend: SNAT and DNAT, sent back out (XDP_TX)",
			in: build(tcp4(client, ap(nodeIP4, 30081), "GET")), verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, tcp4(snat(f.snatPort(t, client, ap(nodeIP4, 30081), 6)), remotePod4, "GET"), otherNodeMAC))
			}},
		{name: "the remote backend's reply goes back to the client from the frontend",
			in: func(t *testing.T, f *fixtureNode) []byte {
				return packet.MustBuild(tcp4(remotePod4, snat(f.snatPort(t, client, ap(nodeIP4, 30081), 6)), "200 OK"))
			}, verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, tcp4(ap(nodeIP4, 30081), client, "200 OK"), routerMAC))
			}},
		{name: "the remote backend's port unreachable reaches the client about its own packet",
			in: func(t *testing.T, f *fixtureNode) []byte {
				sent := packet.MustBuild(tcp4(snat(f.snatPort(t, client, ap(nodeIP4, 30081), 6)), remotePod4, "GET"))
				return icmpError(t, remotePod4.Addr(), sent, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0)
			}, verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return fmt.Sprintf("%s>%s ICMPv4 %s:0 -> %s:0 ttl=63 icmp=3/3 quoting [TCP %s -> %s ttl=64]",
					f.mac, routerMAC, nodeIP4, client.Addr(), client, ap(nodeIP4, 30081))
			}},
		{name: "fragmentation needed from a router on the way keeps the router as its source",
			in: func(t *testing.T, f *fixtureNode) []byte {
				sent := packet.MustBuild(tcp4(snat(f.snatPort(t, client, ap(nodeIP4, 30081), 6)), remotePod4, "GET"))
				return icmpError(t, netip.MustParseAddr("198.51.100.2"), sent, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1400)
			}, verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return fmt.Sprintf("%s>%s ICMPv4 198.51.100.2:0 -> %s:0 ttl=63 icmp=3/4 quoting [TCP %s -> %s ttl=64]",
					f.mac, routerMAC, client.Addr(), client, ap(nodeIP4, 30081))
			}},
		{name: "NodePort UDP to a local backend",
			in: build(udp(client, ap(nodeIP4, 30082), "q")), verdict: xdpPass,
			want: fixed(udp(client, localPod4, "q"))},
		{name: "the local UDP backend's reply leaves from the frontend (tc)", tc: true,
			in: build(udp(localPod4, client, "a")), verdict: tcOK,
			want: fixed(udp(ap(nodeIP4, 30082), client, "a"))},
		{name: "a local pod's port unreachable about a NodePort datagram is about the frontend (tc)", tc: true,
			in: func(t *testing.T, f *fixtureNode) []byte {
				return icmpError(t, localPod4.Addr(), packet.MustBuild(udp(client, localPod4, "q")), layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0)
			}, verdict: tcOK,
			want: func(t *testing.T, f *fixtureNode) string {
				return fmt.Sprintf("%s>%s ICMPv4 %s:0 -> %s:0 ttl=64 icmp=3/3 quoting [UDP %s -> %s ttl=64]",
					packet.NodeMAC, packet.ClientMAC, nodeIP4, client.Addr(), client, ap(nodeIP4, 30082))
			}},
		{name: "NodePort UDP to a remote backend and its reply",
			in: build(udp(client, ap(nodeIP4, 30083), "q")), verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, udp(snat(f.snatPort(t, client, ap(nodeIP4, 30083), 17)), remotePod4, "q"), otherNodeMAC))
			}},
		{name: "the remote UDP backend's reply",
			in: func(t *testing.T, f *fixtureNode) []byte {
				return packet.MustBuild(udp(remotePod4, snat(f.snatPort(t, client, ap(nodeIP4, 30083), 17)), "a"))
			}, verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, udp(ap(nodeIP4, 30083), client, "a"), routerMAC))
			}},
		{name: "IPv6 NodePort TCP to a local backend",
			in: build(tcp4(client6, ap(nodeIP6, 30080), "GET")), verdict: xdpPass,
			want: fixed(tcp4(client6, localPod6, "GET"))},
		{name: "IPv6 local backend's reply (tc)", tc: true,
			in: build(tcp4(localPod6, client6, "200")), verdict: tcOK,
			want: fixed(tcp4(ap(nodeIP6, 30080), client6, "200"))},
		{name: "IPv6 NodePort TCP to a remote backend",
			in: build(tcp4(client6, ap(nodeIP6, 30081), "GET")), verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, tcp4(ap(nodeIP6, f.snatPort(t, client6, ap(nodeIP6, 30081), 6)), remotePod6, "GET"), otherNodeMAC))
			}},
		{name: "IPv6 packet too big from the remote backend reaches the client",
			in: func(t *testing.T, f *fixtureNode) []byte {
				sent := packet.MustBuild(tcp4(ap(nodeIP6, f.snatPort(t, client6, ap(nodeIP6, 30081), 6)), remotePod6, "GET"))
				return icmpError(t, remotePod6.Addr(), sent, layers.ICMPv6TypePacketTooBig, 0, 1280)
			}, verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return fmt.Sprintf("%s>%s ICMPv6 [%s]:0 -> [%s]:0 ttl=63 icmp=2/0 quoting [TCP %s -> %s ttl=64]",
					f.mac, routerMAC, nodeIP6, client6.Addr(), client6, ap(nodeIP6, 30081))
			}},
		{name: "IPv6 NodePort UDP to a remote backend",
			in: build(udp(client6, ap(nodeIP6, 30083), "q")), verdict: xdpTX,
			want: func(t *testing.T, f *fixtureNode) string {
				return summary(forwarded(f, udp(ap(nodeIP6, f.snatPort(t, client6, ap(nodeIP6, 30083), 17)), remotePod6, "q"), otherNodeMAC))
			}},
		{name: "no endpoints: passed untranslated, the stack refuses it",
			in: build(tcp4(client, ap(nodeIP4, 30090), "GET")), verdict: xdpPass},
		{name: "externalTrafficPolicy=Local without a local endpoint: dropped",
			in: build(tcp4(client, ap(nodeIP4, 30091), "GET")), verdict: xdpDrop},
		{name: "externalTrafficPolicy=Local keeps the client's address",
			in: build(tcp4(client, ap(nodeIP4, 30092), "GET")), verdict: xdpPass,
			want: fixed(tcp4(client, localPod4, "GET"))},
		{name: "LoadBalancer IP from inside loadBalancerSourceRanges",
			in: build(tcp4(client, ap(lbIP, 80), "GET")), verdict: xdpPass,
			want: fixed(tcp4(client, localPod4, "GET"))},
		{name: "LoadBalancer IP from outside loadBalancerSourceRanges: dropped",
			in: build(tcp4(outsider, ap(lbIP, 80), "GET")), verdict: xdpDrop},
		{name: "a ClusterIP arriving from outside is not XDP's",
			in: build(tcp4(client, netip.MustParseAddrPort("10.96.0.10:80"), "GET")), verdict: xdpPass},
		{name: "a node port that is no frontend",
			in: build(tcp4(client, ap(nodeIP4, 30999), "GET")), verdict: xdpPass},
		{name: "an IPv4 fragment to a frontend is not translated",
			in: build(packet.Spec{Src: client, Dst: ap(nodeIP4, 30080), Proto: layers.IPProtocolUDP, Payload: []byte("frag"), MoreFrags: true}), verdict: xdpPass},
		{name: "a later fragment (offset, no ports) is not translated",
			in: build(packet.Spec{Src: client, Dst: ap(nodeIP4, 30082), Proto: layers.IPProtocolUDP, Payload: []byte("frag"), FragOffset: 8}), verdict: xdpPass},
		{name: "IPv4 options: not translated",
			in: build(packet.Spec{Src: client, Dst: ap(nodeIP4, 30080), Proto: layers.IPProtocolTCP, Payload: []byte("x"),
				IPv4Opts: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}}), verdict: xdpPass},
		{name: "a TCP header cut short: not translated",
			in: func(t *testing.T, f *fixtureNode) []byte {
				return packet.MustBuild(tcp4(client, ap(nodeIP4, 30080), ""))[:14+20+10]
			}, verdict: xdpPass},
		{name: "an IP header cut short: not translated",
			in: func(t *testing.T, f *fixtureNode) []byte {
				return packet.MustBuild(tcp4(client, ap(nodeIP4, 30080), ""))[:14+12]
			}, verdict: xdpPass},
		{name: "an IPv4 total length below its header: not translated",
			in: func(t *testing.T, f *fixtureNode) []byte {
				b := packet.MustBuild(tcp4(client, ap(nodeIP4, 30080), "GET"))
				b[14+2], b[14+3] = 0, 10
				return b
			}, verdict: xdpPass},
		{name: "a reply of a flow nobody translated leaves unchanged (tc)", tc: true,
			in: build(tcp4(netip.MustParseAddrPort("10.244.1.9:8080"), client, "x")), verdict: tcOK},
	}
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			in := fx.in(t, f)
			prog := f.xdp
			if fx.tc {
				prog = f.tc
			}
			verdict, out := f.run(t, prog, in)
			if verdict != fx.verdict {
				t.Errorf("verdict %s, want %s", verdictNames[verdict], verdictNames[fx.verdict])
			}
			if fx.want == nil {
				if !bytes.Equal(out, in) {
					got, _ := packet.Summarize(out)
					t.Errorf("packet changed: %s", got)
				}
				return
			}
			if err := packet.VerifyChecksums(out); err != nil {
				t.Errorf("output checksums: %v", err)
			}
			got, err := packet.Summarize(out)
			if err != nil {
				t.Fatalf("output: %v", err)
			}
			if want := fx.want(t, f); got.String() != want {
				t.Errorf("output\n got %s\nwant %s", got, want)
			}
		})
	}
}

// monotonicNow is bpf_ktime_get_ns's clock.
func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// ageFlow moves the last-seen time of the entry of key back by ago.
func (f *fixtureNode) ageFlow(t *testing.T, key lbmap.FlowKey, ago time.Duration) {
	t.Helper()
	var flow lbmap.Flow
	if err := f.maps.Nat.Lookup(key, &flow); err != nil {
		t.Fatalf("flow %s -> %s: %v", key.Src(), key.Dst(), err)
	}
	flow.SeenNs = monotonicNow(t) - uint64(ago)
	must(t, f.maps.Nat.Put(key, flow))
}

// A SNAT port is a flow's until the flow has been idle longer than TCP's
// TIME_WAIT; then a new flow may take it, and the old tuple, if it comes
// back, starts a flow of its own instead of stealing the port back.
func TestSNATPortReuse(t *testing.T) {
	f := newFixtureNode(t)
	// Two SNAT ports only, so that the third flow finds none free.
	must(t, f.maps.NodeConfig.Put(uint32(0), lbmap.NewNodeConfig(nodeIP4, nodeIP6, 61000, 61001)))
	frontend := ap(nodeIP4, 30081)
	clientA := netip.MustParseAddrPort("192.0.2.10:40001")
	clientB := netip.MustParseAddrPort("192.0.2.11:40002")
	clientC := netip.MustParseAddrPort("192.0.2.12:40003")
	send := func(client netip.AddrPort) uint32 {
		v, _ := f.run(t, f.xdp, packet.MustBuild(tcp4(client, frontend, "x")))
		return v
	}
	fwdKey := func(client netip.AddrPort) lbmap.FlowKey {
		return lbmap.NewFlowKey(client, frontend, 6, lbmap.FlowForward)
	}
	replyKey := func(port uint16) lbmap.FlowKey {
		return lbmap.NewFlowKey(remotePod4, ap(nodeIP4, port), 6, lbmap.FlowReply)
	}

	steps := []struct {
		desc    string
		do      func()
		client  netip.AddrPort
		verdict uint32
	}{
		{"A gets a port", nil, clientA, xdpTX},
		{"B gets the other", nil, clientB, xdpTX},
		{"C finds none free: dropped", nil, clientC, xdpDrop},
		{"A idle past TIME_WAIT: C takes its port", func() {
			port := f.snatPort(t, clientA, frontend, 6)
			f.ageFlow(t, fwdKey(clientA), 100*time.Second)
			f.ageFlow(t, replyKey(port), 100*time.Second)
		}, clientC, xdpTX},
		{"A's old tuple back: a flow of its own, none free, not C's port", nil, clientA, xdpDrop},
		{"A's entry quiet a while but C holds the port: A does not take it back", func() {
			f.ageFlow(t, fwdKey(clientA), 2*time.Second)
		}, clientA, xdpDrop},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if got := send(st.client); got != st.verdict {
			t.Fatalf("%s: verdict %s, want %s", st.desc, verdictNames[got], verdictNames[st.verdict])
		}
	}
	if a, c := f.snatPort(t, clientA, frontend, 6), f.snatPort(t, clientC, frontend, 6); a == c {
		var rev lbmap.Flow
		must(t, f.maps.Nat.Lookup(replyKey(c), &rev))
		if dst, _ := rev.NewDst(); dst != clientC {
			t.Errorf("replies on SNAT port %d go to %s, want C %s", c, dst, clientC)
		}
	}
}
