//go:build controlplane

// The control-plane test starts real Kubernetes binaries and takes seconds,
// so it only runs with -tags controlplane:
//
//	go test -tags controlplane -v ./tests/controlplane/
//
// When the binaries are not built yet it builds them (about 12 minutes) if
// the test deadline allows: pass -timeout 30m, or run
// tests/controlplane/build.sh first.
package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/socklb/socklb/tests/controlplane"
)

// coldBuildBudget is the least test time left for which a missing build is
// attempted rather than skipped: a cold build takes about 12 minutes.
const coldBuildBudget = 20 * time.Minute

const eventuallyTimeout = 30 * time.Second

// requireBinaries returns the Kubernetes binary directory, or skips the test
// when the control plane cannot run here. Under CI=true a control plane that
// cannot run is a failure: CI must never silently lose this coverage.
func requireBinaries(t *testing.T) string {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format+" (CI=true, so this fails instead of skipping)", args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		unavailable("the control-plane test needs root (build.sh installs etcd with apt-get)")
	}
	binDir, complete, err := controlplane.CachedBinaries()
	if err != nil {
		unavailable("looking for Kubernetes binaries: %v", err)
	}
	if complete {
		return binDir
	}
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < coldBuildBudget {
		unavailable("Kubernetes binaries are missing from %s and a cold build (about 12 minutes) does not fit the test deadline: run tests/controlplane/build.sh or pass -timeout 30m", binDir)
	}
	binDir, err = controlplane.Binaries(t.Context())
	if err != nil {
		unavailable("building Kubernetes binaries: %v", err)
	}
	return binDir
}

func TestControlPlanePublishesEndpointSlicesForFakePods(t *testing.T) {
	binDir := requireBinaries(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	startedAt := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{BinDir: binDir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	t.Logf("control plane ready in %s at %s (kubeconfig %s)", time.Since(startedAt).Round(time.Millisecond), cp.APIServerURL, cp.KubeconfigPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.LogTails(60))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping control plane: %v", err)
		}
	})
	client := cp.Client

	const namespace = "socklb-controlplane-test"
	const nodeName = "node-a"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	if _, err := controlplane.EnsureNode(ctx, client, nodeName); err != nil {
		t.Fatal(err)
	}
	// A second call must be harmless: several tests may share a node name.
	node, err := controlplane.EnsureNode(ctx, client, nodeName)
	if err != nil {
		t.Fatal(err)
	}
	if !nodeReady(node) || len(node.Spec.Taints) != 0 {
		t.Fatalf("node %s: ready=%t taints=%v, want ready and untainted", nodeName, nodeReady(node), node.Spec.Taints)
	}

	podIPs := map[string]string{"echo-a": "10.244.1.10", "echo-b": "10.244.1.11"}
	for name, ip := range podIPs {
		pod, err := controlplane.CreatePod(ctx, client, controlplane.PodSpec{
			Namespace:      namespace,
			Name:           name,
			Labels:         map[string]string{"app": "echo"},
			NodeName:       nodeName,
			IP:             ip,
			ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != ip {
			t.Fatalf("pod %s: phase %s IP %q, want Running with %s", name, pod.Status.Phase, pod.Status.PodIP, ip)
		}
	}

	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{
				Name:       "web",
				Port:       80,
				Protocol:   corev1.ProtocolTCP,
				TargetPort: intstr.FromString("http"),
			}},
		},
	}
	service, err = client.CoreV1().Services(namespace).Create(ctx, service, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service: %v", err)
	}
	if !strings.HasPrefix(service.Spec.ClusterIP, "10.96.") {
		t.Errorf("service ClusterIP %s is outside 10.96.0.0/16", service.Spec.ClusterIP)
	}

	waitForEndpoints(ctx, t, client, namespace, "echo", map[string]endpointState{
		"10.244.1.10": {ready: true, serving: true},
		"10.244.1.11": {ready: true, serving: true},
	})
	echoSlices, err := listEndpointSlices(ctx, client, namespace, "echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, slice := range echoSlices {
		if len(slice.Ports) != 1 || slice.Ports[0].Port == nil || *slice.Ports[0].Port != 8080 || slice.Ports[0].Name == nil || *slice.Ports[0].Name != "web" {
			t.Errorf("EndpointSlice %s ports %s, want web -> 8080 from the named targetPort", slice.Name, describePorts(slice.Ports))
		}
	}

	if err := controlplane.SetPodReady(ctx, client, namespace, "echo-b", false); err != nil {
		t.Fatal(err)
	}
	waitForEndpoints(ctx, t, client, namespace, "echo", map[string]endpointState{
		"10.244.1.10": {ready: true, serving: true},
		"10.244.1.11": {ready: false, serving: false},
	})
	if err := controlplane.SetPodReady(ctx, client, namespace, "echo-b", true); err != nil {
		t.Fatal(err)
	}
	waitForEndpoints(ctx, t, client, namespace, "echo", map[string]endpointState{
		"10.244.1.10": {ready: true, serving: true},
		"10.244.1.11": {ready: true, serving: true},
	})

	kubectlOutput, err := cp.Kubectl(ctx, "get", "endpointslices", "--namespace", namespace, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var kubectlSlices discoveryv1.EndpointSliceList
	if err := json.Unmarshal([]byte(kubectlOutput), &kubectlSlices); err != nil {
		t.Fatalf("decoding kubectl output: %v\n%s", err, kubectlOutput)
	}
	var kubectlAddresses []string
	for _, slice := range kubectlSlices.Items {
		for _, endpoint := range slice.Endpoints {
			kubectlAddresses = append(kubectlAddresses, endpoint.Addresses...)
		}
	}
	slices.Sort(kubectlAddresses)
	if want := []string{"10.244.1.10", "10.244.1.11"}; !slices.Equal(kubectlAddresses, want) {
		t.Errorf("kubectl lists endpoint addresses %v, want %v", kubectlAddresses, want)
	}
	if version, err := cp.Kubectl(ctx, "version", "-o", "json"); err != nil {
		t.Error(err)
	} else if !strings.Contains(version, `"gitVersion": "`+controlplane.KubernetesVersion+`"`) {
		t.Errorf("kubectl version does not report %s for client and server:\n%s", controlplane.KubernetesVersion, version)
	}

	// Without a kubelet a gracefully deleted pod stays Terminating, which is
	// how tests get terminating endpoints.
	if err := controlplane.DeletePod(ctx, client, namespace, "echo-a", false); err != nil {
		t.Fatal(err)
	}
	waitForEndpoints(ctx, t, client, namespace, "echo", map[string]endpointState{
		"10.244.1.10": {ready: false, serving: true, terminating: true},
		"10.244.1.11": {ready: true, serving: true},
	})

	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := cp.APIServerReady(ctx); err == nil {
		t.Fatal("kube-apiserver still answers /readyz after StopAPIServer")
	}
	restartedAt := time.Now()
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver restarted in %s", time.Since(restartedAt).Round(time.Millisecond))
	if err := cp.APIServerReady(ctx); err != nil {
		t.Fatalf("kube-apiserver after restart: %v", err)
	}
	// The controller-manager must have reconnected to the restarted apiserver.
	if err := controlplane.SetPodReady(ctx, client, namespace, "echo-b", false); err != nil {
		t.Fatal(err)
	}
	waitForEndpoints(ctx, t, client, namespace, "echo", map[string]endpointState{
		"10.244.1.10": {ready: false, serving: true, terminating: true},
		"10.244.1.11": {ready: false, serving: false},
	})

	// The namespace holds a Terminating pod, which the namespace controller
	// alone would wait for forever.
	deleteCtx, cancelDelete := context.WithTimeout(ctx, eventuallyTimeout)
	defer cancelDelete()
	deletedAt := time.Now()
	if err := controlplane.DeleteNamespace(deleteCtx, client, namespace); err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace deleted in %s", time.Since(deletedAt).Round(time.Millisecond))

	if err := cp.Stop(); err != nil {
		t.Fatalf("stopping control plane: %v", err)
	}
	if _, err := os.Stat(cp.Dir); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists after Stop (stat: %v)", cp.Dir, err)
	}
}

