// Command connprobe is the benchmark's new-connection client: each
// connection goes to one of --addrs chosen at random, as a proxy spreads a
// Service's connections over its backends, so that "direct" to the backend
// pods and "through the ClusterIP" wake the same servers the same way.
//
//	connprobe --addrs IP:PORT[,IP:PORT...] [--count N] [--duration D] [--timeout 2s] [--latencies]
//
// Each connection: connect, send "GET / HTTP/1.0\r\n\r\n", read to EOF, close
// with SO_LINGER 0 (a reset: no TIME_WAIT). It stops after --count
// connections or --duration, whichever comes first, and prints one JSON
// line: {"ok":N,"failures":N,"first_err":"..","dur_ms":N,"durations_us":[...]}
// (durations only with --latencies).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"
)

type summary struct {
	OK          int     `json:"ok"`
	Failures    int     `json:"failures"`
	FirstErr    string  `json:"first_err,omitempty"`
	DurMS       int64   `json:"dur_ms"`
	DurationsUS []int64 `json:"durations_us,omitempty"`
}

var request = []byte("GET / HTTP/1.0\r\n\r\n")

func once(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	tcp := conn.(*net.TCPConn)
	defer tcp.Close()
	_ = tcp.SetLinger(0)
	if err := tcp.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := tcp.Write(request); err != nil {
		return err
	}
	answer, err := io.ReadAll(tcp)
	if err != nil {
		return err
	}
	if len(answer) == 0 {
		return fmt.Errorf("empty answer from %s", addr)
	}
	return nil
}

func main() {
	addrs := flag.String("addrs", "", "comma-separated IP:PORT destinations, one picked at random per connection")
	count := flag.Int("count", 1000, "connections at most")
	duration := flag.Duration("duration", time.Minute, "run time at most")
	timeout := flag.Duration("timeout", 2*time.Second, "timeout of one connection")
	latencies := flag.Bool("latencies", false, "print every successful connection's duration")
	flag.Parse()
	targets := strings.Split(*addrs, ",")
	if *addrs == "" || *count < 1 || *count > 10_000_000 {
		fmt.Fprintln(os.Stderr, "connprobe: --addrs and a --count of 1 to 10,000,000 are required")
		os.Exit(2)
	}
	var s summary
	start := time.Now()
	deadline := start.Add(*duration)
	for i := 0; i < *count && time.Now().Before(deadline); i++ {
		began := time.Now()
		if err := once(targets[rand.IntN(len(targets))], *timeout); err != nil {
			s.Failures++
			if s.FirstErr == "" {
				s.FirstErr = err.Error()
			}
			continue
		}
		s.OK++
		if *latencies {
			s.DurationsUS = append(s.DurationsUS, time.Since(began).Microseconds())
		}
	}
	s.DurMS = time.Since(start).Milliseconds()
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		os.Exit(1)
	}
}
