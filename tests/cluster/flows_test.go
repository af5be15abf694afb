//go:build cluster

package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

func sortStrings(s []string) { slices.Sort(s) }

// webService is seed 002's nginx-service: port 80 to the pods' named port
// "http" (8080), resolved by the real endpointslice controller.
const webService = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
`

// deployment makes n "replicas" labelled app=web.
func (w *world) deployment(t *testing.T, n int) []*sandbox.Host {
	t.Helper()
	var pods []*sandbox.Host
	for i := range n {
		pods = append(pods, w.addPod(t, fmt.Sprintf("web-%c", 'a'+i), map[string]string{"app": "web"}))
	}
	return pods
}

// sliceAddresses is what `kubectl get endpointslices` says the Service's
// ready endpoints are.
func (w *world) sliceAddresses(t *testing.T, service string) []string {
	t.Helper()
	var list struct {
		Items []struct {
			Ports     []struct{ Port int } `json:"ports"`
			Endpoints []struct {
				Addresses  []string `json:"addresses"`
				Conditions struct {
					Ready *bool `json:"ready"`
				} `json:"conditions"`
			} `json:"endpoints"`
		} `json:"items"`
	}
	out := w.kubectl(t, "get", "endpointslices", "-l", "kubernetes.io/service-name="+service, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				for _, p := range s.Ports {
					addrs = append(addrs, fmt.Sprintf("%s:%d", ep.Addresses[0], p.Port))
				}
			}
		}
	}
	slices.Sort(addrs)
	return addrs
}

// Seed 002: a Deployment-like set of three pods behind a ClusterIP Service.
// curl to the ClusterIP reaches all three; kubectl and socklb inspect agree.
// Then seed 003: scaled to two, the removed pod gets no new connection.
func TestDeploymentScaleDown(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 3)
	w.apply(t, webService)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	if got, want := w.sliceAddresses(t, "web"), addrs(8080, pods...); !slices.Equal(got, want) {
		t.Errorf("kubectl get endpointslices says %v, socklb inspect says %v", got, want)
	}
	seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "60")
	if len(seen) != 3 {
		t.Errorf("60 connects to the ClusterIP reached %v, want all three pods", seen)
	}

	// Scale to two: the pod is deleted; with no kubelet it stays terminating.
	if err := controlplane.DeletePod(t.Context(), w.client, w.ns, "web-c", false); err != nil {
		t.Fatal(err)
	}
	w.waitFrontend(t, vip+":80", "TCP", append(addrs(8080, pods[:2]...), "|", addrs(8080, pods[2])[0])...)
	seen = w.probe(t, "tcp", "--addr", vip+":80", "--count", "60")
	if seen["web-c"] != 0 || len(seen) != 2 {
		t.Errorf("after scaling to two, connects reached %v; the removed web-c must get none", seen)
	}
}

// A failing readiness probe takes a pod out of the backend set; passing
// again brings it back.
func TestReadiness(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 3)
	w.apply(t, webService)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	steps := []struct {
		desc  string
		ready bool
		want  []*sandbox.Host
	}{
		{"web-b not ready leaves the set", false, []*sandbox.Host{pods[0], pods[2]}},
		{"web-b ready again returns", true, pods},
	}
	for _, st := range steps {
		if err := controlplane.SetPodReady(t.Context(), w.client, w.ns, "web-b", st.ready); err != nil {
			t.Fatal(err)
		}
		w.waitFrontend(t, vip+":80", "TCP", addrs(8080, st.want...)...)
		seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "45")
		if len(seen) != len(st.want) || (!st.ready && seen["web-b"] != 0) {
			t.Errorf("%s: connects reached %v", st.desc, seen)
		}
	}
}

// Seed 003 §1.5: a selector-less Service with a hand-made Endpoints object
// pointing at an external host; the mirroring controller makes the slice.
// Replacing the IP moves a running client's new connections.
func TestSelectorlessServiceWithEndpoints(t *testing.T) {
	w := newWorld(t)
	extA := w.addPod(t, "ext-a", nil)
	extB := w.addPod(t, "ext-b", nil)
	manifest := func(ip string) string {
		return `apiVersion: v1
