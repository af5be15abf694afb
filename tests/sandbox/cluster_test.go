package sandbox

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestClusterAddresses(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	a := c.AddPod(t, 1, "a")
	a2 := c.AddPod(t, 1, "a2")
	b := c.AddPod(t, 2, "b")
	cases := []struct {
		name string
		got  netip.Addr
		want string
	}{
		{"node1 ipv4", c.Node(t, 1).IPv4, "198.51.100.1"},
		{"node2 ipv6", c.Node(t, 2).IPv6, "2001:db8:1::2"},
		{"node host ipv4", c.Node(t, 2).Host.IPv4, "198.51.100.2"},
		{"client ipv4", c.Client.IPv4, "198.51.100.100"},
		{"client ipv6", c.Client.IPv6, "2001:db8:1::100"},
		{"first pod on node1 ipv4", a.IPv4, "10.244.1.2"},
		{"second pod on node1 ipv6", a2.IPv6, "fd00:10:244:1::3"},
		{"first pod on node2 ipv4", b.IPv4, "10.244.2.2"},
		{"first pod on node2 ipv6", b.IPv6, "fd00:10:244:2::2"},
	}
	for _, tc := range cases {
		if tc.got.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	if got := c.Node(t, 1).Pods(); len(got) != 2 || got[0] != a || got[1] != a2 {
		t.Errorf("node1 pods: %v, want a, a2", got)
	}
	for _, n := range c.Nodes {
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(n.PinDir), &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
			t.Errorf("%s: pin dir parent %s: statfs type %#x, %v; want a bpffs", n.Host.Name, filepath.Dir(n.PinDir), st.Type, err)
		}
		if want := filepath.Join(c.BPFFS, n.Host.Name, "socklb"); n.PinDir != want {
			t.Errorf("%s: PinDir %s, want %s", n.Host.Name, n.PinDir, want)
		}
		if fi, err := os.Stat(n.Cgroup); err != nil || !fi.IsDir() || filepath.Dir(n.Cgroup) != c.Cgroup {
			t.Errorf("%s: cgroup %s: %v; want a directory below %s", n.Host.Name, n.Cgroup, err, c.Cgroup)
		}
	}
}

func TestClusterReachability(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	n1, n2 := c.Node(t, 1), c.Node(t, 2)
	a := c.AddPod(t, 1, "a")
	b := c.AddPod(t, 2, "b")
	for _, h := range []*Host{n1.Host, n2.Host, a, b} {
		c.StartNameServer(t, h, []int{8080}, nil)
	}
	type family struct {
		name string
		addr func(*Host) netip.Addr
	}
	families := []family{
		{"ipv4", func(h *Host) netip.Addr { return h.IPv4 }},
		{"ipv6", func(h *Host) netip.Addr { return h.IPv6 }},
	}
	cases := []struct {
		name      string
		from, to  *Host
		wantErrno string // "" = the connect succeeds and to answers
	}{
		{"client to node1's LAN address", c.Client, n1.Host, ""},
		{"client to node2's LAN address", c.Client, n2.Host, ""},
		{"node1 to a pod on node2 through the pod range route", n1.Host, b, ""},
		{"pod on node1 to pod on node2", a, b, ""},
		{"pod on node2 to node1", b, n1.Host, ""},
		{"client to a pod: no route", c.Client, a, "ENETUNREACH"},
		{"client to a pod on node2: no route", c.Client, b, "ENETUNREACH"},
	}
	for _, tc := range cases {
		for _, fam := range families {
			t.Run(tc.name+"/"+fam.name, func(t *testing.T) {
				dst := hostPort(fam.addr(tc.to), 8080)
				rs := c.Probe(t, tc.from, false, "tcp", "--addr", dst, "--count", "2", "--timeout", "3s")
				for _, r := range rs {
					switch {
					case tc.wantErrno != "" && (r.OK || r.Errno != tc.wantErrno):
						t.Errorf("tcp %s from %s: %+v, want errno %s", dst, tc.from.Name, r, tc.wantErrno)
					case tc.wantErrno == "" && (!r.OK || r.Backend != tc.to.Name || !strings.HasPrefix(r.Local, hostColon(fam.addr(tc.from)))):
						t.Errorf("tcp %s from %s: %+v, want an answer from %s to %s", dst, tc.from.Name, r, tc.to.Name, fam.addr(tc.from))
					}
				}
				if len(rs) != 2 {
					t.Errorf("tcp %s: %d results, want 2", dst, len(rs))
				}
			})
		}
	}
}

