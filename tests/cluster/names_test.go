//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

// namesTools are the clients the name tests run, none written here: the
// Makefile's test-cluster target installs their Debian packages.
var namesTools = map[string]string{
	"dig":      "dnsutils",
	"getent":   "libc-bin",
	"musl-gcc": "musl-tools",
	"nginx":    "nginx",
	"curl":     "curl",
	"unshare":  "util-linux",
}

// ingressNodePort is the NodePort of the ingress story's nginx.
const ingressNodePort = 30081

// bigAnswerEndpoints is the size of the headless Service whose A records
// do not fit in a 512-byte UDP answer (16 bytes each).
const bigAnswerEndpoints = 60

// musl's getaddrinfo, which drops every UDP reply whose source is not the
// nameserver it asked.
const muslGetaddrinfoSource = `#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
	struct addrinfo hints, *res, *p;
	char text[INET_ADDRSTRLEN];
	int rc;
	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME\n", argv[0]);
		return 2;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(argv[1], NULL, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo %s: %s\n", argv[1], gai_strerror(rc));
		return 1;
	}
	for (p = res; p != NULL; p = p->ai_next) {
		struct sockaddr_in *sin = (struct sockaddr_in *)p->ai_addr;
		printf("%s\n", inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text));
	}
	freeaddrinfo(res);
	return 0;
}
`

// dnsCluster is the north-south cluster (two nodes, web-a and web-b) with
// the cluster DNS: CoreDNS pods coredns-a on node1 and coredns-b on node2
// behind kube-system/kube-dns, each reading the API server through a relay
// on its pod's 127.0.0.1, and a client pod on node1 whose resolv.conf
// points at kube-dns.
type dnsCluster struct {
	*nsCluster
	dnsPods    []*sandbox.Host
	coredns    []*sandbox.Process
	clientPod  *sandbox.Host
	resolvConf string
	dir        string
}

func newDNSCluster(t *testing.T) *dnsCluster {
	t.Helper()
	for tool, pkg := range namesTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install Debian's %s (make test-cluster does)", tool, pkg)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	coredns, err := controlplane.CoreDNSBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &dnsCluster{nsCluster: newNSCluster(t), dir: t.TempDir()}
	if err := controlplane.CreateKubeDNSService(t.Context(), w.client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = cp.Kubectl(ctx, "-n", controlplane.KubeDNSNamespace, "delete", "service", controlplane.KubeDNSName, "--ignore-not-found")
	})
	for _, n := range w.c.Nodes {
		w.startCoreDNS(t, n, coredns)
	}
	w.clientPod = w.c.AddPod(t, 1, "client")
	w.resolvConf = filepath.Join(w.dir, "resolv.conf")
	if err := os.WriteFile(w.resolvConf, []byte(controlplane.ResolvConf(w.ns)), 0o644); err != nil {
		t.Fatal(err)
	}
	dnsBackends := []string{w.dnsPods[0].IPv4.String() + ":53", w.dnsPods[1].IPv4.String() + ":53"}
	slices.Sort(dnsBackends)
	for _, n := range w.c.Nodes {
		w.waitProtoFrontend(t, n, controlplane.KubeDNSIP+":53", "UDP", dnsBackends)
		w.waitProtoFrontend(t, n, controlplane.KubeDNSIP+":53", "TCP", dnsBackends)
	}
	return w
}