kind: Service
metadata: {name: external-db}
spec:
  ports: [{name: db, port: 5432, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: external-db}
subsets:
- addresses: [{ip: "` + ip + `"}]
  ports: [{name: db, port: 8080, protocol: TCP}]
`
	}
	w.apply(t, manifest(extA.IPv4.String()))
	vip := w.clusterIP(t, "external-db")
	w.waitFrontend(t, vip+":5432", "TCP", addrs(8080, extA)...)
	if seen := w.probe(t, "tcp", "--addr", vip+":5432", "--count", "5"); seen["ext-a"] != 5 {
		t.Fatalf("the Service name's ClusterIP reached %v, want the external host ext-a", seen)
	}

	// A client that keeps connecting across the change, never restarted.
	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	loop := w.sb.Start(t, w.peer, true, bin, "tcp-loop", "--addr", vip+":5432", "--duration", "6s", "--max", "5000", "--interval", "5ms")
	time.Sleep(2 * time.Second)
	w.apply(t, manifest(extB.IPv4.String()))
	w.waitFrontend(t, vip+":5432", "TCP", addrs(8080, extB)...)
	<-loop.Done()
	sum, err := sandbox.ParseLoopSummary(loop.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failures != 0 || sum.Backends["ext-a"] == 0 || sum.Backends["ext-b"] == 0 {
		t.Errorf("running client across the IP change: %+v; want no failure, ext-a then ext-b", sum)
	}
	if seen := w.probe(t, "tcp", "--addr", vip+":5432", "--count", "5"); seen["ext-b"] != 5 {
		t.Errorf("after the change, connects reached %v, want only ext-b", seen)
	}
}

// ExternalName and headless Services have no virtual IP: nothing is
// programmed for them, nothing breaks, and the other Services work.
func TestExternalNameAndHeadless(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 1)
	w.apply(t, webService+`---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec: {type: ExternalName, externalName: db.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
`)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	// The headless Service's slice exists, yet programs nothing.
	if got := w.sliceAddresses(t, "headless"); len(got) != 1 {
		t.Fatalf("headless Service slices list %v, want the one pod", got)
	}
	views, err := w.sb.InspectServices(t, w.socklb)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if strings.Contains(v.Service, w.ns+"/alias") || strings.Contains(v.Service, w.ns+"/headless") {
			t.Errorf("a Service without a virtual IP was programmed: %+v", v)
		}
	}
	if seen := w.probe(t, "tcp", "--addr", vip+":80", "--count", "5"); seen["web-a"] != 5 {
		t.Errorf("the ClusterIP Service beside them reached %v", seen)
	}
	if log := w.agent.Log(); strings.Contains(log, `"bad object"`) && strings.Contains(log, w.ns+"/") {
		t.Errorf("the agent complained about this namespace's objects:\n%s", log)
	}
}

// The API server goes away for 30 seconds: established traffic and new
// connects keep working throughout, and a change made after it returns is
// applied. The agent reconnects by itself.
func TestAPIServerOutage(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 2)
	w.apply(t, webService+`---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  selector: {app: web}
  ports: [{name: dns, port: 53, targetPort: 5353, protocol: UDP}]
`)
	vip := w.clusterIP(t, "web")
	dnsVIP := w.clusterIP(t, "dns")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	w.waitFrontend(t, dnsVIP+":53", "UDP", addrs(5353, pods...)...)

	bin := sandbox.Binaries(t, sandbox.SockProbePkg)[sandbox.SockProbePkg]
	// Established: one connected UDP socket exchanging every 250 ms.
	established := w.sb.Start(t, w.peer, true, bin, "udp-connected", "--addr", dnsVIP+":53", "--count", "150", "--interval", "250ms")
	// New connects: a bounded loop.
	connects := w.sb.Start(t, w.peer, true, bin, "tcp-loop", "--addr", vip+":80", "--duration", "36s", "--max", "20000", "--interval", "20ms")

	time.Sleep(2 * time.Second)
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(30 * time.Second)
	if err := cp.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server was away, until the controller-manager watched again, for %s", time.Since(stopped).Round(time.Second))

	<-connects.Done()
	<-established.Done()
	sum, err := sandbox.ParseLoopSummary(connects.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failures != 0 || sum.Attempts < 500 {
		t.Errorf("new connects during the outage: %d attempts, %d failures (%s)", sum.Attempts, sum.Failures, sum.FirstErr)
	}
	rs, err := sandbox.ProbeResults(established.Stdout())
	if err != nil {
		t.Fatal(err)
	}
	if seen := sandbox.RequireAllOK(t, rs); len(rs) != 150 || len(seen) != 1 {
		t.Errorf("established UDP exchange across the outage: %d answers from %v; want 150 from one backend", len(rs), seen)
	}

	// A change after the outage is applied: the agent reconnected.
	changed := time.Now()
	if err := controlplane.SetPodReady(t.Context(), w.client, w.ns, "web-a", false); err != nil {
		t.Fatal(err)
	}
	for time.Since(changed) < 90*time.Second && !slices.Equal(w.sliceAddresses(t, "web"), addrs(8080, pods[1])) {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the endpointslice controller published the change %s after it was made", time.Since(changed).Round(time.Millisecond))
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods[1])...)
	t.Logf("socklb applied it %s after it was made", time.Since(changed).Round(time.Millisecond))
}
