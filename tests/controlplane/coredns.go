package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// CoreDNSVersion is the CoreDNS tests/coredns/build.sh builds.
const CoreDNSVersion = "v1.15.0"

// The cluster DNS as kubeadm sets it up: CoreDNS pods labelled
// k8s-app=kube-dns behind the Service kube-system/kube-dns at the tenth
// address of the default Service range.
const (
	KubeDNSNamespace = "kube-system"
	KubeDNSName      = "kube-dns"
	KubeDNSIP        = "10.96.0.10"
	KubeDNSLabel     = "k8s-app"
	ClusterDomain    = "cluster.local"
)

// KubeDNSLabels are the labels of a CoreDNS pod, which kube-dns selects.
func KubeDNSLabels() map[string]string { return map[string]string{KubeDNSLabel: KubeDNSName} }

// CoreDNSContainerPorts are the named ports of a CoreDNS pod; the kube-dns
// Service targets them by name.
func CoreDNSContainerPorts() []corev1.ContainerPort {
	return []corev1.ContainerPort{
		{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
	}
}

// KubeDNSService is the Service kube-system/kube-dns at KubeDNSIP with the
// ports dns (53/UDP), dns-tcp (53/TCP) and metrics (9153/TCP).
func KubeDNSService() *corev1.Service {
	port := func(name string, number int32, protocol corev1.Protocol) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: number, Protocol: protocol, TargetPort: intstr.FromString(name)}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: KubeDNSNamespace,
			Name:      KubeDNSName,
			Labels:    map[string]string{KubeDNSLabel: KubeDNSName, "kubernetes.io/name": "CoreDNS"},
		},
		Spec: corev1.ServiceSpec{
			Selector:  KubeDNSLabels(),
			ClusterIP: KubeDNSIP,
			Ports: []corev1.ServicePort{
				port("dns", 53, corev1.ProtocolUDP),
				port("dns-tcp", 53, corev1.ProtocolTCP),
				port("metrics", 9153, corev1.ProtocolTCP),
			},
		},
	}
}

// CreateKubeDNSService creates KubeDNSService, replacing one left behind by
// an earlier run that died before its cleanup.
func CreateKubeDNSService(ctx context.Context, client kubernetes.Interface) error {
	services := client.CoreV1().Services(KubeDNSNamespace)
	err := services.Delete(ctx, KubeDNSName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting an old service %s/%s: %w", KubeDNSNamespace, KubeDNSName, err)
	}
	if _, err := services.Create(ctx, KubeDNSService(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating service %s/%s: %w", KubeDNSNamespace, KubeDNSName, err)
	}
	return nil
}

// Corefile is the configuration of a CoreDNS pod: the kubernetes plugin
// reading the API server through kubeconfig, answering for ClusterDomain
// and the reverse zones, with every query logged (tests count them per
// pod), metrics on 9153 and readiness on 8181. extraZones are server
// blocks appended as they are (a hosts or file zone for a test).
func Corefile(kubeconfig string, extraZones ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `.:53 {
    errors
    log
    health :8080
    ready :8181
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    prometheus :9153
    loadbalance
}
`, ClusterDomain, kubeconfig)
	for _, zone := range extraZones {
		b.WriteString(zone)
		if !strings.HasSuffix(zone, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// ResolvConf is the resolv.conf a kubelet writes for a pod of namespace
// with dnsPolicy ClusterFirst: kube-dns, the cluster's search path and
// ndots:5.
func ResolvConf(namespace string) string {
	return fmt.Sprintf("search %[1]s.svc.%[2]s svc.%[2]s %[2]s\nnameserver %[3]s\noptions ndots:5\n",
		namespace, ClusterDomain, KubeDNSIP)
}

// WithResolvConf wraps argv so that it runs with the file resolvConf
// mounted on /etc/resolv.conf in a private mount namespace of its own, as
// a container sees the file its kubelet wrote. (`ip netns exec` does the
// same with /etc/netns/<name>/resolv.conf but also remounts /sys, which
// hides the sandboxes' cgroup2 and bpffs.) The machine's own
// /etc/resolv.conf is never touched.
func WithResolvConf(resolvConf string, argv ...string) []string {
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, resolvConf}, argv...)
}

// coreDNSBinaryPath is where tests/coredns/build.sh leaves CoreDNS.
func coreDNSBinaryPath() (string, error) {
	repoRoot, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(repoRoot, ".cache", "coredns", CoreDNSVersion, "coredns"), nil
}

// CoreDNSBinary returns the path of the CoreDNS binary, running
// tests/coredns/build.sh first if it is missing (a cold build takes about
// 5 minutes; its progress goes to stderr).
func CoreDNSBinary(ctx context.Context) (string, error) {
	binary, err := coreDNSBinaryPath()
	if err != nil || isExecutable(binary) {
		return binary, err
	}
	buildMutex.Lock()
	defer buildMutex.Unlock()
	if isExecutable(binary) {
		return binary, nil
	}
	const buildScript = "tests/coredns/build.sh"
	if err := runBuildScript(ctx, buildScript); err != nil {
		return "", err
	}
	if !isExecutable(binary) {
		return "", fmt.Errorf("running %s: finished without producing %s", buildScript, binary)
	}
	return binary, nil
}
