//go:build bench

package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

const (
	namespace     = "bench"
	nodeName      = "node1" // sandbox.NewCluster's first node
	bridgeName    = "cbr0"
	backendPort   = 8080
	udpPort       = 5353
	iperfPort     = 5201
	nodePort      = 30080
	socklbPkg     = "./cmd/socklb"
	connprobePkg  = "./tests/bench/cmd/connprobe"
	serviceCIDR   = "10.96.0.0/16"
	clusterCIDR   = "10.244.0.0/16"
	backendPods   = 3
	clientPods    = 2
	clientsPerPod = 2
)

var bridgeAddr = netip.MustParsePrefix("10.244.1.1/24")

// harness is the node, its pods and the control plane every contender
// shares.
type harness struct {
	cp     *controlplane.ControlPlane
	client kubernetes.Interface // with room for thousands of creates
	c      *sandbox.Cluster
	node   *sandbox.ClusterNode
	// clients run in the node's cgroup (the one socklb attaches to);
	// backends outside it.
	clients  []*sandbox.Host
	backends []*sandbox.Host
	// kubeconfig reaches the API server from inside the node namespace.
	kubeconfig   string
	socklb       string
	sockprobe    string
	connprobeBin string
	kubeProxy    string

	// vips[i] is svc-i's ClusterIP.
	vips        []string
	nodePortVIP string
	iperfVIP    string
	udpVIP      string
	propVIP     string
	// propBackend is the backend index the propagation Service points at.
	propBackend int
}

func newHarness(t *testing.T, cp *controlplane.ControlPlane) *harness {
	h := &harness{cp: cp, kubeProxy: cp.KubeProxyPath}
	cfg := *cp.RESTConfig
	cfg.QPS, cfg.Burst = 5000, 5000
	var err error
	if h.client, err = kubernetes.NewForConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg, connprobePkg)
	h.socklb, h.sockprobe, h.connprobeBin = bins[socklbPkg], bins[sandbox.SockProbePkg], bins[connprobePkg]
	requireTools(t)

	h.c = sandbox.NewCluster(t, 1)
	h.node = h.c.Nodes[0]
	for i := range backendPods {
		h.backends = append(h.backends, h.c.AddPod(t, 1, fmt.Sprintf("backend-%d", i+1)))
	}
	for i := range clientPods {
		h.clients = append(h.clients, h.c.AddPod(t, 1, fmt.Sprintf("client-%d", i+1)))
	}
	if err := bridgePods(h.node, append(append([]*sandbox.Host(nil), h.backends...), h.clients...)); err != nil {
		t.Fatalf("putting the pods on %s: %v", bridgeName, err)
	}
	// Reaching pods straight through the node is the "direct" NodePort path.
	h.c.RouteVia(t, netip.MustParsePrefix("10.244.1.0/24"), 1)
	for _, b := range h.backends {
		if err := writeSysctl(b, "net/ipv4/tcp_max_tw_buckets", "0"); err != nil {
			t.Fatal(err)
		}
		h.c.StartNameServer(t, b, []int{backendPort}, []int{udpPort})
		iperf := h.c.Start(t, b, false, "iperf3", "--server", "--port", fmt.Sprint(iperfPort), "--forceflush")
		if err := iperf.WaitOutput("Server listening", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	h.registerNode(t)
	h.kubeconfig = h.cp.RelayedKubeconfig(t, h.node.Host.Netns, filepath.Join(t.TempDir(), "node.kubeconfig"))
	h.createNamespace(t)
	h.createFixedServices(t)
	return h
}

func requireTools(t *testing.T) {
	for _, tool := range []string{"iptables-save", "ip6tables-save", "nft", "iperf3", "wrk", "conntrack", "bpftool"} {
		if _, err := lookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make bench-quick installs it): %v", tool, err)
		}
	}
}

func lookPath(tool string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, tool)
		if info, err := os.Stat(p); err == nil && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", tool)
}

func writeSysctl(h *sandbox.Host, key, value string) error {
	return h.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s in %s: %w", key, value, h.Name, err)
		}
		return nil
	})
}

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return h, nil
}

// bridgePods turns the sandbox's routed pods into a node's pod bridge:
// every pod's node-side veth becomes a port of cbr0 (10.244.1.1/24), the
// node's per-pod routes go, and each pod gets the /24 on its link and the
// Service range through the bridge's address. br_netfilter then sees both
// bridged (pod to pod) and routed (pod to ClusterIP) traffic, as on a node
// with kubelet's bridge networking.
func bridgePods(node *sandbox.ClusterNode, pods []*sandbox.Host) error {
	nh, err := handleAt(node.Host.Netns)
	if err != nil {
		return err
	}
	defer nh.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := nh.LinkAdd(br); err != nil {
		return fmt.Errorf("adding bridge: %w", err)
	}
	bridge, err := nh.LinkByName(bridgeName)
	if err != nil {
		return err
	}
	if err := nh.AddrAdd(bridge, &netlink.Addr{IPNet: ipNet(bridgeAddr)}); err != nil {
		return fmt.Errorf("addressing the bridge: %w", err)
	}
	if err := nh.LinkSetUp(bridge); err != nil {
		return err
	}
	for _, pod := range pods {
		if err := enslavePod(nh, bridge, pod); err != nil {
			return fmt.Errorf("pod %s: %w", pod.Name, err)
		}
	}
	return writeSysctl(node.Host, "net/bridge/bridge-nf-call-iptables", "1")
}

func enslavePod(nh *netlink.Handle, bridge netlink.Link, pod *sandbox.Host) error {
	port, err := nh.LinkByName(pod.NodeLink)
	if err != nil {
		return err
	}
	routes, err := nh.RouteList(port, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, bits := r.Dst.Mask.Size(); ones == bits {
			if err := nh.RouteDel(&r); err != nil {
				return fmt.Errorf("removing the node's route %s: %w", r.Dst, err)
			}
		}
	}
	if err := nh.LinkSetMaster(port, bridge); err != nil {
		return fmt.Errorf("enslaving %s: %w", pod.NodeLink, err)
	}
	ph, err := handleAt(pod.Netns)
	if err != nil {
		return err
	}
	defer ph.Close()
	eth, err := ph.LinkByName(pod.Link)
	if err != nil {
		return err
	}
	src := net.IP(pod.IPv4.AsSlice())
	for _, r := range []*netlink.Route{
		{LinkIndex: eth.Attrs().Index, Dst: ipNet(bridgeAddr.Masked()), Scope: netlink.SCOPE_LINK, Src: src},
		{LinkIndex: eth.Attrs().Index, Dst: ipNet(netip.MustParsePrefix(serviceCIDR)), Gw: net.IP(bridgeAddr.Addr().AsSlice()), Src: src},
	} {
		if err := ph.RouteAdd(r); err != nil {
			return fmt.Errorf("pod route %s: %w", r.Dst, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// registerNode writes the Node with the node's LAN address as its
// InternalIP: kube-proxy takes its node IP (and NodePort addresses) from
// it, socklb its NodePort frontends.
func (h *harness) registerNode(t *testing.T) {
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: h.node.IPv4.String()},
		{Type: corev1.NodeHostName, Address: nodeName},
	}
	if _, err := controlplane.EnsureNodeWithAddresses(t.Context(), h.client, nodeName, addrs); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) createNamespace(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := h.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
}

func (h *harness) backendIPs() []string {
	var ips []string
	for _, b := range h.backends {
		ips = append(ips, b.IPv4.String())
	}
	return ips
}
