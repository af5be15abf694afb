//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/probe"
	"github.com/socklb/socklb/tests/sandbox"
)

// propagationChanges is how many EndpointSlice changes each size measures.
const propagationChanges = 200

// BenchmarkPropagation measures the time from an EndpointSlice update sent to
// the API server until a client in the test cgroup is answered by the new
// backend, at 100 and 10,000 Services. Run it once per size (-benchtime 1x):
// it makes its own propagationChanges changes and reports p50 and p99, and
// the agent's resident memory with every Service loaded.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			benchmarkPropagation(b, n)
		})
	}
}

func benchmarkPropagation(b *testing.B, services int) {
	w := newWorld(b)
	podA := w.addPod(b, "prop-a", nil)
	podB := w.addPod(b, "prop-b", nil)

	// A client with room for thousands of creates.
	cfg := *cp.RESTConfig
	cfg.QPS, cfg.Burst = 2000, 2000
	client, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()

	start := time.Now()
	createServices(b, ctx, client, w.ns, services, podA.IPv4.String())
	b.Logf("created %d Services with their EndpointSlices in %s", services, time.Since(start).Round(time.Second))

	target, err := client.CoreV1().Services(w.ns).Get(ctx, "svc-0", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	vip := target.Spec.ClusterIP + ":80"
	// Every Service is in the maps before timing starts.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		views, err := w.sb.InspectServices(b, w.socklb)
		if err == nil && countNamespace(views, w.ns) >= services {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the agent did not load %d Services in 5 minutes", services)
		}
		time.Sleep(500 * time.Millisecond)
	}
	loaded := time.Since(start)
	rss := residentMiB(b, w.agent.cmd.Process.Pid)
	b.Logf("all %d Services in the maps %s after the first create; agent RSS %.1f MiB", services, loaded.Round(time.Second), rss)

	bin := sandbox.Binaries(b, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	watch := w.sb.Start(b, w.peer, true, bin, "watch", "--addr", vip, "--duration", "10m", "--max", "100000000", "--interval", "500us", "--timeout", "500ms")
	changes := newChangeReader(watch)

	slice, err := client.DiscoveryV1().EndpointSlices(w.ns).Get(ctx, "svc-0-manual", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	hosts := []*sandbox.Host{podA, podB}
	if _, err := changes.waitFor(hosts[0].Name, 0, 30*time.Second); err != nil {
		b.Fatalf("the watcher never reached the first backend: %v", err)
	}
	var latencies []time.Duration
	for i := 1; i <= propagationChanges; i++ {
		next := hosts[i%2]
		slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{next.IPv4.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}
		written := time.Now()
		updated, err := client.DiscoveryV1().EndpointSlices(w.ns).Update(ctx, slice, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		slice = updated
		reached, err := changes.waitFor(next.Name, written.UnixNano(), 10*time.Second)
		if err != nil {
			b.Fatalf("change %d: %v", i, err)
		}
		latencies = append(latencies, time.Duration(reached-written.UnixNano()))
		time.Sleep(10 * time.Millisecond)
	}
	watch.Kill()

	slices.Sort(latencies)
	p50 := latencies[len(latencies)*50/100]
	p99 := latencies[len(latencies)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(rss, "agent-RSS-MiB")
	fmt.Printf("propagation at %d Services over %d changes: p50 %s, p99 %s, max %s; agent RSS %.1f MiB\n",
		services, len(latencies), p50.Round(time.Microsecond*100), p99.Round(time.Microsecond*100), latencies[len(latencies)-1].Round(time.Microsecond*100), rss)
}

// createServices makes n selector-less Services svc-0..svc-(n-1), each with a
// hand-made EndpointSlice of one endpoint, with a few writers at once.
func createServices(b *testing.B, ctx context.Context, client kubernetes.Interface, ns string, n int, firstAddr string) {
	b.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := createService(ctx, client, ns, i, firstAddr); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

func createService(ctx context.Context, client kubernetes.Interface, ns string, i int, firstAddr string) error {
	name := fmt.Sprintf("svc-%d", i)
	_, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Service %s: %w", name, err)
	}
	// svc-0's endpoint is the first test pod; the others point at addresses
	// nobody connects to.
	addr := fmt.Sprintf("10.245.%d.%d", i/250, i%250+1)
	if i == 0 {
		addr = firstAddr
	}
	_, err = client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-manual", Labels: map[string]string{
			discoveryv1.LabelServiceName: name,
			discoveryv1.LabelManagedBy:   "socklb-benchmark",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create EndpointSlice of %s: %w", name, err)
	}
	return nil
}

func countNamespace(views []inspect.ServiceView, ns string) int {
	n := 0
	for _, v := range views {
		if strings.HasPrefix(v.Service, ns+"/") && len(v.Backends) > 0 {
			n++
		}
	}
	return n
}

func residentMiB(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}

// changeReader follows sockprobe watch's output.
type changeReader struct {
	proc *sandbox.Process
	seen int // bytes of stdout already parsed
	last struct {
		unixNano int64
		backend  string
	}
}

func newChangeReader(p *sandbox.Process) *changeReader { return &changeReader{proc: p} }

// waitFor returns the time at which backend started answering, after since.
func (c *changeReader) waitFor(backend string, since int64, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out := c.proc.Stdout()[c.seen:]
		complete := strings.LastIndexByte(out, '\n') + 1 // a partial last line waits for next time
		for _, line := range strings.Split(out[:complete], "\n") {
			if line == "" {
				continue
			}
			var ch probe.Change
			if err := json.Unmarshal([]byte(line), &ch); err != nil {
				return 0, fmt.Errorf("parse watch line %q: %w", line, err)
			}
			c.last.unixNano, c.last.backend = ch.UnixNano, ch.Backend
		}
		c.seen += complete
		if c.last.backend == backend && c.last.unixNano >= since {
			return c.last.unixNano, nil
		}
		if c.proc.Exited() {
			return 0, fmt.Errorf("watch exited: %s", c.proc.Stderr())
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("backend %s did not answer within %s (last: %s)", backend, timeout, c.last.backend)
}
