package controlplane_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

// upperServer answers every connection with the upper-cased bytes it read,
// once the client has closed its sending side; it listens on the test
// process's 127.0.0.1, where the real harness's API server listens.
func upperServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				_, _ = c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	return ln.Addr().String()
}

// exchange dials addr from inside h's namespace, sends msg, half-closes and
// reads the whole answer.
func exchange(h *sandbox.Host, addr, msg string) (string, error) {
	var answer string
	err := h.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		answer = string(b)
		return err
	})
	return answer, err
}

func TestServeInNetns(t *testing.T) {
	sb := sandbox.New(t)
	target := upperServer(t)
	addr, stop, err := controlplane.ServeInNetns(sb.Node.Netns, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"without the relay the namespace cannot reach the host's loopback", func(t *testing.T) {
			if got, err := exchange(sb.Node, target, "direct"); err == nil {
				t.Errorf("dialled %s straight from the node netns and got %q: the test's premise is gone", target, got)
			}
		}},
		{"the namespace reaches the host's loopback server, half close included", func(t *testing.T) {
			got, err := exchange(sb.Node, addr, "hello")
			if err != nil || got != "HELLO" {
				t.Errorf("through %s in the node netns: %q, %v; want HELLO", addr, got, err)
			}
		}},
		{"the listener lives in the namespace", func(t *testing.T) {
			err := sb.Node.Do(func() error {
				ln, err := net.Listen("tcp4", addr)
				if err == nil {
					ln.Close()
				}
				return err
			})
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("listening on %s inside the node netns: %v; want EADDRINUSE, the relay holding it", addr, err)
			}
		}},
		{"concurrent connections each get their own answer", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := fmt.Sprintf("conn-%d-%s", i, strings.Repeat("x", 64<<10))
					got, err := exchange(sb.Node, addr, msg)
					if err == nil && got != strings.ToUpper(msg) {
						err = fmt.Errorf("connection %d: answer of %d bytes differs from the %d sent", i, len(got), len(msg))
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		}},
		{"after stop nothing listens", func(t *testing.T) {
			stop()
			stop() // a second call is harmless
			if _, err := exchange(sb.Node, addr, "late"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dialling %s after stop: %v; want ECONNREFUSED", addr, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}
