package sockdestroy

import (
	"net/netip"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/syncer"
)

// Work is what a sync asks of the destroyer.
type Work struct {
	// Stale: some UDP frontend lost backends or went away, so the
	// translated sockets must be checked against the state (StaleSockets).
	Stale bool
	// NewVIPs are the UDP frontends that appeared (a ClusterIP, externalIP
	// or LoadBalancer IP; not a node address, which other sockets on the
	// node may have been talking to all along).
	NewVIPs []netip.AddrPort
}

// WorkOf says what a sync's result asks for.
func WorkOf(state *desired.State, res syncer.Result) Work {
	var w Work
	for _, rb := range res.RemovedBackends {
		if rb.Backend.Proto == desired.UDP {
			w.Stale = true
		}
	}
	seen := map[desired.Frontend]bool{}
	for _, fc := range res.Frontends {
		fe := fc.Frontend
		if fe.Proto != desired.UDP {
			continue
		}
		switch fc.Change {
		case syncer.Changed, syncer.Removed:
			w.Stale = true
		case syncer.Added:
			e := state.Frontends[fe]
			if e != nil && e.Kind != desired.NodePort && !seen[fe] {
				seen[fe] = true
				w.NewVIPs = append(w.NewVIPs, netip.AddrPortFrom(fe.Addr, fe.Port))
			}
		}
	}
	return w
}

// VIPKeys are the destroy-map keys of every connected socket whose peer is
// one of vips: cookie 0 matches any socket.
func VIPKeys(vips []netip.AddrPort) []lbmap.SockKey {
	keys := make([]lbmap.SockKey, 0, len(vips))
	for _, v := range vips {
		keys = append(keys, lbmap.NewSockKey(0, v, uint8(desired.UDP)))
	}
	return keys
}

// StaleSockets picks, from the per-socket reverse-NAT entries (keys and
// values of lb_sock_rev_nat) and the frontends by service id (lb_rev_nat),
// the UDP sockets whose backend is no longer one of its frontend's in
// state: the frontend is gone, or the backend is in none of its sets. A
// terminating backend still in the set keeps its sockets: it drains.
func StaleSockets(keys []lbmap.SockKey, values []lbmap.SockRevNat, frontends map[uint32]lbmap.RevNat, state *desired.State) []lbmap.SockKey {
	live := map[desired.Frontend]map[netip.AddrPort]bool{}
	var stale []lbmap.SockKey
	for i, k := range keys {
		if k.Proto != uint8(desired.UDP) {
			continue
		}
		rn, ok := frontends[values[i].ServiceId]
		if !ok {
			stale = append(stale, k)
			continue
		}
		ap := rn.AddrPort()
		fe := desired.Frontend{Addr: ap.Addr(), Port: ap.Port(), Proto: desired.UDP}
		backends, ok := live[fe]
		if !ok {
			backends = liveBackends(state.Frontends[fe])
			live[fe] = backends
		}
		if !backends[k.AddrPort()] {
			stale = append(stale, k)
		}
	}
	return stale
}

// liveBackends is every backend address any set of e holds; none when e is
// nil (the frontend is gone).
func liveBackends(e *desired.FrontendEntry) map[netip.AddrPort]bool {
	out := map[netip.AddrPort]bool{}
	if e == nil {
		return out
	}
	sets := []desired.BackendSet{e.BackendSet}
	if e.Internal != nil {
		sets = append(sets, *e.Internal)
	}
	for _, s := range sets {
		for _, b := range append(append([]desired.Backend{}, s.Active...), s.Terminating...) {
			out[netip.AddrPortFrom(b.Addr, b.Port)] = true
		}
	}
	return out
}
