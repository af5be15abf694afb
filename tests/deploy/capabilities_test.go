//go:build controlplane

package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/socklb/socklb/tests/sandbox"
)

// capabilityNeed is why the DaemonSet adds a capability, and on which
// kernels the agent fails to bring up its datapath without it.
type capabilityNeed struct {
	why      string
	neededOn func(kernel kernelVersion) bool
}

// capabilityNeeds explains every capability the manifest may add; one the
// manifest adds without an entry here fails the test, so the list cannot
// grow unexplained.
var capabilityNeeds = map[string]capabilityNeed{
	"BPF":       {"bpf(): the maps and the programs", always},
	"NET_ADMIN": {"loading and attaching socket, XDP and tc programs", always},
	"PERFMON":   {"the verifier's permission for the XDP and tc programs' pointer arithmetic", always},
	// Measured with RLIMIT_MEMLOCK capped (prlimit, as a runtime that does
	// not lift it leaves it): from 5.11 BPF memory is charged to the memory
	// cgroup and the agent leaves the limit alone.
	"SYS_RESOURCE": {"lifting RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF memory to", kernelBefore(5, 11)},
}

type kernelVersion struct{ major, minor int }

func (v kernelVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func always(kernelVersion) bool { return true }

func kernelBefore(major, minor int) func(kernelVersion) bool {
	return func(v kernelVersion) bool { return v.major < major || v.major == major && v.minor < minor }
}

// The DaemonSet's capabilities, read from the rendered manifest, are all the
// agent needs: with exactly those (uid 0, no others, no new privileges, the
// cgroup2 mount read-only, RLIMIT_MEMLOCK capped: a pod's view) it loads,
// attaches and syncs, a pod reaches a ClusterIP and the outside a NodePort,
// and `socklb inspect` and `socklb cleanup` work. Each one left out breaks
// the agent on the kernels its need names.
func TestCapabilities(t *testing.T) {
	caps := manifestCapabilities(t, readPlainManifest(t))
	for _, c := range caps {
		if _, ok := capabilityNeeds[c]; !ok {
			t.Errorf("the manifest adds CAP_%s, which capabilityNeeds does not explain: add why the agent needs it", c)
		}
	}
	sandbox.Require(t)
	for _, tool := range []string{"setpriv", "prlimit", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s (util-linux): %v", tool, err)
		}
	}
	kernel := runningKernel(t)
	type capCase struct {
		name      string
		caps      []string
		wantsWork bool
	}
	cases := []capCase{{name: "the manifest's capabilities " + strings.Join(caps, ","), caps: caps, wantsWork: true}}
	for _, c := range caps {
		need, ok := capabilityNeeds[c]
		if !ok {
			continue
		}
		cases = append(cases, capCase{
			name:      fmt.Sprintf("without CAP_%s (%s)", c, need.why),
			caps:      slices.DeleteFunc(slices.Clone(caps), func(other string) bool { return other == c }),
			wantsWork: !need.neededOn(kernel),
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newCapNode(t, tc.caps)
			synced, detail := n.startAgent(t)
			switch {
			case synced && !tc.wantsWork:
				t.Fatalf("the agent synced on kernel %s without the capability, which the manifest says it needs here", kernel)
			case !synced && tc.wantsWork:
				t.Fatalf("the agent did not come up with capabilities %v on kernel %s: %s", tc.caps, kernel, detail)
			case !synced:
				t.Logf("refused as expected: %s", detail)
				return
			}
			if len(tc.caps) == len(caps) {
				n.checkDatapath(t)
				n.checkTools(t)
			}
		})
	}
}

