package sandbox

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestZZDebug(t *testing.T) {
	s := New(t)
	a := s.AddPod(t, "a")
	b := s.AddPod(t, "b")
	s.StartNameServer(t, b, nil, []int{5353})
	bh, _ := handleAt(b.Netns)
	nh, _ := handleAt(s.Node.Netns)
	eth, _ := bh.LinkByName(b.Link)
	nl, _ := nh.LinkByName(b.NodeLink)
	fails := 0
	for i := 0; i < 40; i++ {
		x := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x2, 0x44, 0, byte(i + 1), 15: 3})
		if err := bh.AddrAdd(eth, nlAddr(netip.PrefixFrom(x, 128))); err != nil {
			t.Fatal(err)
		}
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: nl.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(x, 128))}); err != nil {
			t.Fatal(err)
		}
		if err := WaitIPv6Ready(bh, b.Link, []netip.Addr{x}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		rs := s.Probe(t, a, true, "udp", "--addr", hostPort(x, 5353), "--count", "1", "--timeout", "1500ms")
		if !rs[0].OK {
			fails++
			t.Logf("%v: %+v", x, rs[0])
			ctx := context.Background()
			for _, h := range []*Host{nil, b} {
				out, _ := s.Run(t, ctx, h, false, "sh", "-c", "ip -6 neigh; ip -6 route; ip -6 addr show dev eth0 2>/dev/null; nstat -az | grep -iE 'Ip6(InNoRoutes|InAddrErrors|OutNoRoutes|InDiscards|OutDiscards)|Udp6|Icmp6(In|Out)Neigh|NoPorts|Drop' | grep -v ' 0 '")
				t.Logf("--- %v:\n%s", h, out)
			}
		}
	}
	t.Logf("fails %d/40", fails)
}
