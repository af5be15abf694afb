// Command sockprobe is the client of socklb's end-to-end tests. It is run
// inside the test cgroup and a client network namespace, and talks to a
// Service VIP with plain socket syscalls so that tests see exactly what the
// kernel (and socklb's cgroup programs) reported: getpeername(), the source
// address of recvfrom(), and errno names.
//
// Subcommands (one JSON object per line on stdout):
//
//	sockprobe tcp --addr VIP:PORT [--count N] [--timeout 2s] [--interval 0]
//	sockprobe udp --addr VIP:PORT [--count N] [--timeout 2s] [--interval 0]
//	sockprobe udp-connected --addr VIP:PORT [--count N] [--timeout 2s] [--interval 0]
//	sockprobe tcp-stream --addr VIP:PORT [--duration 10s] [--interval 5ms] [--timeout 2s]
//	sockprobe tcp-loop --addr VIP:PORT [--duration 10s] [--max 100000] [--interval 5ms] [--timeout 2s]
//	sockprobe watch --addr VIP:PORT [--duration 10s] [--max 100000] [--interval 1ms]: a line each time the answering backend changes
//	sockprobe udp-churn --addr VIP:PORT [--count N]: N sockets, one datagram each, no answer awaited; one line {"sent":N,"failures":F,"dur_ms":..}
//
// tcp: N times socket/connect/send "GET / HTTP/1.0\r\n\r\n"/read to EOF,
// getpeername() right after connect, close with SO_LINGER 0 (a reset: no
// TIME_WAIT). Line: {"i":0,"ok":true,"backend":"pod-a","peer":"10.96.0.50:80",
// "local":"10.244.0.2:40112","err":"","errno":"","dur_us":123}.
//
// udp: ONE unconnected socket; N times sendto(VIP) and recvfrom(); "from" is
// the source address recvfrom() reported.
//
// udp-connected: ONE connected socket; N times send() and read(); "peer" is
// getpeername().
//
// tcp-loop: connects repeatedly until --duration or --max attempts, printing
// one summary line {"attempts":..,"failures":..,"first_err":"..",
// "first_errno":"..","errnos":{..},"backends":{"pod-a":12},"dur_ms":..}.
//
// The exit status is 0 whenever the probe ran (failures are reported in the
// JSON), 2 for usage errors.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/tests/probe"
)

// The line formats, shared with the tests that read them.
type (
	Result  = probe.Result
	Summary = probe.Summary
	Change  = probe.Change
	Stream  = probe.Stream
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sockprobe tcp|udp|udp-connected|tcp-loop|tcp-stream|watch --addr IP:PORT [flags]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	addrS := fs.String("addr", "", "destination IP:PORT ([v6]:port for IPv6)")
	count := fs.Int("count", 1, "number of probes (tcp, udp, udp-connected)")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of one probe")
	interval := fs.Duration("interval", 0, "pause between probes")
	duration := fs.Duration("duration", 10*time.Second, "tcp-loop and watch: maximum run time")
	maxN := fs.Int("max", 100000, "tcp-loop and watch: maximum attempts")
	fs.Parse(os.Args[2:])
	if *addrS == "" {
		usage()
	}
	addr, err := netip.ParseAddrPort(*addrS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sockprobe: bad --addr: %v\n", err)
		os.Exit(2)
	}
	if *count < 0 || *count > 10_000_000 || *maxN < 0 || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "sockprobe: bad --count, --max or --timeout")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	switch cmd {
	case "tcp":
		for i := 0; i < *count; i++ {
			if i > 0 && *interval > 0 {
				time.Sleep(*interval)
			}
			r := tcpOnce(addr, *timeout)
			r.I = i
			enc.Encode(r)
		}
	case "udp":
		runUDP(enc, addr, *count, *timeout, *interval, false)
	case "udp-connected":
		runUDP(enc, addr, *count, *timeout, *interval, true)
	case "watch":
		// Prints a line each time the answering backend changes, stamped with
		// the wall clock, so that another process can time a change it made.
		deadline := time.Now().Add(*duration)
		last := ""
		for n := 0; n < *maxN && time.Now().Before(deadline); n++ {
			r := tcpOnce(addr, *timeout)
			if r.OK && r.Backend != last {
				last = r.Backend
				enc.Encode(Change{UnixNano: time.Now().UnixNano(), Backend: r.Backend})
			}
			if *interval > 0 {
				time.Sleep(*interval)
			}
		}
	case "tcp-stream":
		enc.Encode(tcpStream(addr, *duration, *interval, *timeout))
	case "udp-churn":
		enc.Encode(udpChurn(addr, *count))
	case "tcp-loop":
		s := Summary{Errnos: map[string]int{}, Backends: map[string]int{}}
		start := time.Now()
		deadline := start.Add(*duration)
		for s.Attempts < *maxN && time.Now().Before(deadline) {
			// Each attempt gets its whole timeout: the loop is bounded by
			// duration+timeout, and no attempt fails just because the loop ends.
			r := tcpOnce(addr, *timeout)
			s.Attempts++
			if r.OK {
				s.Backends[r.Backend]++
			} else {
				s.Failures++
				if s.FirstErr == "" {
					s.FirstErr, s.FirstErrno = r.Err, r.Errno
				}
				k := r.Errno
				if k == "" {
					k = "other"
				}
				s.Errnos[k]++
			}
			if *interval > 0 {
				time.Sleep(*interval)
			}
		}
		s.DurMS = time.Since(start).Milliseconds()
		enc.Encode(s)
	default:
		usage()
	}
}

