package e2e

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/tests/sandbox"
)

// connect4Stats reads the kernel's run count and run time of the connect4
// program attached through the pinned link.
func connect4Stats(b *testing.B, pinDir string) ebpf.ProgramStats {
	return sandbox.LinkedProgStats(b, pinDir, "cgroup-connect4")
}

// BenchmarkConnect4 measures with the kernel's bpf_stats what the connect4
// program costs per connect: translated (to the ClusterIP) and passed through
// (straight to a pod address, which is not a frontend), side by side in one
// run. The reported ns/op is the whole socket+connect+exchange+close as the
// client saw it; connect4-ns/connect is the program alone.
func BenchmarkConnect4(b *testing.B) {
	n := newNode(b)
	pods := n.addPods(b, "pod-a", "pod-b", "pod-c")
	n.writeWeb(b, ready(pods[0]), ready(pods[1]), ready(pods[2]))
	n.startAgent(b)
	n.waitFrontend(b, vip+":80", "TCP", addrs(8080, pods...)...)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable bpf_stats: %v", err)
	}
	defer stats.Close()

	for _, tc := range []struct{ name, addr string }{
		{"translated", vip + ":80"},
		{"passthrough", fmt.Sprintf("%s:8080", pods[0].IPv4)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			before := connect4Stats(b, n.sb.PinDir)
			b.ResetTimer()
			rs := n.probe(b, "tcp", "--addr", tc.addr, "--count", fmt.Sprint(b.N))
			b.StopTimer()
			after := connect4Stats(b, n.sb.PinDir)
			requireAllOK(b, rs)
			runs := after.RunCount - before.RunCount
			if runs == 0 {
				b.Fatal("connect4 did not run")
			}
			b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "connect4-ns/connect")
			b.ReportMetric(float64(runs)/float64(b.N), "runs/connect")
		})
	}
}