type endpointState struct {
	ready, serving, terminating bool
}

func waitForEndpoints(ctx context.Context, t *testing.T, client kubernetes.Interface, namespace, service string, want map[string]endpointState) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("EndpointSlices of %s/%s to be %v", namespace, service, want), func() error {
		endpointSlices, err := listEndpointSlices(ctx, client, namespace, service)
		if err != nil {
			return err
		}
		got := map[string]endpointState{}
		for _, slice := range endpointSlices {
			for _, endpoint := range slice.Endpoints {
				for _, address := range endpoint.Addresses {
					got[address] = endpointState{
						ready:       endpoint.Conditions.Ready != nil && *endpoint.Conditions.Ready,
						serving:     endpoint.Conditions.Serving != nil && *endpoint.Conditions.Serving,
						terminating: endpoint.Conditions.Terminating != nil && *endpoint.Conditions.Terminating,
					}
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("endpoints are %v", got)
		}
		return nil
	})
}

func listEndpointSlices(ctx context.Context, client kubernetes.Interface, namespace, service string) ([]discoveryv1.EndpointSlice, error) {
	list, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service,
	})
	if err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of %s/%s: %w", namespace, service, err)
	}
	return list.Items, nil
}

func eventually(ctx context.Context, t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(eventuallyTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nodeReady(node *corev1.Node) bool {
	for _, condition := range node.Status.Conditions {
		if condition.Type == corev1.NodeReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describePorts(ports []discoveryv1.EndpointPort) string {
	var parts []string
	for _, port := range ports {
		name, number := "<nil>", "<nil>"
		if port.Name != nil {
			name = *port.Name
		}
		if port.Port != nil {
			number = fmt.Sprint(*port.Port)
		}
		parts = append(parts, name+"->"+number)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