// errno returns the errno name inside err, or "".
func errno(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return ""
}

func fail(r *Result, op string, err error) Result {
	r.OK = false
	r.Err = op + ": " + err.Error()
	r.Errno = errno(err)
	return *r
}

func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16(), ZoneId: zoneID(ap.Addr().Zone())}
}

func zoneID(z string) uint32 {
	if z == "" {
		return 0
	}
	var n uint32
	if _, err := fmt.Sscanf(z, "%d", &n); err == nil {
		return n
	}
	return 0
}

func fmtSockaddr(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case nil:
		return ""
	}
	return fmt.Sprintf("%v", sa)
}

var errTimeout = fmt.Errorf("timeout: %w", unix.ETIMEDOUT)

// waitFD polls fd for events until deadline.
func waitFD(fd int, events int16, deadline time.Time) error {
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms <= 0 {
			return errTimeout
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

// backendName extracts the first line of an HTTP body, or of a raw answer.
func backendName(resp []byte) string {
	if bytes.HasPrefix(resp, []byte("HTTP/")) {
		if i := bytes.Index(resp, []byte("\r\n\r\n")); i >= 0 {
			resp = resp[i+4:]
		} else if i := bytes.Index(resp, []byte("\n\n")); i >= 0 {
			resp = resp[i+2:]
		} else {
			return ""
		}
	}
	line, _, _ := bytes.Cut(resp, []byte("\n"))
	return strings.TrimSpace(string(line))
}

func closeReset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

func tcpOnce(addr netip.AddrPort, timeout time.Duration) (r Result) {
	start := time.Now()
	deadline := start.Add(timeout)
	defer func() { r.DurUS = time.Since(start).Microseconds() }()
	family, sa := sockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(&r, "socket", err)
	}
	defer closeReset(fd)
	err = unix.Connect(fd, sa)
	if err == unix.EINPROGRESS {
		if err = waitFD(fd, unix.POLLOUT, deadline); err != nil {
			return fail(&r, "connect", err)
		}
		var soerr int
		soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = unix.Errno(soerr)
		}
	}
	if err != nil {
		return fail(&r, "connect", err)
	}
	if p, err := unix.Getpeername(fd); err == nil {
		r.Peer = fmtSockaddr(p)
	} else {
		return fail(&r, "getpeername", err)
	}
	if l, err := unix.Getsockname(fd); err == nil {
		r.Local = fmtSockaddr(l)
	}
	req := []byte("GET / HTTP/1.0\r\n\r\n")
	for len(req) > 0 {
		n, err := unix.Write(fd, req)
		if err == unix.EAGAIN || err == unix.EINTR {
			if err := waitFD(fd, unix.POLLOUT, deadline); err != nil {
				return fail(&r, "write", err)
			}
			continue
		}
		if err != nil {
			return fail(&r, "write", err)
		}
		req = req[n:]
	}
	var resp []byte
	buf := make([]byte, 4096)
	for len(resp) < 64<<10 {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
				if len(resp) > 0 {
					break // answered but never closed: use what we have
				}
				return fail(&r, "read", err)
			}
			continue
		}
		if err != nil {
			if len(resp) > 0 {
				break
			}
			return fail(&r, "read", err)
		}
		if n == 0 {
			break
		}
		resp = append(resp, buf[:n]...)
	}
	r.Backend = backendName(resp)
	if r.Backend == "" {
		r.Err = fmt.Sprintf("no backend name in answer %q", resp)
		return r
	}
	r.OK = true
	return r
}

