package e2e

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/tests/sandbox"
)

// BenchmarkSendmsg4 measures with the kernel's bpf_stats what the sendmsg4
// program costs per datagram of one unconnected UDP socket to a ClusterIP:
// the first datagram picks a backend and writes the per-socket entries, every
// later one finds them and writes nothing.
func BenchmarkSendmsg4(b *testing.B) {
	n := newNode(b)
	pods := n.addPods(b, "pod-a", "pod-b")
	dns := servicePort{name: "dns", port: 53, targetPort: "5353", protocol: "UDP", slicePort: 5353}
	n.write(b, "dns.yaml", serviceYAML("dns", []string{vip}, dns)+
		sliceYAML("dns", "dns-1", "IPv4", []servicePort{dns}, ready(pods[0]), ready(pods[1])))
	n.startAgent(b)
	n.waitFrontend(b, vip+":53", "UDP", addrs(5353, pods...)...)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf_stats: %v", err)
	}
	defer stats.Close()

	before := sandbox.LinkedProgStats(b, n.sb.PinDir, "cgroup-sendmsg4")
	b.ResetTimer()
	rs := n.probe(b, "udp", "--addr", vip+":53", "--count", fmt.Sprint(b.N))
	b.StopTimer()
	after := sandbox.LinkedProgStats(b, n.sb.PinDir, "cgroup-sendmsg4")
	requireAllOK(b, rs)
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatal("sendmsg4 did not run")
	}
	b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "sendmsg4-ns/datagram")
}
