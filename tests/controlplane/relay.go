package controlplane

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"
	"k8s.io/client-go/tools/clientcmd"
)

// ServeInNetns listens on 127.0.0.1 (a free port) inside the network
// namespace at netnsPath and pipes every accepted connection to target
// (host:port), dialled from the test process's own network namespace. A
// node namespace of a sandbox cluster reaches the API server, which listens
// on the machine's 127.0.0.1, this way without any route, address or
// firewall rule: both legs stay on a loopback device.
//
// addr is the listener's address as seen inside the namespace. stop closes
// the listener and every open connection and waits for the relay's
// goroutines; calling it twice is harmless.
func ServeInNetns(netnsPath, target string) (addr string, stop func(), err error) {
	ln, err := listenInNetns(netnsPath)
	if err != nil {
		return "", nil, err
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return ln.Addr().String(), r.stop, nil
}

// listenInNetns makes the listening socket on a thread that joined the
// namespace: a socket belongs to the namespace it was created in, whatever
// thread later accepts on it. The thread is never handed back to the Go
// scheduler (the goroutine exits still locked), so no other goroutine runs
// in that namespace by accident.
func listenInNetns(netnsPath string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(netnsPath)
		if err != nil {
			done <- result{err: fmt.Errorf("relay: open netns %s: %w", netnsPath, err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			done <- result{err: fmt.Errorf("relay: join netns %s: %w", netnsPath, err)}
			return
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			err = fmt.Errorf("relay: listen on 127.0.0.1 in %s: %w", netnsPath, err)
		}
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

type relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		if !r.track(in) {
			in.Close()
			return
		}
		r.wg.Add(1)
		go r.pipe(in)
	}
}

// track registers c for stop to close; false once stop has run.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// pipe copies both ways until both directions ended; a half close is passed
// on, so a client that shuts down its sending side still reads the answer.
func (r *relay) pipe(in net.Conn) {
	defer r.wg.Done()
	defer r.untrack(in)
	defer in.Close()
	out, err := net.Dial("tcp", r.target)
	if err != nil {
		return // the client sees the connection closed, as with a refused dial
	}
	if !r.track(out) {
		out.Close()
		return
	}
	defer r.untrack(out)
	defer out.Close()
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); copyHalf(out, in) }()
	go func() { defer both.Done(); copyHalf(in, out) }()
	both.Wait()
}

func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if tcp, ok := dst.(*net.TCPConn); ok && err == nil {
		_ = tcp.CloseWrite()
		return
	}
	// An error (reset, closed by stop) ends the whole connection.
	_ = dst.Close()
	_ = src.Close()
}

func (r *relay) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	_ = r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// WriteKubeconfigVia writes to path a copy of the admin kubeconfig whose
// server is https://addr (a relay's address, see ServeInNetns). The serving
// certificate covers 127.0.0.1, so TLS verification still holds.
func (cp *ControlPlane) WriteKubeconfigVia(path, addr string) error {
	cfg, err := clientcmd.LoadFromFile(cp.KubeconfigPath)
	if err != nil {
		return fmt.Errorf("read kubeconfig %s: %w", cp.KubeconfigPath, err)
	}
	for _, cluster := range cfg.Clusters {
		cluster.Server = "https://" + addr
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// RelayedKubeconfig starts a relay from 127.0.0.1 of the network namespace
// at netnsPath to the API server, stopped when the test ends, and writes to
// path a kubeconfig that reaches the API server through it: what an agent
// or CoreDNS in a node or pod namespace uses.
func (cp *ControlPlane) RelayedKubeconfig(t testing.TB, netnsPath, path string) string {
	t.Helper()
	addr, stop, err := ServeInNetns(netnsPath, strings.TrimPrefix(cp.APIServerURL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := cp.WriteKubeconfigVia(path, addr); err != nil {
		t.Fatal(err)
	}
	return path
}