func runUDP(enc *json.Encoder, addr netip.AddrPort, count int, timeout, interval time.Duration, connected bool) {
	family, sa := sockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		for i := 0; i < count; i++ {
			r := Result{I: i}
			enc.Encode(fail(&r, "socket", err))
		}
		return
	}
	defer unix.Close(fd)
	var connErr error
	if connected {
		connErr = unix.Connect(fd, sa)
	}
	buf := make([]byte, 65536)
	for i := 0; i < count; i++ {
		if i > 0 && interval > 0 {
			time.Sleep(interval)
		}
		r := Result{I: i}
		start := time.Now()
		deadline := start.Add(timeout)
		func() {
			if connErr != nil {
				fail(&r, "connect", connErr)
				return
			}
			// Drop late answers to earlier probes that timed out.
			for {
				if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
					break
				}
			}
			msg := []byte(fmt.Sprintf("probe %d\n", i))
			if connected {
				if p, err := unix.Getpeername(fd); err == nil {
					r.Peer = fmtSockaddr(p)
				} else {
					fail(&r, "getpeername", err)
					return
				}
				if _, err := unix.Write(fd, msg); err != nil {
					fail(&r, "send", err)
					return
				}
			} else if err := unix.Sendto(fd, msg, 0, sa); err != nil {
				fail(&r, "sendto", err)
				return
			}
			if l, err := unix.Getsockname(fd); err == nil {
				r.Local = fmtSockaddr(l)
			}
			for {
				var n int
				var from unix.Sockaddr
				var err error
				if connected {
					// read(): recvmsg hooks don't run, as for a real client.
					n, err = unix.Read(fd, buf)
				} else {
					n, from, err = unix.Recvfrom(fd, buf, 0)
				}
				if err == unix.EAGAIN || err == unix.EINTR {
					if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
						fail(&r, "recv", err)
						return
					}
					continue
				}
				if err != nil {
					fail(&r, "recv", err)
					return
				}
				if !connected {
					r.From = fmtSockaddr(from)
				}
				r.Backend = backendName(buf[:n])
				if r.Backend == "" {
					r.Err = fmt.Sprintf("no backend name in answer %q", buf[:n])
					return
				}
				r.OK = true
				return
			}
		}()
		r.DurUS = time.Since(start).Microseconds()
		enc.Encode(r)
	}
}

// udpChurn sends one datagram from each of count fresh sockets: load on
// the per-socket maps, as many short-lived clients make it.
func udpChurn(addr netip.AddrPort, count int) map[string]int64 {
	family, sa := sockaddr(addr)
	start := time.Now()
	var sent, failures int64
	for i := 0; i < count; i++ {
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			failures++
			continue
		}
		if err := unix.Sendto(fd, []byte("churn\n"), 0, sa); err != nil {
			failures++
		} else {
			sent++
		}
		unix.Close(fd)
	}
	return map[string]int64{"sent": sent, "failures": failures, "dur_ms": time.Since(start).Milliseconds()}
}

// tcpStream keeps one connection to an echo server (namesrv --echo) open for
// duration, echoing a numbered line every interval; it stops at the first
// failure.
func tcpStream(addr netip.AddrPort, duration, interval, timeout time.Duration) Stream {
	start := time.Now()
	s := Stream{}
	defer func() { s.DurMS = time.Since(start).Milliseconds() }()
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		s.Err = "connect: " + err.Error()
		return s
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(timeout))
	name, err := r.ReadString('\n')
	if err != nil {
		s.Err = "read name: " + err.Error()
		return s
	}
	s.Backend = strings.TrimSpace(name)
	for deadline := start.Add(duration); time.Now().Before(deadline); s.Messages++ {
		msg := fmt.Sprintf("message %d\n", s.Messages)
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := io.WriteString(c, msg); err != nil {
			s.Err = "write: " + err.Error()
			return s
		}
		got, err := r.ReadString('\n')
		if err != nil || got != msg {
			s.Err = fmt.Sprintf("echo of %q: %q, %v", msg, got, err)
			return s
		}
		if interval > 0 {
			time.Sleep(interval)
		}
	}
	return s
}
