//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// serviceWriters is how many Service+EndpointSlice pairs are written at
// once: the API server, not one client round trip, sets the pace.
const serviceWriters = 48

// serviceSpec is a selector-less Service and the EndpointSlice the harness
// writes for it, as a controller of its own would.
type serviceSpec struct {
	name      string
	port      corev1.ServicePort
	target    int32
	endpoints []string
}

func (h *harness) createService(ctx context.Context, spec serviceSpec) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: spec.name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{spec.port}},
	}
	if spec.port.NodePort != 0 {
		svc.Spec.Type = corev1.ServiceTypeNodePort
	}
	created, err := h.client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Service %s: %w", spec.name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: spec.name + "-bench", Labels: map[string]string{
			discoveryv1.LabelServiceName: spec.name,
			discoveryv1.LabelManagedBy:   "socklb-bench",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(spec.port.Name), Port: ptr.To(spec.target), Protocol: ptr.To(spec.port.Protocol)}},
		Endpoints:   endpoints(spec.endpoints),
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the EndpointSlice of %s: %w", spec.name, err)
	}
	return created, nil
}

func endpoints(addrs []string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, a := range addrs {
		// The backends run on the node, and say so as the endpointslice
		// controller would: socklb sends NodePort traffic for local
		// backends straight to the stack, remote ones through SNAT.
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: ptr.To(nodeName), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return out
}

func httpPort() corev1.ServicePort {
	return corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}
}

// createFixedServices makes the four Services the measurements use besides
// svc-0..svc-(N-1).
func (h *harness) createFixedServices(t *testing.T) {
	np := httpPort()
	np.NodePort = nodePort
	fixed := []struct {
		spec serviceSpec
		vip  *string
	}{
		{serviceSpec{"bench-nodeport", np, backendPort, h.backendIPs()}, &h.nodePortVIP},
		{serviceSpec{"bench-iperf", corev1.ServicePort{Name: "iperf", Port: iperfPort, Protocol: corev1.ProtocolTCP}, iperfPort, h.backendIPs()[:1]}, &h.iperfVIP},
		{serviceSpec{"bench-udp", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, udpPort, h.backendIPs()}, &h.udpVIP},
		{serviceSpec{"bench-prop", httpPort(), backendPort, h.backendIPs()[:1]}, &h.propVIP},
	}
	for _, f := range fixed {
		svc, err := h.createService(t.Context(), f.spec)
		if err != nil {
			t.Fatal(err)
		}
		*f.vip = svc.Spec.ClusterIP
	}
}

// growServices creates svc-len(vips) .. svc-(n-1) with serviceWriters at
// once, printing the rate while it goes, and says how long that took.
func (h *harness) growServices(t *testing.T, n int) time.Duration {
	from := len(h.vips)
	if n <= from {
		return 0
	}
	h.vips = append(h.vips, make([]string, n-from)...)
	started := time.Now()
	var done atomic.Int64
	stopProgress := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				d := done.Load()
				progress("creating Services: %d/%d (%.0f/s)", d, n-from, float64(d)/time.Since(started).Seconds())
			}
		}
	}()
	defer close(stopProgress)

	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range serviceWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				svc, err := h.createService(t.Context(), serviceSpec{fmt.Sprintf("svc-%d", i), httpPort(), backendPort, h.backendIPs()})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					h.vips[i] = svc.Spec.ClusterIP
				}
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	for i := from; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("creating Services: %v", err)
	}
	took := time.Since(started)
	progress("created %d Services (now %d) in %s", n-from, n, took.Round(100*time.Millisecond))
	return took
}

// The control plane may go on working after the last Service is written
// (the controller-manager's informers and garbage collector catching up,
// etcd compacting), and the first contender of a scale would then measure
// on a busier machine than the others. At 30,000 Services it was idle 5 s
// after the last write (2026-12-02), so the wait is short where nothing
// lingers.
const (
	settleWindow = 5 * time.Second
	// settleIdleShare is the control plane's CPU, summed over its
	// processes, as a share of one core, below which it counts as idle.
	settleIdleShare = 0.05
	settleLimit     = 5 * time.Minute
)

// settle waits until the control plane is idle over one settleWindow, or
// settleLimit has passed, and says which for the report.
func (h *harness) settle(t *testing.T) string {
	started := time.Now()
	pids := h.cp.PIDs()
	last, err := controlPlaneCPU(pids)
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for the control plane to go idle: %v", t.Context().Err())
		case <-time.After(settleWindow):
		}
		cpu, err := controlPlaneCPU(pids)
		if err != nil {
			t.Fatal(err)
		}
		share := (cpu - last) / settleWindow.Seconds()
		last = cpu
		waited := time.Since(started).Round(time.Second)
		if share < settleIdleShare {
			progress("control plane idle (%.0f%% of a core) %s after creating the Services", share*100, waited)
			return fmt.Sprintf("the control plane went idle (below %.0f%% of a core) %s later, and measuring started then.", settleIdleShare*100, waited)
		}
		if waited >= settleLimit {
			progress("control plane still at %.0f%% of a core after %s: measuring anyway", share*100, waited)
			return fmt.Sprintf("the control plane was still at %.0f%% of a core %s later, and measuring started anyway.", share*100, waited)
		}
		progress("waiting for the control plane to go idle: %.0f%% of a core (%s)", share*100, waited)
	}
}

func controlPlaneCPU(pids []int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		cpu, err := sandbox.ProcCPUSeconds(pid)
		if err != nil {
			return 0, fmt.Errorf("reading the control plane's CPU time: %w", err)
		}
		sum += cpu
	}
	return sum, nil
}