// manifestCapabilities are the capabilities the agent's container adds,
// after checking that it drops every other one and is not privileged.
func manifestCapabilities(t *testing.T, m manifests) []string {
	t.Helper()
	sc := m.agent(t).SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("the agent's container has no capabilities in its securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Fatalf("the agent's container is privileged: the capabilities are meaningless then")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("the agent's container drops %v, want ALL (the runtime's defaults would add more)", sc.Capabilities.Drop)
	}
	var caps []string
	for _, c := range sc.Capabilities.Add {
		caps = append(caps, strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_"))
	}
	if len(caps) == 0 {
		t.Fatalf("the agent's container adds no capabilities")
	}
	return caps
}

func runningKernel(t *testing.T) kernelVersion {
	t.Helper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var v kernelVersion
	if _, err := fmt.Sscanf(release, "%d.%d", &v.major, &v.minor); err != nil {
		t.Fatalf("parsing the kernel release %q: %v", release, err)
	}
	return v
}

// capNode is a one-node sandbox cluster with a backend pod, a client pod
// and a NodePort Service, where socklb runs with only caps.
type capNode struct {
	c        *sandbox.Cluster
	node     *sandbox.ClusterNode
	web      *sandbox.Host
	client   *sandbox.Host
	socklb   string
	caps     []string
	objects  string
	cgroupRO string // where the node's cgroup is mounted read-only for the agent
	agent    *sandbox.Process
}

const (
	capClusterIP = "10.96.0.50"
	capNodePort  = 30080
)

func newCapNode(t *testing.T, caps []string) *capNode {
	t.Helper()
	c := sandbox.NewCluster(t, 1)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg, sandbox.SockProbePkg)
	n := &capNode{c: c, node: c.Node(t, 1), socklb: bins[socklbPkg], caps: caps, objects: t.TempDir()}
	n.web = c.AddPod(t, 1, "web")
	n.client = c.AddPod(t, 1, "client")
	c.StartNameServer(t, n.web, []int{8080}, nil)
	n.cgroupRO = filepath.Join(t.TempDir(), "cgroupv2")
	if err := os.Mkdir(n.cgroupRO, 0o755); err != nil {
		t.Fatal(err)
	}
	objects := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: %s
  clusterIPs: [%s]
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: %d}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
endpoints:
- addresses: [%q]
  nodeName: %s
  conditions: {ready: true}
`, capClusterIP, capClusterIP, capNodePort, n.web.IPv4, n.node.Host.Name)
	if err := os.WriteFile(filepath.Join(n.objects, "web.yaml"), []byte(objects), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// asPod is argv run the way the DaemonSet's container runs it: in a mount
// namespace of its own with the node's cgroup mounted read-only (as the
// manifest's cgroup2 volume), RLIMIT_MEMLOCK capped at 64 KiB, uid 0 with
// only n.caps (bounding, permitted and effective sets), no ambient or
// inheritable ones, and no new privileges.
func (n *capNode) asPod(argv ...string) []string {
	var capList []string
	for _, c := range n.caps {
		capList = append(capList, "+"+strings.ToLower(c))
	}
	bounding := "-all"
	if len(capList) > 0 {
		bounding += "," + strings.Join(capList, ",")
	}
	const mountCgroup = `mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"`
	return append([]string{
		"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", mountCgroup, "sh", n.node.Cgroup, n.cgroupRO,
		"prlimit", "--memlock=65536:65536", "--",
		"setpriv", "--bounding-set=" + bounding, "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--",
	}, argv...)
}

// startAgent starts the agent as a pod would run it and waits until it has
// synced (true) or exited or given up (false, with what it said last).
func (n *capNode) startAgent(t *testing.T) (synced bool, detail string) {
	t.Helper()
	n.agent = n.c.Start(t, n.node.Host, false, n.asPod(n.socklb, "agent",
		"--from-dir", n.objects, "--cgroup", n.cgroupRO, "--bpffs", n.node.PinDir,
		"--node-name", n.node.Host.Name, "--devices", "eth0", "--xdp-mode", "generic")...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", n.agent.Stderr())
		}
	})
	err := n.agent.WaitStderr(`"msg":"synced"`, 30*time.Second)
	if err == nil {
		return true, ""
	}
	last := errorLine(n.agent.Stderr())
	if !n.agent.Exited() {
		return false, "no sync within 30 s; last line: " + last
	}
	return false, fmt.Sprintf("exited (%v): %s", n.agent.Wait(), last)
}

// checkDatapath checks that what the agent attached translates: a pod's
// connect to the ClusterIP and an outside client's to the NodePort.
func (n *capNode) checkDatapath(t *testing.T) {
	t.Helper()
	probes := []struct {
		name     string
		from     *sandbox.Host
		inCgroup bool
		addr     string
	}{
		{"pod to ClusterIP", n.client, true, fmt.Sprintf("%s:80", capClusterIP)},
		{"outside client to NodePort", n.c.Client, false, fmt.Sprintf("%s:%d", n.node.IPv4, capNodePort)},
	}
	for _, p := range probes {
		rs := n.c.Probe(t, p.from, p.inCgroup, "tcp", "--addr", p.addr, "--count", "3")
		if seen := sandbox.RequireAllOK(t, rs); seen[n.web.Name] != 3 {
			t.Errorf("%s (%s): 3 connects reached %v, want web every time", p.name, p.addr, seen)
		}
	}
}

// checkTools runs `socklb inspect` and then, with the agent stopped,
// `socklb cleanup` with the same capabilities, as `kubectl exec` into the
// agent's pod would.
func (n *capNode) checkTools(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := n.c.Run(t, ctx, n.node.Host, false, n.asPod(n.socklb, "inspect", "services", "--bpffs", n.node.PinDir)...)
	if err != nil {
		t.Fatalf("socklb inspect with the manifest's capabilities: %v", err)
	}
	if !strings.Contains(out, capClusterIP+":80") {
		t.Errorf("socklb inspect services shows no %s:80:\n%s", capClusterIP, out)
	}
	n.agent.Kill()
	if _, err := n.c.Run(t, ctx, n.node.Host, false, n.asPod(n.socklb, "cleanup", "--bpffs", n.node.PinDir, "--cgroup", n.cgroupRO)...); err != nil {
		t.Fatalf("socklb cleanup with the manifest's capabilities: %v", err)
	}
	if _, err := os.Stat(n.node.PinDir); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(n.node.PinDir)
		t.Errorf("after socklb cleanup the pin directory %s is still there (stat: %v, entries: %d)", n.node.PinDir, err, len(entries))
	}
}

// errorLine is the agent's "socklb: ..." error line (its exit message, which
// a verifier log may follow), else its last line.
func errorLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, line := range lines {
		if strings.HasPrefix(line, "socklb: ") {
			first, _, _ := strings.Cut(line, "\n")
			return first
		}
	}
	return lines[len(lines)-1]
}
