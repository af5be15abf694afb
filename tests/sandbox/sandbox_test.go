package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBinaries()
	os.Exit(code)
}

func TestProbeParsing(t *testing.T) {
	out := `{"i":0,"ok":true,"backend":"pod-a","peer":"10.96.0.50:80","err":"","errno":"","dur_us":123}
{"i":1,"ok":false,"backend":"","peer":"","err":"connect: network is unreachable","errno":"ENETUNREACH","dur_us":9}
`
	rs, err := ProbeResults(out)
	if err != nil || len(rs) != 2 || !rs[0].OK || rs[0].Backend != "pod-a" || rs[0].Peer != "10.96.0.50:80" || rs[1].Errno != "ENETUNREACH" {
		t.Fatalf("ProbeResults: %+v, %v", rs, err)
	}
	if b := Backends(rs); b["pod-a"] != 1 || len(b) != 1 {
		t.Fatalf("Backends: %v", b)
	}
	s, err := ParseLoopSummary(`{"attempts":3,"failures":1,"first_err":"x","first_errno":"EPERM","errnos":{"EPERM":1},"backends":{"a":2},"dur_ms":5}` + "\n")
	if err != nil || s.Attempts != 3 || s.Backends["a"] != 2 || s.Errnos["EPERM"] != 1 {
		t.Fatalf("ParseLoopSummary: %+v, %v", s, err)
	}
}

