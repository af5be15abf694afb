// Command namesrv is a tiny backend ("pod") for socklb's end-to-end tests.
//
// Every TCP connection and every UDP datagram is answered with the server's
// name followed by a newline:
//
//   - TCP: a client that starts with an HTTP request line gets an HTTP/1.0 200
//     response whose body is "NAME\n"; any other client (raw bytes, or nothing
//     within a short wait) gets the bare "NAME\n". The server then closes.
//
//   - UDP: each datagram is answered with "NAME\n" to its sender, from the
//     local address the datagram was sent to (IP_PKTINFO / IPV6_PKTINFO), so
//     replies keep the right source on multi-address hosts.
//
//   - echo (--echo): a TCP connection gets "NAME\n", then everything it sends
//     back, until it closes: a long-lived flow that shows which backend it
//     stays on.
//
// It prints "ready" on stdout once every listener is bound and exits 0 on
// SIGTERM or SIGINT. With --log-peers it logs one line per TCP connection
// and per UDP datagram to stderr:
//
//	tcp peer=10.244.0.2:40112 local=10.244.0.3:8080
//	udp peer=[fd00:10:244::2]:5353 local=[fd00:10:244::3]:53
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	name     = flag.String("name", "", "name to answer with (required)")
	tcpList  = flag.String("tcp", "", "comma-separated TCP listen addresses, e.g. \":8080,[::]:9090\"")
	udpList  = flag.String("udp", "", "comma-separated UDP listen addresses, e.g. \":53\"")
	echoList = flag.String("echo", "", "comma-separated TCP listen addresses answering NAME then echoing, e.g. \"[::]:7777\"")
	logPeers = flag.Bool("log-peers", false, "log every TCP peer and UDP sender to stderr")
)

// rawWait is how long a TCP client may stay silent before it is treated as a
// raw (non-HTTP) client and answered with the bare name.
const rawWait = 300 * time.Millisecond

func main() {
	flag.Parse()
	if *name == "" || (*tcpList == "" && *udpList == "" && *echoList == "") {
		fmt.Fprintln(os.Stderr, "usage: namesrv --name NAME [--tcp LIST] [--udp LIST] [--echo LIST] [--log-peers]")
		os.Exit(2)
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		if !*logPeers {
			return
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}

	var wg sync.WaitGroup
	var closers []io.Closer
	lc := net.ListenConfig{}
	for _, a := range splitList(*tcpList) {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			fatal("listen tcp %s: %v", a, err)
		}
		closers = append(closers, ln)
		wg.Add(1)
		go func() { defer wg.Done(); serveTCP(ln, logf) }()
	}
	for _, a := range splitList(*echoList) {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			fatal("listen tcp %s: %v", a, err)
		}
		closers = append(closers, ln)
		wg.Add(1)
		go func() { defer wg.Done(); serveEcho(ln, logf) }()
	}
	for _, a := range splitList(*udpList) {
		pc, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			fatal("listen udp %s: %v", a, err)
		}
		uc := pc.(*net.UDPConn)
		enablePktinfo(uc)
		closers = append(closers, uc)
		wg.Add(1)
		go func() { defer wg.Done(); serveUDP(uc, logf) }()
	}
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, c := range closers {
		c.Close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	os.Exit(0)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "namesrv: "+format+"\n", args...)
	os.Exit(1)
}

// serveEcho answers each connection with the name, then echoes it.
func serveEcho(ln net.Listener, logf func(string, ...any)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		logf("echo peer=%s local=%s", c.RemoteAddr(), c.LocalAddr())
		go func() {
			defer c.Close()
			if _, err := fmt.Fprintf(c, "%s\n", *name); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

func serveTCP(ln net.Listener, logf func(string, ...any)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary errors (EMFILE, ECONNABORTED): back off briefly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		logf("tcp peer=%s local=%s", c.RemoteAddr(), c.LocalAddr())
		go handleTCP(c)
	}
}

var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

func looksHTTP(b []byte) bool {
	for _, m := range httpMethods {
		n := min(len(b), len(m))
		if n > 0 && bytes.Equal(b[:n], []byte(m)[:n]) {
			return true
		}
	}
	return false
}

func handleTCP(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	c.SetReadDeadline(time.Now().Add(rawWait))
	first, _ := br.Peek(1)
	body := *name + "\n"
	if len(first) > 0 && looksHTTP(first) {
		// Read the request head (bounded in size and time), then answer.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		head := 0
		for head < 64<<10 {
			line, err := br.ReadString('\n')
			head += len(line)
			if err != nil {
				break
			}
			if line == "\r\n" || line == "\n" {
				break
			}
		}
		fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	} else {
		io.WriteString(c, body)
	}
	// Half-close and drain briefly so unread request bytes don't turn our
	// close into a reset that could destroy the answer in flight.
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(br, 1<<20))
}

// enablePktinfo asks for the destination address of each datagram, so the
// reply can leave from that same address.
func enablePktinfo(uc *net.UDPConn) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	})
}

// localAddr extracts the datagram's destination address from its control
// messages; ok is false when none was present.
func localAddr(oob []byte) (netip.Addr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return netip.AddrFrom4(pi.Addr), true
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return netip.AddrFrom16(pi.Addr), true
		}
	}
	return netip.Addr{}, false
}

// cmsg allocates one control message of the given level, type and data size.
func cmsg(level, typ int32, size int) []byte {
	b := make([]byte, unix.CmsgSpace(size))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = level
	h.Type = typ
	h.SetLen(unix.CmsgLen(size))
	return b
}

// srcOOB builds the control message that makes a reply leave from local.
func srcOOB(v6sock bool, local netip.Addr) []byte {
	if !v6sock {
		a := local.Unmap()
		if !a.Is4() {
			return nil
		}
		b := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Spec_dst = a.As4()
		return b
	}
	// An AF_INET6 socket takes IPV6_PKTINFO for both families: for an IPv4
	// destination the kernel accepts a v4-mapped source address.
	b := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo)
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	pi.Addr = netip.AddrFrom16(local.As16()).As16()
	return b
}

func serveUDP(uc *net.UDPConn, logf func(string, ...any)) {
	v6sock := true
	if rc, err := uc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if sa, err := unix.Getsockname(int(fd)); err == nil {
				_, v6sock = sa.(*unix.SockaddrInet6)
			}
		})
	}
	reply := []byte(*name + "\n")
	buf := make([]byte, 65536)
	oob := make([]byte, 512)
	for {
		_, oobn, _, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond)
			continue
		}
		var cm []byte
		local, ok := localAddr(oob[:oobn])
		if ok {
			cm = srcOOB(v6sock, local)
			logf("udp peer=%s local=%s", unmapAP(from), netip.AddrPortFrom(local.Unmap(), port(uc)))
		} else {
			logf("udp peer=%s local=%s", unmapAP(from), uc.LocalAddr())
		}
		if _, _, err := uc.WriteMsgUDPAddrPort(reply, cm, from); err != nil && cm != nil {
			// Fall back to a plain reply if the kernel refused the source.
			uc.WriteMsgUDPAddrPort(reply, nil, from)
		}
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func port(uc *net.UDPConn) uint16 {
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok {
		return uint16(la.Port)
	}
	return 0
}
