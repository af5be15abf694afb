package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/tests/sandbox"
)

// BenchmarkSocketState measures with bpf_stats what connect4 (per
// translated TCP connect) and sendmsg4 (per datagram of one unconnected UDP
// socket) cost with per-socket state in socket-local storage against the
// LRU maps (--socket-storage=false), each with nobody watching and with a
// socklb monitor watching.
func BenchmarkSocketState(b *testing.B) {
	for _, storage := range []struct {
		name string
		flag string
	}{{"sk_storage", "--socket-storage=true"}, {"lru", "--socket-storage=false"}} {
		b.Run(storage.name, func(b *testing.B) {
			n := newNode(b)
			pods := n.addPods(b, "pod-a", "pod-b")
			n.writeWeb(b, ready(pods[0]), ready(pods[1]))
			n.write(b, "dns.yaml", serviceYAML("dns", []string{dnsVIP}, dnsPort)+
				sliceYAML("dns", "dns-1", "IPv4", []servicePort{dnsPort}, ready(pods[0]), ready(pods[1])))
			n.agent = n.sb.Start(b, n.sb.Node, false, n.socklb, "agent", "--from-dir", n.dir, "--cgroup", n.sb.Cgroup,
				"--bpffs", n.sb.PinDir, "--node-name", "test-node", storage.flag)
			n.waitFrontend(b, vip+":80", "TCP", addrs(8080, pods...)...)
			n.waitFrontend(b, dnsVIP+":53", "UDP", addrs(5353, pods...)...)
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatalf("enable bpf_stats: %v", err)
			}
			defer stats.Close()
			for _, watched := range []bool{false, true} {
				name := "unwatched"
				if watched {
					name = "watched"
				}
				b.Run(name+"/connect4", func(b *testing.B) {
					mon := n.benchMonitor(b, watched)
					defer mon()
					n.benchProg(b, "cgroup-connect4", "connect4-ns/connect", "tcp", "--addr", vip+":80", "--count", fmt.Sprint(b.N))
				})
				b.Run(name+"/sendmsg4", func(b *testing.B) {
					mon := n.benchMonitor(b, watched)
					defer mon()
					n.benchProg(b, "cgroup-sendmsg4", "sendmsg4-ns/datagram", "udp", "--addr", dnsVIP+":53", "--count", fmt.Sprint(b.N))
				})
			}
		})
	}
}

// benchMonitor starts a monitor when watched; the returned func stops it.
func (n *node) benchMonitor(b *testing.B, watched bool) func() {
	if !watched {
		return func() {}
	}
	p := n.sb.Start(b, n.sb.Node, false, n.socklb, "monitor", "-o", "json", "--bpffs", n.sb.PinDir)
	if err := p.WaitStderr("watching", 10*time.Second); err != nil {
		b.Fatal(err)
	}
	return p.Kill
}

// benchProg runs sockprobe args and reports the run time per run of the
// program attached through links/pin.
func (n *node) benchProg(b *testing.B, pin, unit string, args ...string) {
	before := sandbox.LinkedProgStats(b, n.sb.PinDir, pin)
	b.ResetTimer()
	rs := n.probe(b, args...)
	b.StopTimer()
	after := sandbox.LinkedProgStats(b, n.sb.PinDir, pin)
	sandbox.RequireAllOK(b, rs)
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatalf("%s did not run", pin)
	}
	b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), unit)
}
