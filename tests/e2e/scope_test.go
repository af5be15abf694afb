package e2e

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

// The socket hooks see only clients on the node, so they switch scope: a
// default master marked TwoScopes sends them to the LB_SCOPE_INTERNAL
// slots. No writer fills the internal scope yet, so the maps are written by
// hand here, as a syncer will.
func TestSocketHooksSwitchToTheInternalScope(t *testing.T) {
	cases := []struct {
		name  string
		flags lbmap.ServiceFlags
		want  string // the pod every connect reaches
	}{
		{"one scope: the default slots", lbmap.FlagClusterIP, "pod-a"},
		{"two scopes: the internal slots", lbmap.FlagClusterIP | lbmap.FlagTwoScopes, "pod-b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox.New(t)
			podA, podB := sb.AddPod(t, "pod-a"), sb.AddPod(t, "pod-b")
			client := sb.AddPod(t, "client")
			sb.StartNameServer(t, podA, []int{8080}, nil)
			sb.StartNameServer(t, podB, []int{8080}, nil)
			d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			writeTwoScopes(t, d.Maps, tc.flags, podA.IPv4, podB.IPv4)

			seen := requireAllOK(t, sb.Probe(t, client, true, "tcp", "--addr", vip+":80", "--count", "10"))
			if seen[tc.want] != 10 {
				t.Errorf("10 connects reached %v, want all at %s", seen, tc.want)
			}
		})
	}
}

// writeTwoScopes makes vip:80 a frontend whose default slot holds
// defaultPod and whose internal slot holds internalPod.
func writeTwoScopes(t *testing.T, m *lbmap.Maps, flags lbmap.ServiceFlags, defaultPod, internalPod netip.Addr) {
	t.Helper()
	const tcp = 6
	addr := netip.MustParseAddr(vip)
	put := func(em *ebpf.Map, k, v any) {
		if err := em.Put(k, v); err != nil {
			t.Fatalf("write %s: %v", em, err)
		}
	}
	put(m.Backends, uint32(1), lbmap.NewBackend(defaultPod, 8080, tcp, lbmap.BackendActive))
	put(m.Backends, uint32(2), lbmap.NewBackend(internalPod, 8080, tcp, lbmap.BackendActive))
	put(m.RevNat, uint32(1), lbmap.NewRevNat(addr, 80, tcp))
	put(m.Services, lbmap.NewServiceKey(addr, 80, tcp, lbmap.ScopeInternal, 1), lbmap.ServiceValue{BackendId: 2, ServiceId: 1})
	put(m.Services, lbmap.NewServiceKey(addr, 80, tcp, lbmap.ScopeInternal, 0), lbmap.ServiceValue{ServiceId: 1, Count: 1, Flags: lbmap.FlagClusterIP})
	put(m.Services, lbmap.NewServiceKey(addr, 80, tcp, lbmap.ScopeDefault, 1), lbmap.ServiceValue{BackendId: 1, ServiceId: 1})
	put(m.Services, lbmap.NewServiceKey(addr, 80, tcp, lbmap.ScopeDefault, 0), lbmap.ServiceValue{ServiceId: 1, Count: 1, Flags: flags})
}
