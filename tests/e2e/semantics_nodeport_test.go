package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
)

// sessionAffinity for clients outside the node (XDP): the client is its
// source address, so every new flow from it, whichever source port, reaches
// one backend; the entry names the address, not a network namespace.
func TestSessionAffinityFromOutside(t *testing.T) {
	w := newNSWorld(t)
	node1 := w.c.Nodes[0]
	sticky := `apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.60
  clusterIPs: [10.96.0.60]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30095}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: sticky-1
  namespace: default
  labels: {kubernetes.io/service-name: sticky}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
endpoints:
` + endpointYAML(w.webA, "node1") + endpointYAML(w.webB, "node2")
	if err := os.WriteFile(filepath.Join(w.dir, "sticky.yaml"), []byte(sticky), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend := netip.AddrPortFrom(node1.IPv4, 30095).String()
	view := w.waitFrontend(t, node1, frontend, "TCP", 2)

	rs := w.probeFrom(t, w.c.Client, false, "tcp", "--addr", frontend, "--count", "30")
	if got, failed := backendCounts(rs); failed > 0 || len(got) != 1 {
		t.Errorf("30 connects from one outside client: %v, %d failed; want one backend", got, failed)
	}
	// Without affinity the same client spreads over both (the web Service).
	rs = w.probeFrom(t, w.c.Client, false, "tcp", "--addr", netip.AddrPortFrom(node1.IPv4, 30080).String(), "--count", "30")
	if got, failed := backendCounts(rs); failed > 0 || len(got) != 2 {
		t.Errorf("30 connects to a Service without affinity: %v, %d failed; want both pods", got, failed)
	}

	m, err := ebpf.LoadPinnedMap(filepath.Join(node1.PinDir, lbmap.AffinityMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var clients []string
	var k lbmap.AffinityKey
	var v lbmap.AffinityValue
	for it := m.Iterate(); it.Next(&k, &v); {
		if k.ServiceId == view.ServiceID {
			if k.NetnsCookie != 0 {
				t.Errorf("an outside client's entry has netns cookie %d, want 0", k.NetnsCookie)
			}
			clients = append(clients, netip.AddrFrom16(k.Client).Unmap().String())
		}
	}
	if len(clients) != 1 || clients[0] != w.c.Client.IPv4.String() {
		t.Errorf("affinity entries of the NodePort: clients %v, want the outside client %s only", clients, w.c.Client.IPv4)
	}
}