// A pod answering an outside client (after the NodePort datapath rewrote
// the destination) sends to the client's LAN address: that path must exist
// although the client cannot route back to the pod.
func TestClusterPodReachesClient(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	pods := []*Host{c.AddPod(t, 1, "a"), c.AddPod(t, 2, "b")}
	srv := c.StartNameServer(t, c.Client, nil, []int{5353})
	for _, pod := range pods {
		for _, fam := range []struct {
			name     string
			src, dst netip.Addr
		}{{"ipv4", pod.IPv4, c.Client.IPv4}, {"ipv6", pod.IPv6, c.Client.IPv6}} {
			t.Run(pod.Name+"/"+fam.name, func(t *testing.T) {
				// The client's answer cannot come back; the datagram
				// arriving is what is checked, in the client's log.
				c.Probe(t, pod, false, "udp", "--addr", hostPort(fam.dst, 5353), "--timeout", "200ms")
				if err := srv.WaitStderr("udp peer="+hostColon(fam.src), 5*time.Second); err != nil {
					t.Errorf("the client never saw a datagram from %s: %v", fam.src, err)
				}
			})
		}
	}
}

func TestClusterRouteVia(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	n2 := c.Node(t, 2)
	// Addresses on node2's lo stand in for a LoadBalancer IP the node
	// accepts; the client reaches them only through RouteVia.
	lb4, lb6 := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:2::10/128")
	nh, err := handleAt(n2.Host.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{lb4, lb6} {
		if err := nh.AddrAdd(lo, nlAddr(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := WaitIPv6Ready(nh, "lo", []netip.Addr{lb6.Addr()}, addrTimeout); err != nil {
		t.Fatal(err)
	}
	c.StartNameServer(t, n2.Host, []int{80}, nil)
	for _, p := range []netip.Prefix{lb4, lb6} {
		t.Run(p.String(), func(t *testing.T) {
			dst := hostPort(p.Addr(), 80)
			if r := c.Probe(t, c.Client, false, "tcp", "--addr", dst); len(r) != 1 || r[0].Errno != "ENETUNREACH" {
				t.Errorf("before RouteVia: %+v, want ENETUNREACH", r)
			}
			c.RouteVia(t, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()-8), 2)
			if r := c.Probe(t, c.Client, false, "tcp", "--addr", dst); len(r) != 1 || !r[0].OK || r[0].Backend != n2.Host.Name {
				t.Errorf("after RouteVia: %+v, want an answer from node2", r)
			}
		})
	}
}

// vethEnds lists every veth end of c as (host, interface).
func vethEnds(c *Cluster) [][2]any {
	ends := [][2]any{{c.Client, clusterLink}, {c.LAN, "client"}}
	for _, n := range c.Nodes {
		ends = append(ends, [2]any{n.Host, clusterLink}, [2]any{c.LAN, n.Host.Name})
		for _, p := range n.Pods() {
			ends = append(ends, [2]any{n.Host, p.NodeLink}, [2]any{p, p.Link})
		}
	}
	return ends
}

func TestClusterVethOffloads(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	c.AddPod(t, 1, "a")
	c.AddPod(t, 2, "b")
	ends := vethEnds(c)
	if len(ends) != 10 {
		t.Fatalf("%d veth ends, want 10", len(ends))
	}
	for _, e := range ends {
		h, ifname := e[0].(*Host), e[1].(string)
		t.Run(h.Name+"/"+ifname, func(t *testing.T) {
			if on, err := h.TxChecksumOffload(ifname); err != nil || on {
				t.Errorf("TX checksum offload: on=%v, %v; want off", on, err)
			}
			if on, err := h.GRO(ifname); err != nil || !on {
				t.Errorf("GRO: on=%v, %v; want on", on, err)
			}
		})
	}
}

// procCgroup is the cgroup2 path of pid, relative to the hierarchy's root.
func procCgroup(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup2 line in %q", data)
}

func TestClusterStartCgroups(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	pod := c.AddPod(t, 2, "b")
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		host     *Host
		inCgroup bool
		want     string // cgroup relative to root; "" = the test's own
		wantErr  bool
	}{
		{"node1 in its cgroup", c.Node(t, 1).Host, true, strings.TrimPrefix(c.Node(t, 1).Cgroup, root), false},
		{"pod on node2 in node2's cgroup", pod, true, strings.TrimPrefix(c.Node(t, 2).Cgroup, root), false},
		{"node2 outside any cgroup", c.Node(t, 2).Host, false, "", false},
		{"client has no cgroup", c.Client, true, "", true},
	}
	self, err := procCgroup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := c.start(tc.host, tc.inCgroup, []string{"sleep", "30"})
			if tc.wantErr {
				if err == nil {
					p.Kill()
					t.Fatalf("started, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			got, err := procCgroup(p.Pid())
			want := tc.want
			if want == "" {
				want = self
			}
			if err != nil || got != want {
				t.Errorf("cgroup %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestClusterCleanup(t *testing.T) {
	t.Parallel()
	var netnses []string
	var cgroup, bpffs string
	var proc *Process
	t.Run("build", func(t *testing.T) {
		c := NewCluster(t, 2)
		c.AddPod(t, 1, "a")
		proc = c.Start(t, c.Node(t, 1).Host, true, "sleep", "60")
		netnses = []string{c.LAN.Netns, c.Client.Netns}
		for _, n := range c.Nodes {
			netnses = append(netnses, n.Host.Netns)
			for _, p := range n.Pods() {
				netnses = append(netnses, p.Netns)
			}
		}
		cgroup, bpffs = c.Cgroup, c.BPFFS
	})
	if len(netnses) != 5 || proc == nil {
		t.Fatalf("build did not finish: netns %v", netnses)
	}
	for _, ns := range netnses {
		if _, err := os.Stat(ns); !os.IsNotExist(err) {
			t.Errorf("netns %s left behind (stat: %v)", ns, err)
		}
	}
	if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind (stat: %v)", cgroup, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), " "+bpffs+" ") {
		t.Errorf("bpffs %s still mounted", bpffs)
	}
	if !proc.Exited() {
		t.Errorf("process %d still running", proc.Pid())
	}
}

// recordingTB records the failures of a check run against it.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.errs = append(r.errs, "fatal: "+fmt.Sprintf(format, args...))
}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.errs = append(r.errs, "skip: "+fmt.Sprintf(format, args...))
}

// addNftTable creates an empty nftables table (family inet) in the calling
// thread's namespace, in one netlink batch, as `nft add table inet NAME`.
func addNftTable(name string) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	msg := func(typ, flags uint16, seq uint32, family uint8, resID uint16, attrs []byte) []byte {
		b := make([]byte, 20, 20+len(attrs))
		b = append(b, attrs...)
		binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:], typ)
		binary.NativeEndian.PutUint16(b[6:], flags)
		binary.NativeEndian.PutUint32(b[8:], seq)
		b[16] = family
		binary.BigEndian.PutUint16(b[18:], resID)
		return b
	}
	attr := make([]byte, 4, 4+len(name)+4)
	attr = append(attr, name...)
	attr = append(attr, 0)
	binary.NativeEndian.PutUint16(attr[0:], uint16(len(attr)))
	binary.NativeEndian.PutUint16(attr[2:], unix.NFTA_TABLE_NAME)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	var batch []byte
	batch = append(batch, msg(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, 1, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)...)
	batch = append(batch, msg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_ACK, 2, unix.NFPROTO_INET, 0, attr)...)
	batch = append(batch, msg(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, 3, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)...)
	if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("read ack: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) == 0 || msgs[0].Header.Type != unix.NLMSG_ERROR || len(msgs[0].Data) < 4 {
		return fmt.Errorf("unexpected reply %v, %v", msgs, err)
	}
	if errno := -int32(binary.NativeEndian.Uint32(msgs[0].Data)); errno != 0 {
		return syscall.Errno(errno)
	}
	return nil
}

func TestClusterNoFirewallRules(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 2)
	c.NoFirewallRules(t) // a fresh cluster has none

	if err := c.Node(t, 2).Host.Do(func() error { return addNftTable("sneaky") }); err != nil {
		t.Fatalf("add an nftables table on node2: %v", err)
	}
	rec := &recordingTB{TB: t}
	c.NoFirewallRules(rec)
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "node2") || !strings.Contains(rec.errs[0], "sneaky") {
		t.Errorf("with a table on node2, NoFirewallRules reported %q, want one failure naming node2 and the table", rec.errs)
	}
}
