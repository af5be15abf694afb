package sockdestroy

import (
	"errors"
	"github.com/cilium/ebpf/rlimit"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// udpSocket is a test socket: its descriptor and cookie.
type udpSocket struct {
	fd     int
	cookie uint64
}

func newUDPSocket(t *testing.T, family int, peer *netip.AddrPort) udpSocket {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if peer != nil {
		if err := unix.Connect(fd, sockaddrOf(*peer)); err != nil {
			t.Fatalf("connect to %s: %v", peer, err)
		}
	} else if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		t.Fatal(err)
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	return udpSocket{fd: fd, cookie: cookie}
}

func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// listener is a bound UDP socket on loopback: the peer the test sockets
// connect to.
func listener(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sockaddrOf(ap)); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(ap.Addr(), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(ap.Addr(), uint16(sa.Port))
	}
	t.Fatalf("unexpected sockaddr %T", sa)
	return netip.AddrPort{}
}

// aborted reports whether the socket holds the error a destroyed socket
// gets (ECONNABORTED), reading it off with SO_ERROR.
func aborted(t *testing.T, s udpSocket) bool {
	t.Helper()
	soErr, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Fatal(err)
	}
	return unix.Errno(soErr) == unix.ECONNABORTED
}

// The iterator destroys exactly the connected sockets a key names, by cookie
// and peer or by peer alone (cookie 0), and never an unconnected one.
func TestDestroy(t *testing.T) {
	sandbox.Require(t)
	// Before 5.11 maps are charged to the memlock rlimit.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	maps, err := lbmap.Create("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { maps.Close() })
	d, err := Load(maps)
	if errors.Is(Supported(), ebpf.ErrNotSupported) {
		// The documented fallback: Load says so, and the agent does nothing.
		if !errors.Is(err, ebpf.ErrNotSupported) {
			t.Fatalf("Load on a kernel without bpf_sock_destroy: %v, want an error matching ErrNotSupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.Namespaces = func() ([]string, error) { return []string{"/proc/self/ns/net"}, nil }

	peer4 := listener(t, "127.0.0.1:0")
	peer6 := listener(t, "[::1]:0")
	other4 := listener(t, "127.0.0.1:0")
	udp := uint8(unix.IPPROTO_UDP)
	cases := []struct {
		name    string
		family  int
		peer    *netip.AddrPort // nil: unconnected
		key     func(s udpSocket) lbmap.SockKey
		destroy bool
	}{
		{"connected IPv4, cookie and peer named", unix.AF_INET, &peer4,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(s.cookie, peer4, udp) }, true},
		{"connected IPv6, cookie and peer named", unix.AF_INET6, &peer6,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(s.cookie, peer6, udp) }, true},
		{"connected, peer alone named (cookie 0)", unix.AF_INET, &other4,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(0, other4, udp) }, true},
		{"connected, its cookie with another peer", unix.AF_INET, &peer4,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(s.cookie, other4, udp) }, false},
		{"connected, the peer with another cookie", unix.AF_INET, &peer4,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(s.cookie+1<<40, peer4, udp) }, false},
		{"unconnected, cookie named", unix.AF_INET, nil,
			func(s udpSocket) lbmap.SockKey { return lbmap.NewSockKey(s.cookie, netip.AddrPort{}, udp) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newUDPSocket(t, tc.family, tc.peer)
			bystander := newUDPSocket(t, tc.family, tc.peer)
			destroyed, err := d.Destroy([]lbmap.SockKey{tc.key(s)})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(destroyed, s.cookie); got != tc.destroy {
				t.Errorf("destroyed %v (socket %d): destroyed = %v, want %v", destroyed, s.cookie, got, tc.destroy)
			}
			if got := aborted(t, s); got != tc.destroy {
				t.Errorf("socket error ECONNABORTED = %v, want %v", got, tc.destroy)
			}
			wantBystander := tc.key(s).Cookie == 0 && tc.peer != nil
			if got := aborted(t, bystander); got != wantBystander {
				t.Errorf("a socket not named, same peer: aborted = %v, want %v", got, wantBystander)
			}
		})
	}
}
