//go:build cluster

// Package cluster runs socklb in cluster mode against a real control plane
// (etcd, kube-apiserver, kube-controller-manager started by
// tests/controlplane) and checks the datapath with real sockets in network
// namespaces, following the seed documents' kubectl flows. Run it with
// `make test-cluster`, which builds the Kubernetes binaries first.
package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

const (
	nodeName  = "socklb-test-node"
	socklbPkg = "./cmd/socklb"
)

var (
	// cp is the control plane every test of the package shares; each test
	// works in a namespace of its own.
	cp      *controlplane.ControlPlane
	cpErr   error
	cpStart time.Duration
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			cpErr = fmt.Errorf("cluster tests need root")
			return m.Run()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		binDir, err := controlplane.Binaries(ctx)
		if err != nil {
			cpErr = fmt.Errorf("build the Kubernetes binaries: %w", err)
			return m.Run()
		}
		start := time.Now()
		cp, cpErr = controlplane.Start(ctx, controlplane.Options{BinDir: binDir})
		cpStart = time.Since(start)
		if cpErr == nil {
			defer cp.Stop()
			fmt.Printf("control plane ready in %s\n", cpStart.Round(time.Millisecond))
			// Every Node now: the endpointslice controller skips pods on a
			// Node its informer has not seen, and after TestAPIServerOutage
			// that informer takes tens of seconds to list again.
			for _, name := range append([]string{nodeName}, clusterNodeNames...) {
				if _, err := controlplane.EnsureNode(ctx, cp.Client, name); err != nil {
					cpErr = err
				}
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// world is one test's node: a sandbox, an agent in cluster mode and a
// namespace in the shared control plane.
type world struct {
	sb     *sandbox.Sandbox
	client kubernetes.Interface
	ns     string
	socklb string
	agent  *agentProcess
	peer   *sandbox.Host // the client pod, inside the test cgroup
}

func newWorld(t testing.TB) *world {
	t.Helper()
	if cpErr != nil {
		if sandbox.InCI() {
			t.Fatalf("control plane unavailable under CI=true: %v", cpErr)
		}
		t.Skipf("control plane unavailable: %v", cpErr)
	}
	sb := sandbox.New(t)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	w := &world{sb: sb, client: cp.Client, socklb: bins[socklbPkg]}
	w.ns = namespaceFor(t.Name())
	ctx := t.Context()
	if _, err := w.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", w.ns, err)
	}
	t.Cleanup(func() {
		// Pods have no kubelet: force them away so the namespace can go.
		ctx := context.Background()
		pods, _ := w.client.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			_ = controlplane.DeletePod(ctx, w.client, w.ns, p.Name, true)
		}
		_ = w.client.CoreV1().Namespaces().Delete(ctx, w.ns, metav1.DeleteOptions{})
	})
	w.peer = sb.AddPod(t, "client")
	w.startAgent(t)
	return w
}

// namespaceFor turns a test name into a valid namespace name.
func namespaceFor(test string) string {
	ns := []byte(strings.ToLower(test))
	for i, c := range ns {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			ns[i] = '-'
		}
	}
	return strings.Trim(string(ns[:min(len(ns), 50)]), "-")
}

// agentProcess is socklb agent in cluster mode. It runs in the machine's
// network namespace, where the API server listens on 127.0.0.1; its
// programs act on the sandbox's cgroup only.
type agentProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

func (a *agentProcess) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.Write(p)
}

func (a *agentProcess) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

func (w *world) startAgent(t testing.TB) {
	t.Helper()
	a := &agentProcess{done: make(chan struct{})}
	a.cmd = exec.Command(w.socklb, "agent", "--kubeconfig", cp.KubeconfigPath, "--node-name", nodeName,
		"--cgroup", w.sb.Cgroup, "--bpffs", w.sb.PinDir, "--log-level", "debug",
		// The machine's netns: free ports, not kube-proxy's, which another
		// agent or a kube-proxy may hold.
		"--metrics-address", "127.0.0.1:0", "--healthz-address", "127.0.0.1:0")
	a.cmd.Stdout, a.cmd.Stderr = a, a
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	w.agent = a
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.Log())
		}
	})
}

// addPod makes a "pod": a network namespace with a name server on TCP 8080
// and UDP 5353, registered as a Pod on the test node with a Ready status.
func (w *world) addPod(t testing.TB, name string, labels map[string]string) *sandbox.Host {
	t.Helper()
	h := w.sb.AddPod(t, name)
	w.sb.StartNameServer(t, h, []int{8080}, []int{5353})
	if labels != nil {
		_, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
			Namespace: w.ns, Name: name, Labels: labels, NodeName: nodeName, IP: h.IPv4.String(),
			ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (w *world) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := cp.Kubectl(ctx, append([]string{"-n", w.ns}, args...)...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// apply pipes a manifest into kubectl apply.
func (w *world) apply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cp.KubectlPath, "--kubeconfig", cp.KubeconfigPath, "-n", w.ns, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, manifest)
	}
}

func (w *world) clusterIP(t *testing.T, service string) string {
	t.Helper()
	svc, err := w.client.CoreV1().Services(w.ns).Get(t.Context(), service, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

func (w *world) waitFrontend(t *testing.T, frontend, proto string, want ...string) {
	t.Helper()
	w.sb.WaitFrontend(t, w.socklb, frontend, proto, want...)
}

func (w *world) probe(t *testing.T, args ...string) map[string]int {
	t.Helper()
	return sandbox.RequireAllOK(t, w.sb.Probe(t, w.peer, true, args...))
}

func addrs(port int, hs ...*sandbox.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s:%d", h.IPv4, port))
	}
	sortStrings(out)
	return out
}
