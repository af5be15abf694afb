package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/maglev"
	"github.com/socklb/socklb/tests/sandbox"
)

// maglevWorld is two nodes with agents, three UDP backends (web-a on node1,
// web-b and web-c on node2) behind a LoadBalancer IP annotated for Maglev,
// and an outside client routed to the LoadBalancer IP through node1.
type maglevWorld struct {
	c    *sandbox.Cluster
	dir  string
	pods []*sandbox.Host
}

const maglevLB = "203.0.113.17"

func newMaglevWorld(t *testing.T) *maglevWorld {
	t.Helper()
	c := sandbox.NewCluster(t, 2)
	bins := sandbox.Binaries(t, socklbPkg, sandbox.NameSrvPkg)
	w := &maglevWorld{c: c, dir: t.TempDir()}
	for i, name := range []string{"web-a", "web-b", "web-c"} {
		h := c.AddPod(t, min(i+1, 2), name)
		p := c.Start(t, h, false, bins[sandbox.NameSrvPkg], "--name", name, "--udp", "[::]:5353")
		if err := p.WaitOutput("ready", 10*time.Second); err != nil {
			t.Fatalf("namesrv on %s: %v", name, err)
		}
		w.pods = append(w.pods, h)
	}
	c.RouteVia(t, netip.MustParsePrefix(maglevLB+"/31"), 1)
	w.write(t, w.pods...)
	for _, n := range c.Nodes {
		a := c.Start(t, n.Host, false, bins[socklbPkg], "agent", "--from-dir", w.dir,
			"--cgroup", n.Cgroup, "--bpffs", n.PinDir, "--node-name", n.Host.Name,
			"--devices", "eth0", "--xdp-mode", "generic", "--log-level", "debug")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent on %s:\n%s", n.Host.Name, a.Stderr())
			}
		})
	}
	w.waitBackends(t, len(w.pods))
	return w
}

// write makes the Service's slice hold eps.
func (w *maglevWorld) write(t *testing.T, eps ...*sandbox.Host) {
	t.Helper()
	var b strings.Builder
	for _, h := range eps {
		node := "node1"
		if strings.Contains(h.Netns, "node2") {
			node = "node2"
		}
		b.WriteString(endpointYAML(h, node))
	}
	objects := `apiVersion: v1
kind: Service
metadata:
  name: dns
  namespace: default
  annotations: {socklb.io/lb-algorithm: maglev}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.60
  clusterIPs: [10.96.0.60]
  ports:
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP, nodePort: 30053}
status:
  loadBalancer:
    ingress: [{ip: ` + maglevLB + `}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: default
  labels: {kubernetes.io/service-name: dns}
addressType: IPv4
ports:
- {name: dns, port: 5353, protocol: UDP}
endpoints:
` + b.String()
	tmp := filepath.Join(w.dir, ".objects.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(objects), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, "objects.yaml")); err != nil {
		t.Fatal(err)
	}
}

// waitBackends waits until both nodes' Maglev tables name n backends: the
// writer runs right after the sync that changed the slots.
func (w *maglevWorld) waitBackends(t *testing.T, n int) {
	t.Helper()
	for _, node := range w.c.Nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := tableBackends(node.PinDir)
			if err == nil && got == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the Maglev table never named %d backends (last: %d, %v)", node.Host.Name, n, got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// tableBackends counts the distinct slots of the LoadBalancer frontend's
// Maglev table pinned under pinDir.
func tableBackends(pinDir string) (int, error) {
	services, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, lbmap.ServicesMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer services.Close()
	var master lbmap.ServiceValue
	if err := services.Lookup(lbmap.NewServiceKey(netip.MustParseAddr(maglevLB), 53, 17, lbmap.ScopeDefault, 0), &master); err != nil {
		return 0, fmt.Errorf("the frontend's master entry: %w", err)
	}
	outer, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, lbmap.MaglevMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer outer.Close()
	var innerID ebpf.MapID
	if err := outer.Lookup(master.ServiceId, &innerID); err != nil {
		return 0, fmt.Errorf("the frontend's table: %w", err)
	}
	inner, err := ebpf.NewMapFromID(innerID)
	if err != nil {
		return 0, err
	}
	defer inner.Close()
	_, slots, err := lbmap.Dump[uint32, uint32](inner)
	if err != nil {
		return 0, err
	}
	seen := map[uint32]bool{}
	for _, s := range slots[1:] { // element 0 is the size
		seen[s] = true
	}
	return len(seen), nil
}

// flushFlows empties a node's connection table, as if the flows were new
// to it: the next packet of each is balanced afresh.
func flushFlows(t *testing.T, n *sandbox.ClusterNode) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(n.PinDir, lbmap.NatMap), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys, _, err := lbmap.Dump[lbmap.FlowKey, lbmap.Flow](m)
	if err != nil {
		t.Fatal(err)
	}
	if errs := lbmap.Delete(m, keys); len(errs) > 0 {
		t.Fatal(errs[0])
	}
}