// startCoreDNS runs CoreDNS in a new pod coredns-<a|b> on n and registers
// the pod in kube-system, where kube-dns selects it.
func (w *dnsCluster) startCoreDNS(t *testing.T, n *sandbox.ClusterNode, binary string) {
	t.Helper()
	name := fmt.Sprintf("coredns-%c", 'a'+n.Index-1)
	pod := w.c.AddPod(t, n.Index, name)
	kubeconfig := cp.RelayedKubeconfig(t, pod.Netns, filepath.Join(w.dir, name+".kubeconfig"))
	corefile := filepath.Join(w.dir, name+".Corefile")
	if err := os.WriteFile(corefile, []byte(controlplane.Corefile(kubeconfig)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := w.c.Start(t, pod, false, binary, "-conf", corefile)
	if err := p.WaitOutput("CoreDNS-", 60*time.Second); err != nil {
		t.Fatalf("CoreDNS on %s: %v\n%s%s", name, err, p.Stdout(), p.Stderr())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(p.Stdout()+p.Stderr(), 40))
		}
	})
	_, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
		Namespace: controlplane.KubeDNSNamespace, Name: name, Labels: controlplane.KubeDNSLabels(),
		NodeName: n.Host.Name, IP: pod.IPv4.String(), ContainerPorts: controlplane.CoreDNSContainerPorts(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = controlplane.DeletePod(context.Background(), w.client, controlplane.KubeDNSNamespace, name, true)
	})
	w.dnsPods = append(w.dnsPods, pod)
	w.coredns = append(w.coredns, p)
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// waitProtoFrontend waits until n's maps hold frontend/proto with exactly
// the backends want.
func (w *dnsCluster) waitProtoFrontend(t *testing.T, n *sandbox.ClusterNode, frontend, proto string, want []string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		views, raw := w.views(t, n)
		i := slices.IndexFunc(views, func(v inspect.ServiceView) bool { return v.Frontend == frontend && v.Protocol == proto })
		if i >= 0 && slices.Equal(sandbox.BackendSet(views[i]), want) {
			return
		}
		last = raw
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s's maps never held %s/%s -> %v; last inspect:\n%s", n.Host.Name, frontend, proto, want, last)
}

// inPod runs argv in the client pod, inside node1's cgroup (so socklb
// translates its connects and datagrams), with the pod's resolv.conf.
func (w *dnsCluster) inPod(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return w.c.Run(t, ctx, w.clientPod, true, controlplane.WithResolvConf(w.resolvConf, argv...)...)
}

// fqdn is the cluster name of Service name in the test's namespace.
func (w *dnsCluster) fqdn(name string) string {
	return fmt.Sprintf("%s.%s.svc.%s", name, w.ns, controlplane.ClusterDomain)
}

// queriesLogged counts the queries for qname (with a trailing dot) over
// proto ("udp", "tcp") in each CoreDNS pod's log.
func (w *dnsCluster) queriesLogged(qtype, qname, proto string) []int {
	needle := fmt.Sprintf(`"%s IN %s. %s `, qtype, qname, proto)
	counts := make([]int, len(w.coredns))
	for i, p := range w.coredns {
		counts[i] = strings.Count(p.Stdout(), needle)
	}
	return counts
}

