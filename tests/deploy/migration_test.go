//go:build controlplane

package deploy

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

// translator is who translates a new connection to a Service.
type translator string

const (
	byKubeProxy translator = "kube-proxy's rules"
	bySocklb    translator = "socklb"
)

const (
	migrationNamespace = "migration"
	migrationNodePort  = 30081
	// serviceRange is the control plane's Service CIDR, which the client pod
	// routes to its node so that kube-proxy's rules can catch it there.
	serviceRange = controlplane.DefaultServiceClusterIPRange
)

// TestMigrationFromKubeProxy walks docs/migration.md on one sandbox node
// with a real kube-proxy (iptables mode, in the node's network namespace)
// and socklb in cluster mode, both against the control plane. After each
// step a pod connects to a ClusterIP and an outside client to a NodePort,
// and kube-proxy's rule counters say whether its rules saw the connections:
// every step but the first and the last must leave them to socklb.
func TestMigrationFromKubeProxy(t *testing.T) {
	cp := requireControlPlane(t)
	m := newMigrationNode(t, cp)
	steps := []struct {
		name string
		do   func(t *testing.T)
		want translator
	}{
		{"kube-proxy alone", m.startKubeProxy, byKubeProxy},
		{"socklb deployed beside kube-proxy", m.startSocklb, bySocklb},
		{"kube-proxy deleted, its rules left behind", m.stopKubeProxy, bySocklb},
		{"kube-proxy --cleanup", m.kubeProxyCleanup, bySocklb},
		{"rollback: kube-proxy back beside socklb", m.startKubeProxy, bySocklb},
		{"rollback: socklb deleted, then socklb cleanup", m.removeSocklb, byKubeProxy},
	}
	for _, step := range steps {
		t.Logf("step %q", step.name)
		step.do(t)
		m.checkTranslator(t, step.name, step.want)
	}
}

// migrationNode is a one-node sandbox cluster with a backend pod behind a
// NodePort Service, a client pod, and the relay to the API server.
type migrationNode struct {
	cp         *controlplane.ControlPlane
	c          *sandbox.Cluster
	node       *sandbox.ClusterNode
	web        *sandbox.Host
	client     *sandbox.Host
	socklb     string
	kubeconfig string
	clusterIP  string
	kubeProxy  *sandbox.Process
	agent      *sandbox.Process
}

func newMigrationNode(t *testing.T, cp *controlplane.ControlPlane) *migrationNode {
	t.Helper()
	c := sandbox.NewCluster(t, 1)
	if _, err := exec.LookPath("iptables-save"); err != nil {
		unavailable(t, "iptables-save (Debian package iptables), which reads kube-proxy's rules: %v", err)
	}
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	m := &migrationNode{cp: cp, c: c, node: c.Node(t, 1), socklb: bins[socklbPkg]}
	m.web = c.AddPod(t, 1, "web")
	m.client = c.AddPod(t, 1, "client")
	c.StartNameServer(t, m.web, []int{8080}, nil)
	routeServicesToNode(t, m.client, m.node)
	m.kubeconfig = m.cp.RelayedKubeconfig(t, m.node.Host.Netns, filepath.Join(t.TempDir(), "node.kubeconfig"))
	m.createObjects(t)
	return m
}

// routeServicesToNode gives the pod a route for the Service range through
// its node: without socklb a ClusterIP packet must reach the node, where
// kube-proxy's rules rewrite it. The node has no route off the machine.
func routeServicesToNode(t *testing.T, pod *sandbox.Host, node *sandbox.ClusterNode) {
	t.Helper()
	ns, err := netns.GetFromPath(pod.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(pod.Link)
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR(serviceRange)
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: net.IP(node.IPv4.AsSlice()), Src: net.IP(pod.IPv4.AsSlice())}
	if err := h.RouteAdd(route); err != nil {
		t.Fatalf("route %s via %s in %s: %v", serviceRange, node.IPv4, pod.Name, err)
	}
}

// relayedKubeconfig serves the API server on the node's 127.0.0.1 and
// writes a kubeconfig pointing there, for kube-proxy and the agent.
// createObjects makes the Node, the web pod and its NodePort Service, and
// waits for the EndpointSlice controller to list the pod.
func (m *migrationNode) createObjects(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	client := m.cp.Client
	addrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: m.node.IPv4.String()}, {Type: corev1.NodeHostName, Address: m.node.Host.Name}}
	if _, err := controlplane.EnsureNodeWithAddresses(ctx, client, m.node.Host.Name, addrs); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: migrationNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := controlplane.DeleteNamespace(ctx, client, migrationNamespace); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	labels := map[string]string{"app": "web"}
	if _, err := controlplane.CreatePod(ctx, client, controlplane.PodSpec{
		Namespace: migrationNamespace, Name: "web", Labels: labels, NodeName: m.node.Host.Name, IP: m.web.IPv4.String(),
		ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
	}); err != nil {
		t.Fatal(err)
	}
	svc, err := client.CoreV1().Services(migrationNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), NodePort: migrationNodePort, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.clusterIP = svc.Spec.ClusterIP
	m.waitSlice(t)
}

func (m *migrationNode) waitSlice(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		list, err := m.cp.Client.DiscoveryV1().EndpointSlices(migrationNamespace).List(t.Context(),
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err == nil {
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					if slices.Contains(e.Addresses, m.web.IPv4.String()) && e.Conditions.Ready != nil && *e.Conditions.Ready {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the EndpointSlice controller never listed web (%s) as ready", m.web.IPv4)
}