// ask sends one datagram to the LoadBalancer IP from the client's sport
// and returns the name of the backend that answered.
func (w *maglevWorld) ask(t *testing.T, sport uint16) string {
	t.Helper()
	var conn *net.UDPConn
	err := w.c.Client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(w.c.Client.IPv4, sport)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := netip.MustParseAddrPort(maglevLB + ":53")
	buf := make([]byte, 2048)
	for range 3 {
		if _, err := conn.WriteToUDPAddrPort([]byte("maglev\n"), dst); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
			line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
			return strings.TrimSpace(string(line))
		}
	}
	t.Fatalf("no answer from %s to client port %d after 3 tries", dst, sport)
	return ""
}

// predicted is the backend pkg/maglev's table gives the flow from sport:
// what every node must pick.
func (w *maglevWorld) predicted(sport uint16, backends []*sandbox.Host) string {
	names := make([]string, 0, len(backends))
	byName := map[string]string{}
	for _, h := range backends {
		n := netip.AddrPortFrom(h.IPv4, 5353).String()
		names = append(names, n)
		byName[n] = h.Name
	}
	slices.Sort(names)
	table := maglev.Table(names, maglev.DefaultSize)
	key := lbmap.NewFlowKey(netip.AddrPortFrom(w.c.Client.IPv4, sport), netip.MustParseAddrPort(maglevLB+":53"), 17, lbmap.FlowForward)
	return byName[names[table[maglev.FlowHash(key)%uint64(len(table))]]]
}

// Outside flows to a Maglev Service go where pkg/maglev's table says, on
// any node; a change that keeps a flow's backend keeps the flow there even
// with the node's connection table emptied; and another node, with no
// state shared, picks the same backends.
func TestMaglevFromOutside(t *testing.T) {
	w := newMaglevWorld(t)
	node1, node2 := w.c.Nodes[0], w.c.Nodes[1]
	ports := make([]uint16, 24)
	for i := range ports {
		ports[i] = uint16(41000 + i)
	}
	first := map[uint16]string{}
	t.Run("each flow goes where the table says", func(t *testing.T) {
		seen := map[string]int{}
		for _, p := range ports {
			got, want := w.ask(t, p), w.predicted(p, w.pods)
			if got != want {
				t.Errorf("flow from port %d reached %s, the table says %s", p, got, want)
			}
			first[p] = got
			seen[got]++
		}
		if len(seen) != 3 {
			t.Errorf("24 flows reached %v, want all three backends", seen)
		}
	})

	kept := w.pods[:2]
	w.write(t, kept...)
	w.waitBackends(t, 2)
	flushFlows(t, node1)
	t.Run("a flow whose backend stays keeps it across the change", func(t *testing.T) {
		for _, p := range ports {
			got, want := w.ask(t, p), w.predicted(p, kept)
			if got != want {
				t.Errorf("flow from port %d reached %s, the table says %s", p, got, want)
			}
			if first[p] != "web-c" && got != first[p] {
				t.Errorf("flow from port %d moved from %s to %s, though %s stayed", p, first[p], got, first[p])
			}
		}
	})

	t.Run("another node picks the same backends", func(t *testing.T) {
		// More specific than node1's /31: the client now reaches node2.
		w.c.RouteVia(t, netip.MustParsePrefix(maglevLB+"/32"), 2)
		flushFlows(t, node2)
		for _, p := range ports {
			if got, want := w.ask(t, p), w.predicted(p, kept); got != want {
				t.Errorf("through node2, flow from port %d reached %s, the table says %s", p, got, want)
			}
		}
	})
}