// musl compiles the getaddrinfo client with musl-gcc, statically.
func (w *dnsCluster) musl(t *testing.T) string {
	t.Helper()
	src := filepath.Join(w.dir, "getaddrinfo.c")
	bin := filepath.Join(w.dir, "musl-getaddrinfo")
	if err := os.WriteFile(src, []byte(muslGetaddrinfoSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("musl-gcc", "-static", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc: %v\n%s", err, out)
	}
	return bin
}

// The seeds' stories by name: the client pod resolves Services through
// kube-dns (two CoreDNS pods reached through socklb's ClusterIP
// translation, UDP and TCP) with dig, glibc and musl, falls back to TCP for
// an answer too big for UDP, curls a Service by name, keeps resolving when
// a CoreDNS pod goes, and an nginx ingress behind a NodePort proxies to a
// Service it resolves itself.
func TestNamesThroughKubeDNS(t *testing.T) {
	w := newDNSCluster(t)
	w.kubectl(t, "create", "service", "clusterip", "web", "--tcp=80:8080")
	vip := w.clusterIP(t, "web")
	w.waitSlice(t, addrs(8080, w.pods...))
	webName := w.fqdn("web")

	t.Run("dig over UDP and TCP gets the ClusterIP from kube-dns itself", func(t *testing.T) {
		for _, transport := range []string{"+notcp", "+tcp"} {
			out, err := w.inPod(t, "dig", transport, "+search", "+tries=1", "+time=3", "web")
			if err != nil || !strings.Contains(out, "status: NOERROR") || !answers(out, webName, vip) {
				t.Errorf("dig %s +search web: want NOERROR and %s; err %v:\n%s", transport, vip, err, out)
			}
			if strings.Contains(out, "unexpected source") || !strings.Contains(out, "SERVER: "+controlplane.KubeDNSIP+"#53") {
				t.Errorf("dig %s did not see the answer come from %s#53:\n%s", transport, controlplane.KubeDNSIP, out)
			}
		}
	})

	t.Run("glibc getent resolves the short name through the search path", func(t *testing.T) {
		out, err := w.inPod(t, "getent", "hosts", "web")
		if err != nil || !strings.HasPrefix(out, vip+" ") || !strings.Contains(out, webName) {
			t.Errorf("getent hosts web: %q, %v; want %s %s", out, err, vip, webName)
		}
	})

	t.Run("musl getaddrinfo accepts the replies (it drops any from another source)", func(t *testing.T) {
		musl := w.musl(t)
		for _, name := range []string{"web", "web." + w.ns, webName} {
			out, err := w.inPod(t, musl, name)
			if err != nil || strings.TrimSpace(out) != vip {
				t.Errorf("musl getaddrinfo %s: %q, %v; want %s", name, out, err, vip)
			}
		}
	})

	t.Run("curl by name reaches the Service", func(t *testing.T) {
		out, err := w.inPod(t, "curl", "-s", "--max-time", "5", "http://web."+w.ns+"/")
		if got := strings.TrimSpace(out); err != nil || (got != "web-a" && got != "web-b") {
			t.Errorf("curl http://web.%s/: %q, %v; want web-a or web-b", w.ns, out, err)
		}
	})

	t.Run("an answer too big for UDP comes over TCP after a truncated one", func(t *testing.T) {
		w.bigHeadlessService(t, "many")
		name := w.fqdn("many")
		udpBefore, tcpBefore := sum(w.queriesLogged("A", name, "udp")), sum(w.queriesLogged("A", name, "tcp"))
		out, err := w.inPod(t, "getent", "ahostsv4", "many")
		if n := uniqueFirstFields(out); err != nil || n != bigAnswerEndpoints {
			t.Fatalf("getent ahostsv4 many: %d addresses, %v; want %d:\n%s", n, err, bigAnswerEndpoints, out)
		}
		udp, tcp := sum(w.queriesLogged("A", name, "udp"))-udpBefore, sum(w.queriesLogged("A", name, "tcp"))-tcpBefore
		if udp < 1 || tcp < 1 {
			t.Errorf("glibc asked for %s %d times over UDP and %d over TCP; want a truncated UDP answer, then TCP", name, udp, tcp)
		}
	})

	t.Run("queries are spread over both CoreDNS pods", func(t *testing.T) {
		before := w.queriesLogged("A", webName, "udp")
		const queries = 20
		for range queries {
			if out, err := w.inPod(t, "dig", "+short", "+tries=1", "+time=3", webName); err != nil || strings.TrimSpace(out) != vip {
				t.Fatalf("dig %s: %q, %v", webName, out, err)
			}
		}
		after := w.queriesLogged("A", webName, "udp")
		perPod := []int{after[0] - before[0], after[1] - before[1]}
		if sum(perPod) != queries || perPod[0] == 0 || perPod[1] == 0 {
			t.Errorf("%d queries were answered by coredns-a %d times and coredns-b %d times; want both, %d in all", queries, perPod[0], perPod[1], queries)
		}
	})

	t.Run("CoreDNS metrics through kube-dns's metrics port, by name across namespaces", func(t *testing.T) {
		out, err := w.inPod(t, "curl", "-s", "--max-time", "5", "http://kube-dns.kube-system:9153/metrics")
		if err != nil || !strings.Contains(out, "coredns_dns_requests_total{") {
			t.Errorf("curl http://kube-dns.kube-system:9153/metrics: %v; no coredns_dns_requests_total in:\n%s", err, tail(out, 10))
		}
	})

	// Made with the test's own t: the sandbox ends every process of the
	// cluster when a host made with a subtest's t goes.
	ingress := w.ingress(t)
	t.Run("ingress: nginx behind a NodePort proxies /blog to a Service it resolves through kube-dns", func(t *testing.T) {
		ingress.check(t)
	})

	t.Run("with coredns-b deleted by kubectl every query is answered at once by coredns-a", func(t *testing.T) {
		w.deleteCoreDNSB(t)
		before := w.queriesLogged("A", webName, "udp")
		for _, transport := range []string{"+notcp", "+tcp", "+notcp", "+tcp", "+notcp"} {
			// One try of one second: a query that went to coredns-b would
			// fail rather than be retried.
			out, err := w.inPod(t, "dig", transport, "+short", "+tries=1", "+time=1", webName)
			if err != nil || strings.TrimSpace(out) != vip {
				t.Errorf("dig %s %s after the deletion: %q, %v; want %s at the first try", transport, webName, out, err, vip)
			}
		}
		if after := w.queriesLogged("A", webName, "udp"); after[0]-before[0] != 3 {
			t.Errorf("coredns-a logged %d UDP queries of the 3 sent after the deletion", after[0]-before[0])
		}
	})
}

// answers reports whether dig's output has the answer record "name. TTL
// IN A addr".
func answers(digOutput, name, addr string) bool {
	for _, line := range strings.Split(digOutput, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == name+"." && f[2] == "IN" && f[3] == "A" && f[4] == addr {
			return true
		}
	}
	return false
}

func sum(xs []int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}

// uniqueFirstFields counts the distinct first words of out's lines (the
// addresses getent ahosts prints, once per socket type).
func uniqueFirstFields(out string) int {
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if fields := strings.Fields(line); len(fields) > 0 {
			seen[fields[0]] = true
		}
	}
	return len(seen)
}

// bigHeadlessService makes a selector-less headless Service with a
// hand-made EndpointSlice of bigAnswerEndpoints ready addresses, which the
// kubernetes plugin answers with one A record each.
func (w *dnsCluster) bigHeadlessService(t *testing.T, name string) {
	t.Helper()
	var endpoints strings.Builder
	for i := range bigAnswerEndpoints {
		fmt.Fprintf(&endpoints, "- addresses: [\"10.244.%d.%d\"]\n  conditions: {ready: true}\n", 100+i/200, 10+i%200)
	}
	w.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  clusterIP: None
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-manual
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
%[2]s`, name, endpoints.String()))
}

// deleteCoreDNSB deletes the pod coredns-b with kubectl, waits for
// kube-dns's EndpointSlice to drop it and node1's maps to follow, and then
// stops its CoreDNS: a query sent now that still went to it would go
// unanswered.
func (w *dnsCluster) deleteCoreDNSB(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	started := time.Now()
	if out, err := cp.Kubectl(ctx, "-n", controlplane.KubeDNSNamespace, "delete", "pod", "coredns-b", "--force", "--grace-period=0"); err != nil {
		t.Fatalf("kubectl delete pod coredns-b: %v\n%s", err, out)
	}
	remaining := []string{w.dnsPods[0].IPv4.String() + ":53"}
	w.waitProtoFrontend(t, w.c.Nodes[0], controlplane.KubeDNSIP+":53", "UDP", remaining)
	w.waitProtoFrontend(t, w.c.Nodes[0], controlplane.KubeDNSIP+":53", "TCP", remaining)
	t.Logf("node1's maps dropped coredns-b %s after kubectl delete", time.Since(started).Round(time.Millisecond))
	out, err := cp.Kubectl(ctx, "-n", controlplane.KubeDNSNamespace, "get", "endpointslices", "-l", "kubernetes.io/service-name=kube-dns",
		"-o", "jsonpath={.items[*].endpoints[*].addresses[0]}")
	if err != nil || strings.Contains(out, w.dnsPods[1].IPv4.String()) {
		t.Errorf("kube-dns's EndpointSlice still lists coredns-b (%s): %q, %v", w.dnsPods[1].IPv4, out, err)
	}
	w.coredns[1].Kill()
}

// ingressStory is seed 003 section 2: an nginx pod on node2 behind the
// NodePort Service ingress, proxying /blog to the ClusterIP Service blog by
// name, resolved by nginx's own resolver pointed at kube-dns, reached by
// curl from the outside client through node1.
type ingressStory struct {
	w       *dnsCluster
	nginx   *sandbox.Process
	through netip.AddrPort
}

func (w *dnsCluster) ingress(t *testing.T) *ingressStory {
	t.Helper()
	w.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: blog}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ingress}
spec:
  type: NodePort
  selector: {app: ingress}
  ports: [{name: http, port: 80, targetPort: 80, nodePort: %d, protocol: TCP}]
`, ingressNodePort))
	pod := w.c.AddPod(t, 2, "ingress")
	nginx := w.startNginx(t, pod, w.fqdn("blog"))
	_, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
		Namespace: w.ns, Name: "ingress", Labels: map[string]string{"app": "ingress"}, NodeName: "node2", IP: pod.IPv4.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	through := netip.AddrPortFrom(w.c.Nodes[0].IPv4, ingressNodePort)
	w.waitFrontends(t, w.c.Nodes[0], map[string][]string{through.String(): addrs(80, pod)})
	return &ingressStory{w: w, nginx: nginx, through: through}
}

