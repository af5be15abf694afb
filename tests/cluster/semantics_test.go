//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

// sessionAffinity ClientIP set and unset with kubectl: while set, every
// connect of the client pod reaches one backend; once unset, they spread.
func TestSessionAffinityByKubectl(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 3)
	w.apply(t, `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
`)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	waitFlags(t, w, vip+":80", "Affinity", true)
	if seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "40"); len(seen) != 1 {
		t.Errorf("40 connects with sessionAffinity ClientIP reached %v, want one pod", seen)
	}

	w.kubectl(t, "patch", "service", "web", "--type", "merge", "-p", `{"spec":{"sessionAffinity":"None"}}`)
	waitFlags(t, w, vip+":80", "Affinity", false)
	if seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "60"); len(seen) != 3 {
		t.Errorf("60 connects after sessionAffinity None reached %v, want all three pods", seen)
	}
}

// waitFlags waits until the frontend's master flags have (or lack) flag.
func waitFlags(t *testing.T, w *world, frontend, flag string, want bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		views, err := w.sb.InspectServices(t, w.socklb)
		if err == nil {
			for _, v := range views {
				if v.Frontend == frontend && v.Protocol == "TCP" {
					last = v.Flags
					if has := containsFlag(v.Flags, flag); has == want {
						return
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("frontend %s: flags %q, want %s present=%t", frontend, last, flag, want)
}

func containsFlag(flags, flag string) bool {
	return slices.Contains(strings.Split(flags, "|"), flag)
}

// internalTrafficPolicy Local with kubectl: pods on this node and on
// another (the endpointslice controller writes their nodeName); only the
// local ones serve, and with none left the connect is refused at once.
func TestInternalTrafficPolicyByKubectl(t *testing.T) {
	w := newWorld(t)
	local := w.deployment(t, 2)
	remote := w.sb.AddPod(t, "web-remote")
	w.sb.StartNameServer(t, remote, []int{8080}, []int{5353})
	if _, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
		Namespace: w.ns, Name: "web-remote", Labels: map[string]string{"app": "web"}, NodeName: clusterNodeNames[0], IP: remote.IPv4.String(),
		ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
	}); err != nil {
		t.Fatal(err)
	}
	w.apply(t, webService)
	vip := w.clusterIP(t, "web")
	all := append([]*sandbox.Host{remote}, local...)
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, all...)...)

	w.kubectl(t, "patch", "service", "web", "--type", "merge", "-p", `{"spec":{"internalTrafficPolicy":"Local"}}`)
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, local...)...)
	if seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "40"); len(seen) != 2 || seen["web-remote"] != 0 {
		t.Errorf("40 connects with internalTrafficPolicy Local reached %v, want the two local pods only", seen)
	}

	for _, p := range []string{"web-a", "web-b"} {
		if err := controlplane.DeletePod(t.Context(), w.client, w.ns, p, true); err != nil {
			t.Fatal(err)
		}
	}
	w.waitFrontend(t, vip+":80", "TCP")
	rs := w.sb.Probe(t, w.peer, true, "tcp", "--addr", vip+":80", "--count", "1", "--timeout", "3s")
	if len(rs) != 1 || rs[0].OK || rs[0].Errno != "ECONNREFUSED" || rs[0].DurUS > 500_000 {
		t.Errorf("a connect with no local endpoint: %+v, want ECONNREFUSED at once", rs)
	}
}

// An address of the cluster's ServiceCIDR (the API server's "kubernetes"
// ServiceCIDR object) that no Service holds is refused at once.
func TestUnallocatedClusterIPRefused(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 1)
	w.apply(t, webService)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	cidr, err := w.client.NetworkingV1().ServiceCIDRs().Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the API server's ServiceCIDR: %v", err)
	}
	prefix := netip.MustParsePrefix(cidr.Spec.CIDRs[0])
	if err := w.agentLogWait(prefix.Masked().String(), 20*time.Second); err != nil {
		t.Fatalf("the agent never read ServiceCIDR %s: %v", prefix, err)
	}
	// The range's last address but one: the allocator picks at random, and a
	// test namespace holds a Service or two.
	last := netip.PrefixFrom(prefix.Addr(), prefix.Bits()).Masked().Addr()
	for range (1 << (prefix.Addr().BitLen() - prefix.Bits())) - 2 {
		last = last.Next()
	}
	for _, tc := range []struct{ name, mode, addr string }{
		{"a wrong port of the ClusterIP", "tcp", vip + ":81"},
		{"UDP to the ClusterIP's TCP port", "udp", vip + ":80"},
		{"TCP to an unallocated address", "tcp", netip.AddrPortFrom(last, 80).String()},
		{"UDP to an unallocated address", "udp", netip.AddrPortFrom(last, 53).String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := w.sb.Probe(t, w.peer, true, tc.mode, "--addr", tc.addr, "--count", "1", "--timeout", "3s")
			if len(rs) != 1 || rs[0].OK || rs[0].Errno != "ECONNREFUSED" || rs[0].DurUS > 500_000 {
				t.Errorf("%s: %+v, want ECONNREFUSED at once", tc.addr, rs)
			}
		})
	}
}

// agentLogWait waits until the agent's log holds substr.
func (w *world) agentLogWait(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(w.agent.Log(), substr) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no %q in the agent log after %s", substr, timeout)
}

// trafficDistribution with kubectl: the EndpointSlice controller hints each
// endpoint for its Node's zone, and the agent, whose Node is labelled
// zone-a, uses the zone-a endpoints only; without trafficDistribution the
// hints go and every endpoint serves.
func TestTrafficDistributionByKubectl(t *testing.T) {
	w := newWorld(t)
	zones := map[string]string{nodeName: "zone-a", clusterNodeNames[0]: "zone-b"}
	for node, zone := range zones {
		w.kubectl(t, "label", "node", node, corev1.LabelTopologyZone+"="+zone, "--overwrite")
	}
	t.Cleanup(func() {
		for node := range zones {
			_, _ = cp.Kubectl(context.Background(), "label", "node", node, corev1.LabelTopologyZone+"-")
		}
	})
	local := w.deployment(t, 2)
	remote := w.sb.AddPod(t, "web-remote")
	w.sb.StartNameServer(t, remote, []int{8080}, []int{5353})
	if _, err := controlplane.CreatePod(t.Context(), w.client, controlplane.PodSpec{
		Namespace: w.ns, Name: "web-remote", Labels: map[string]string{"app": "web"}, NodeName: clusterNodeNames[0], IP: remote.IPv4.String(),
		ContainerPorts: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
	}); err != nil {
		t.Fatal(err)
	}
	w.apply(t, `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  trafficDistribution: PreferSameZone
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
`)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, local...)...)
	if seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "40"); len(seen) != 2 || seen["web-remote"] != 0 {
		t.Errorf("40 connects with PreferSameZone reached %v, want the two zone-a pods", seen)
	}

	w.kubectl(t, "patch", "service", "web", "--type", "merge", "-p", `{"spec":{"trafficDistribution":null}}`)
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, append([]*sandbox.Host{remote}, local...)...)...)
}