// hostPort formats ip:port, bracketing IPv6.
func hostPort(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// hostColon is "IP:" or "[IPv6]:", the start of an address:port string.
func hostColon(a netip.Addr) string {
	s := hostPort(a, 0)
	return s[:len(s)-1]
}

func TestPodToPod(t *testing.T) {
	t.Parallel()
	s := New(t)
	a := s.AddPod(t, "a")
	b := s.AddPod(t, "b")
	if a.IPv4.String() != "10.244.0.2" || b.IPv4.String() != "10.244.0.3" || b.IPv6.String() != "fd00:10:244::3" {
		t.Fatalf("addresses: a=%v/%v b=%v/%v", a.IPv4, a.IPv6, b.IPv4, b.IPv6)
	}
	srv := s.StartNameServer(t, b, []int{8080}, []int{5353})

	for _, fam := range []struct {
		name     string
		dst, src netip.Addr
	}{{"ipv4", b.IPv4, a.IPv4}, {"ipv6", b.IPv6, a.IPv6}} {
		t.Run(fam.name, func(t *testing.T) {
			tcpAddr, udpAddr := hostPort(fam.dst, 8080), hostPort(fam.dst, 5353)
			for _, r := range s.Probe(t, a, true, "tcp", "--addr", tcpAddr, "--count", "3") {
				if !r.OK || r.Backend != "b" || r.Peer != tcpAddr || !strings.HasPrefix(r.Local, hostColon(fam.src)) {
					t.Errorf("tcp: %+v", r)
				}
			}
			for _, r := range s.Probe(t, a, true, "udp", "--addr", udpAddr, "--count", "3") {
				if !r.OK || r.Backend != "b" || r.From != udpAddr {
					t.Errorf("udp: %+v", r)
				}
			}
			for _, r := range s.Probe(t, a, true, "udp-connected", "--addr", udpAddr, "--count", "3") {
				if !r.OK || r.Backend != "b" || r.Peer != udpAddr {
					t.Errorf("udp-connected: %+v", r)
				}
			}
			// The backend saw pod a's address.
			if err := srv.WaitStderr("tcp peer="+hostColon(fam.src), 5*time.Second); err != nil {
				t.Errorf("namesrv --log-peers: %v", err)
			}
			if err := srv.WaitStderr("udp peer="+hostColon(fam.src), 5*time.Second); err != nil {
				t.Errorf("namesrv --log-peers: %v", err)
			}
		})
	}

	t.Run("from-node", func(t *testing.T) {
		for _, dst := range []netip.Addr{b.IPv4, b.IPv6} {
			rs := s.Probe(t, nil, false, "tcp", "--addr", hostPort(dst, 8080))
			if len(rs) != 1 || !rs[0].OK || rs[0].Backend != "b" {
				t.Errorf("node -> %v: %+v", dst, rs)
			}
		}
	})

	t.Run("raw-tcp-client", func(t *testing.T) {
		// A client that doesn't speak HTTP gets the bare name.
		err := a.Do(func() error {
			c, err := net.DialTimeout("tcp", hostPort(b.IPv4, 8080), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, "hello\n"); err != nil {
				return err
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "b\n" {
				return fmt.Errorf("answer %q, %v", line, err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("udp-reply-source", func(t *testing.T) {
		// b gets a second address per family. Its routes would pick the
		// first one as the source of a reply; namesrv must answer from the
		// address the datagram was sent to.
		extra4, extra6 := netip.MustParseAddr("10.244.200.3"), netip.MustParseAddr("fd00:10:244:200::3")
		bh, err := handleAt(b.Netns)
		if err != nil {
			t.Fatal(err)
		}
		defer bh.Close()
		nh, err := handleAt(s.Node.Netns)
		if err != nil {
			t.Fatal(err)
		}
		defer nh.Close()
		eth, err := bh.LinkByName(b.Link)
		if err != nil {
			t.Fatal(err)
		}
		nl, err := nh.LinkByName(b.NodeLink)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []netip.Addr{extra4, extra6} {
			if err := bh.AddrAdd(eth, nlAddr(netip.PrefixFrom(x, x.BitLen()))); err != nil {
				t.Fatal(err)
			}
			if err := nh.RouteAdd(&netlink.Route{LinkIndex: nl.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(x, x.BitLen()))}); err != nil {
				t.Fatal(err)
			}
			if x.Is6() {
				if err := WaitIPv6Ready(bh, b.Link, []netip.Addr{x}, 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			dst := hostPort(x, 5353)
			for _, r := range s.Probe(t, a, true, "udp", "--addr", dst, "--count", "2") {
				if !r.OK || r.Backend != "b" || r.From != dst {
					t.Errorf("udp to %s: %+v", dst, r)
				}
			}
		}
	})

	t.Run("tcp-loop", func(t *testing.T) {
		bin := Binaries(t, SockProbePkg)[SockProbePkg]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := s.Run(t, ctx, a, true, bin, "tcp-loop", "--addr", hostPort(b.IPv4, 8080), "--duration", "5s", "--max", "20", "--interval", "1ms")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := ParseLoopSummary(out)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Attempts != 20 || sum.Failures != 0 || sum.Backends["b"] != 20 {
			t.Errorf("summary: %+v", sum)
		}
	})
}

func TestUnroutedVIPFailsFast(t *testing.T) {
	t.Parallel()
	s := New(t)
	a := s.AddPod(t, "a")
	for _, h := range []*Host{a, nil} {
		for _, args := range [][]string{
			{"tcp", "--addr", "10.96.0.50:80", "--count", "2"},
			{"tcp", "--addr", "[fd00::50]:80", "--count", "2"},
			{"udp", "--addr", "10.96.0.50:53", "--count", "2"},
			{"udp-connected", "--addr", "[fd00::50]:53", "--count", "1"},
		} {
			rs := s.Probe(t, h, true, args...)
			if len(rs) == 0 {
				t.Errorf("%v: no results", args)
			}
			for _, r := range rs {
				if r.OK || r.Errno != "ENETUNREACH" || r.DurUS > 500_000 {
					t.Errorf("%v from %v: want a fast ENETUNREACH, got %+v", args, h, r)
				}
			}
		}
	}
	// A closed port on a reachable pod is refused, not unreachable.
	rs := s.Probe(t, a, true, "tcp", "--addr", hostPort(s.Node.IPv4, 81))
	if len(rs) != 1 || rs[0].Errno != "ECONNREFUSED" {
		t.Errorf("closed port: %+v", rs)
	}
}

func TestCgroupMembership(t *testing.T) {
	t.Parallel()
	s := New(t)
	if filepath.Dir(s.Cgroup) != mustCgroup2Root(t) || !strings.HasPrefix(filepath.Base(s.Cgroup), "socklb-test-") {
		t.Fatalf("cgroup %s", s.Cgroup)
	}
	a := s.AddPod(t, "a")
	in := s.Start(t, a, true, "sh", "-c", "echo started; exec sleep 30")
	out := s.Start(t, a, false, "sh", "-c", "echo started; exec sleep 30")
	// Start returns once nsenter is forked: wait until it has joined the
	// netns and exec'd the command.
	for _, p := range []*Process{in, out} {
		if err := p.WaitOutput("started", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pids, err := cgroupPids(s.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	if !containsInt(pids, in.Pid()) || containsInt(pids, out.Pid()) {
		t.Fatalf("cgroup.procs %v: want %d in, %d not", pids, in.Pid(), out.Pid())
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", in.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "0::/"+filepath.Base(s.Cgroup)+"\n") {
		t.Errorf("/proc/%d/cgroup: %s", in.Pid(), cg)
	}
	// The process runs in the pod's network namespace.
	if ino(t, fmt.Sprintf("/proc/%d/ns/net", in.Pid())) != ino(t, a.Netns) {
		t.Errorf("process not in pod netns")
	}
	in.Kill()
	if !in.Exited() {
		t.Errorf("still running after Kill")
	}
	if err := in.Signal(unix.SIGTERM); err != os.ErrProcessDone {
		t.Errorf("Signal after exit: %v", err)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	s := New(t)
	ctx := context.Background()
	if out, err := s.Run(t, ctx, nil, false, "sh", "-c", "echo hi; echo oops >&2; exit 3"); err == nil || out != "hi\n" || !strings.Contains(err.Error(), "oops") {
		t.Errorf("failing command: %q, %v", out, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Run(t, short, nil, false, "sleep", "30"); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %v", err, time.Since(start))
	}
	// The node has forwarding on and no default route.
	out, err := s.Run(t, ctx, nil, false, "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
	if err != nil || out != "1\n1\n" {
		t.Errorf("node forwarding: %q, %v", out, err)
	}
}

func TestPinDirOnFreshBPFFS(t *testing.T) {
	t.Parallel()
	s := New(t)
	var st unix.Statfs_t
	if err := unix.Statfs(s.BPFFS, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("statfs %s: type %#x, %v", s.BPFFS, st.Type, err)
	}
	if filepath.Dir(s.PinDir) != s.BPFFS {
		t.Errorf("PinDir %s not in %s", s.PinDir, s.BPFFS)
	}
	if _, err := os.Stat(s.PinDir); !os.IsNotExist(err) {
		t.Errorf("PinDir exists already: %v", err)
	}
	if err := os.Mkdir(s.PinDir, 0o700); err != nil {
		t.Errorf("mkdir PinDir: %v", err)
	}
}

func TestCleanupLeavesNothing(t *testing.T) {
	t.Parallel()
	var s *Sandbox
	var procs []*Process
	var netnsPaths []string
	t.Run("sandbox", func(t *testing.T) {
		s = New(t)
		a := s.AddPod(t, "a")
		b := s.AddPod(t, "b")
		netnsPaths = []string{s.Node.Netns, a.Netns, b.Netns}
		procs = append(procs,
			s.StartNameServer(t, b, []int{80}, []int{53}),
			s.Start(t, a, true, "sleep", "60"),
			s.Start(t, nil, true, "sh", "-c", "sleep 60 & wait"), // leaves a grandchild in the cgroup
		)
		if err := os.MkdirAll(filepath.Join(s.Cgroup, "child"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(s.PinDir, 0o700); err != nil {
			t.Fatal(err)
		}
	})
	if s == nil {
		t.Fatal("sandbox subtest did not run")
	}
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("process %d still running", p.Pid())
		}
	}
	if _, err := os.Stat(s.Cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind: %v", s.Cgroup, err)
	}
	for _, p := range netnsPaths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("netns %s left behind: %v", p, err)
		}
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), s.Prefix) {
			t.Errorf("netns %s left behind", e.Name())
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range append([]string{s.BPFFS}, netnsPaths...) {
		if strings.Contains(string(mi), " "+needle+" ") {
			t.Errorf("mount %s left behind", needle)
		}
	}
}

func TestParallelSandboxes(t *testing.T) {
	t.Parallel()
	for i := range 2 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			s := New(t)
			a := s.AddPod(t, "a")
			b := s.AddPod(t, "b")
			s.StartNameServer(t, b, []int{80}, nil)
			rs := s.Probe(t, a, true, "tcp", "--addr", hostPort(b.IPv6, 80), "--count", "5")
			if Backends(rs)["b"] != 5 {
				t.Errorf("%+v", rs)
			}
		})
	}
}

func mustCgroup2Root(t *testing.T) string {
	r, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func ino(t *testing.T, path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
