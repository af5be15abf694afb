package sandbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Ports the reflector program acts on (IPv4 UDP, destination port).
const (
	reflectTXPort       = 7001 // swap MACs, IPs and ports, XDP_TX
	reflectRedirectPort = 7002 // the same swap, bpf_redirect to the device itself
	reflectToPodPort    = 7003 // rewrite the MACs, bpf_redirect to a pod's veth
)

func htons(v uint16) int32 { return int32(v>>8 | v<<8&0xff00) }

// macWords splits a MAC into the 4- and 2-byte immediates that store it
// (little-endian: the byte order of a store on the machines we run on).
func macWords(mac net.HardwareAddr) (int64, int64) {
	return int64(int32(binary.LittleEndian.Uint32(mac[0:4]))), int64(binary.LittleEndian.Uint16(mac[4:6]))
}

// swapInsns swaps the size-byte fields at offsets a and b of the packet at R2.
func swapInsns(a, b int16, size asm.Size) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R4, asm.R2, a, size),
		asm.LoadMem(asm.R5, asm.R2, b, size),
		asm.StoreMem(asm.R2, a, asm.R5, size),
		asm.StoreMem(asm.R2, b, asm.R4, size),
	}
}

// reflectorProgram is an XDP program for IPv4 UDP without options: to
// reflectTXPort and reflectRedirectPort it sends the packet back where it
// came from with the addresses swapped (the checksums stay valid: the sums
// are unchanged), by XDP_TX or bpf_redirect(selfIndex); to reflectToPodPort
// it redirects the frame to the veth podIndex, addressed to podMAC from
// vethMAC. Everything else passes.
func reflectorProgram(selfIndex, podIndex int, podMAC, vethMAC net.HardwareAddr) (*ebpf.Program, error) {
	podHi, podLo := macWords(podMAC)
	vethHi, vethLo := macWords(vethMAC)
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14+20+8),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, htons(unix.ETH_P_IP), "pass"),
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 14+9, asm.Byte),
		asm.JNE.Imm(asm.R5, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R7, asm.R2, 14+20+2, asm.Half),
		asm.JEq.Imm(asm.R7, htons(reflectToPodPort), "to_pod"),
		asm.JEq.Imm(asm.R7, htons(reflectTXPort), "swap"),
		asm.JEq.Imm(asm.R7, htons(reflectRedirectPort), "swap"),
		asm.Ja.Label("pass"),
	}
	swap := asm.Instructions{}
	swap = append(swap, swapInsns(0, 6, asm.Word)...)
	swap = append(swap, swapInsns(4, 10, asm.Half)...)
	swap = append(swap, swapInsns(14+12, 14+16, asm.Word)...)
	swap = append(swap, swapInsns(14+20, 14+20+2, asm.Half)...)
	swap[0] = swap[0].WithSymbol("swap")
	insns = append(insns, swap...)
	insns = append(insns,
		asm.JEq.Imm(asm.R7, htons(reflectTXPort), "tx"),
		asm.Mov.Imm(asm.R1, int32(selfIndex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 3).WithSymbol("tx"), // XDP_TX
		asm.Return(),
		asm.StoreImm(asm.R2, 0, podHi, asm.Word).WithSymbol("to_pod"),
		asm.StoreImm(asm.R2, 4, podLo, asm.Half),
		asm.StoreImm(asm.R2, 6, vethHi, asm.Word),
		asm.StoreImm(asm.R2, 10, vethLo, asm.Half),
		asm.Mov.Imm(asm.R1, int32(podIndex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
		asm.Return(),
	)
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
}

// linkInfo reads a link's index and MAC in h's namespace.
func linkInfo(t *testing.T, h *Host, name string) (int, net.HardwareAddr) {
	t.Helper()
	nh, err := handleAt(h.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: link %s: %v", h.Name, name, err)
	}
	return l.Attrs().Index, l.Attrs().HardwareAddr
}

// attachXDP attaches prog to ifindex in h's namespace (ifindexes are per
// namespace, so the attach runs inside it); detached in t.Cleanup.
func attachXDP(t *testing.T, h *Host, prog *ebpf.Program, ifindex int, flags link.XDPAttachFlags) {
	t.Helper()
	var l link.Link
	err := h.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
		return err
	})
	if err != nil {
		t.Fatalf("attach XDP (flags %v) on %s ifindex %d: %v", flags, h.Name, ifindex, err)
	}
	t.Cleanup(func() { l.Close() })
}

// udpEcho sends payload from the client to dst up to 3 times and returns
// the first reply and its source, or an error when none came.
func udpEcho(c *Cluster, dst netip.AddrPort, payload []byte) ([]byte, netip.AddrPort, error) {
	var conn *net.UDPConn
	err := c.Client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Client.IPv4, 0)))
		return err
	})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	for range 3 {
		if _, err := conn.WriteToUDPAddrPort(payload, dst); err != nil {
			return nil, netip.AddrPort{}, err
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err == nil {
			return buf[:n], from, nil
		}
	}
	return nil, netip.AddrPort{}, fmt.Errorf("no reply from %s to %q after 3 tries", dst, payload)
}