// check curls /blog from the outside client six times.
func (s *ingressStory) check(t *testing.T) {
	w, nginx, through := s.w, s.nginx, s.through
	blogBefore := sum(w.queriesLogged("A", w.fqdn("blog"), "udp"))
	got := map[string]int{}
	for range 6 {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		out, err := w.c.Run(t, ctx, w.c.Client, false, "curl", "-s", "--max-time", "5", "http://"+through.String()+"/blog")
		cancel()
		if err != nil {
			t.Fatalf("curl http://%s/blog from outside: %v\nnginx:\n%s", through, err, nginx.Stderr())
		}
		got[strings.TrimSpace(out)]++
	}
	if got["web-a"]+got["web-b"] != 6 {
		t.Errorf("curl http://%s/blog six times from outside: %v; want web-a and web-b only\nnginx:\n%s", through, got, nginx.Stderr())
	}
	if sum(w.queriesLogged("A", w.fqdn("blog"), "udp")) == blogBefore {
		t.Errorf("nginx never asked kube-dns for %s", w.fqdn("blog"))
	}
}

// startNginx runs Debian's nginx on pod in its node's cgroup (its resolver
// and its upstream connects meet socklb) as the seed's ingress: /blog goes
// to http://<upstream>:80, upstream resolved per request through kube-dns.
func (w *dnsCluster) startNginx(t *testing.T, pod *sandbox.Host, upstream string) *sandbox.Process {
	t.Helper()
	dir := filepath.Join(w.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(ingressNginxConf(dir, upstream)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := w.c.Start(t, pod, true, "nginx", "-p", dir, "-c", conf, "-e", "stderr")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		out, err := w.c.Run(t, ctx, pod, false, "curl", "-s", "--max-time", "2", "http://127.0.0.1/")
		cancel()
		if err == nil && strings.Contains(out, "no route") {
			return p
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("nginx did not answer on %s's 127.0.0.1:80 (%q, %v):\n%s", pod.Name, out, err, p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ingressNginxConf is nginx.conf for startNginx: a variable in proxy_pass
// makes nginx resolve the name at request time with its own resolver
// instead of once through the libc at startup.
func ingressNginxConf(dir, upstream string) string {
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    resolver %[2]s valid=5s ipv6=off;
    resolver_timeout 3s;
    server {
        listen 80;
        location /blog {
            set $blog %[3]s;
            proxy_pass http://$blog:80;
        }
        location / { return 404 "no route\n"; }
    }
}
`, dir, controlplane.KubeDNSIP, upstream)
}
