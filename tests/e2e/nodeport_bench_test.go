package e2e

import (
	"context"
	"fmt"
	"github.com/socklb/socklb/pkg/lbmap"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk runs a bounded wrk from the outside client against url and returns
// its requests per second. namesrv closes every connection after its
// answer, so each request is a new connection: the rate is that of new
// flows, which is what a translation costs.
//
// Each run gets source ports of its own (ports, "LOW HIGH"): the server
// closes first, so a pod holds TIME_WAIT for every connection, and a port
// reused by the next run with another initial sequence number would be
// refused for a second — an artifact of running one after the other.
func (w *nsWorld) wrk(b *testing.B, url, ports string) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := w.c.Run(b, ctx, w.c.Client, false, "sh", "-c",
		"echo "+ports+" > /proc/sys/net/ipv4/ip_local_port_range && exec wrk -t1 -c8 -d4s --timeout 2s "+url)
	if err != nil {
		b.Fatalf("wrk %s: %v", url, err)
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("wrk %s printed no rate:\n%s", url, out)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	return rate
}

// BenchmarkNodePortRequestRate is the NodePort request rate from the outside
// client through node1's XDP to a backend on node1 and to one on node2,
// beside the same client reaching those pods directly through node1 (a
// route the benchmark adds: the same hops, no translation). Figures, one
// run: compare the ratios, the machine is shared.
func BenchmarkNodePortRequestRate(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is not installed (make deps installs it)")
	}
	w := newNSWorld(b)
	node1 := w.c.Nodes[0]
	w.c.RouteVia(b, netip.MustParsePrefix("10.244.1.0/24"), 1)
	w.c.RouteVia(b, netip.MustParsePrefix("10.244.2.0/24"), 1)
	w.waitFrontend(b, node1, netip.AddrPortFrom(node1.IPv4, 30090).String(), "TCP", 1)
	w.waitFrontend(b, node1, netip.AddrPortFrom(node1.IPv4, 30091).String(), "TCP", 1)

	type row struct {
		name          string
		direct, viaNP string
	}
	// Fewer client ports than SNAT ports (--snat-ports, 4,536 by default):
	// each client port keeps its SNAT port while its flow lives, so one
	// client cycling through more ports than that toward one backend would
	// run the SNAT ports out, as any source NAT would.
	ranges := []string{"20000 23999", "24000 27999", "35000 38999", "39000 42999"}
	for i, r := range []row{
		{"local backend", fmt.Sprintf("http://%s:8080/", w.webA.IPv4), fmt.Sprintf("http://%s/", netip.AddrPortFrom(node1.IPv4, 30090))},
		{"remote backend", fmt.Sprintf("http://%s:8080/", w.webB.IPv4), fmt.Sprintf("http://%s/", netip.AddrPortFrom(node1.IPv4, 30091))},
	} {
		direct := w.wrk(b, r.direct, ranges[2*i])
		nodePort := w.wrk(b, r.viaNP, ranges[2*i+1])
		b.Logf("%s: direct to the pod %.0f req/s, through node1:NodePort %.0f req/s, ratio %.2f", r.name, direct, nodePort, nodePort/direct)
		unit := map[string]string{"local backend": "local", "remote backend": "remote"}[r.name]
		b.ReportMetric(direct, unit+"-direct-req/s")
		b.ReportMetric(nodePort, unit+"-nodeport-req/s")
		b.ReportMetric(nodePort/direct, unit+"-ratio")
	}
	m, err := lbmap.OpenPinned(node1.PinDir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := lbmap.ReadCounters(m.Counters)
	if err != nil {
		b.Fatal(err)
	}
	// A SNAT port shortage drops a SYN, which costs a second: the rate would
	// measure that, not the datapath.
	b.ReportMetric(float64(c["snat_ports"]), "snat-port-drops")
}