// capture listens for IPv4 frames on the pod's eth0 with an AF_PACKET
// socket and reports whether one carrying marker arrives within timeout.
func capture(t *testing.T, pod *Host, timeout time.Duration) func(marker []byte) bool {
	t.Helper()
	idx, _ := linkInfo(t, pod, pod.Link)
	var fd int
	err := pod.Do(func() error {
		var err error
		proto := uint16(htons(unix.ETH_P_IP))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: idx})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", pod.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return func(marker []byte) bool {
		buf := make([]byte, 2048)
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == nil && bytes.Contains(buf[:n], marker) {
				return true
			}
		}
		return false
	}
}

// TestClusterXDP proves what the NodePort datapath needs of the topology:
// an XDP program attached natively to a node's eth0 can XDP_TX and
// XDP_REDIRECT (back out of eth0, and into a pod's veth), and generic mode
// works too. The last case turns GRO off on the LAN end of node1's eth0 and
// sees native XDP_TX frames dropped: GRO (NAPI on the peer) is the setting
// that makes the others work.
func TestClusterXDP(t *testing.T) {
	c := NewCluster(t, 2)
	n1, n2 := c.Node(t, 1), c.Node(t, 2)
	pod := c.AddPod(t, 1, "xdp-pod")
	podVethIdx, podVethMAC := linkInfo(t, n1.Host, pod.NodeLink)
	_, podMAC := linkInfo(t, pod, pod.Link)

	attach := func(n *ClusterNode, flags link.XDPAttachFlags) {
		idx, _ := linkInfo(t, n.Host, clusterLink)
		pIdx, pMAC, vMAC := podVethIdx, podMAC, podVethMAC
		if n != n1 {
			pIdx, pMAC, vMAC = idx, podMAC, podVethMAC // node2 has no pod: unused
		}
		prog, err := reflectorProgram(idx, pIdx, pMAC, vMAC)
		if err != nil {
			t.Fatalf("load reflector: %v", err)
		}
		t.Cleanup(func() { prog.Close() })
		attachXDP(t, n.Host, prog, idx, flags)
	}
	attach(n1, link.XDPDriverMode)
	attach(n2, link.XDPGenericMode)

	echoCases := []struct {
		name string
		node *ClusterNode
		port uint16
	}{
		{"native XDP_TX", n1, reflectTXPort},
		{"native XDP_REDIRECT to the same device", n1, reflectRedirectPort},
		{"generic XDP_TX", n2, reflectTXPort},
		{"generic XDP_REDIRECT to the same device", n2, reflectRedirectPort},
	}
	for _, tc := range echoCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.node == n1 {
				// Before 5.13 ("veth: allow enabling NAPI even without
				// XDP") GRO gives the peer no NAPI: a veth takes XDP_TX and
				// redirected frames only when it runs an XDP program itself,
				// and the kernel matrix saw no reply on 5.10.
				RequireKernel(t, "5.13", "a veth peer that takes XDP_TX frames with GRO on and no XDP program")
			}
			dst := netip.AddrPortFrom(tc.node.IPv4, tc.port)
			payload := []byte("xdp " + tc.name)
			got, from, err := udpEcho(c, dst, payload)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if !bytes.Equal(got, payload) || from != dst {
				t.Errorf("reply %q from %s, want %q from %s", got, from, payload, dst)
			}
		})
	}

	t.Run("native XDP_REDIRECT into a pod's veth", func(t *testing.T) {
		// The pod's veth runs no XDP program: the same 5.13 rule as above.
		RequireKernel(t, "5.13", "a veth peer that takes redirected XDP frames with GRO on and no XDP program")
		seen := capture(t, pod, 3*time.Second)
		marker := []byte("xdp to pod " + randomHex(4))
		if err := c.sendUDP(netip.AddrPortFrom(n1.IPv4, reflectToPodPort), marker); err != nil {
			t.Fatal(err)
		}
		if !seen(marker) {
			t.Errorf("the pod's eth0 never received the redirected frame %q", marker)
		}
	})

	t.Run("native XDP_TX is dropped without GRO on the peer", func(t *testing.T) {
		if err := c.LAN.SetGRO(n1.Host.Name, false); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.LAN.SetGRO(n1.Host.Name, true); err != nil {
				t.Error(err)
			}
		}()
		got, from, err := udpEcho(c, netip.AddrPortFrom(n1.IPv4, reflectTXPort), []byte("no napi"))
		if err == nil {
			t.Errorf("reply %q from %s without NAPI on the peer: GRO is not what makes native XDP_TX work here", got, from)
		}
	})
}

// sendUDP sends one datagram from the client's LAN address.
func (c *Cluster) sendUDP(dst netip.AddrPort, payload []byte) error {
	return c.Client.Do(func() error {
		conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Client.IPv4, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 3 { // the first may wait for ARP; the receiver looks for any
			if _, err := conn.Write(payload); err != nil {
				return err
			}
		}
		return nil
	})
}
