package syncer

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// The refuse trie is where the socket hooks fail fast: a connect or datagram
// that found no frontend is refused when its address is a ClusterIP (no
// Service port serves that port and protocol) or lies in a Service CIDR (no
// Service holds the address), as kube-proxy's nftables mode rejects and
// drops them. Its entries depend on no other map: a connect finds a
// frontend first, and only one that does not reaches the trie, so the trie
// is written after the plan, in any order, and a moment where it lags the
// frontends only refuses (or lets out untranslated) what has no frontend
// anyway.

// refuseEntries is the trie the state asks for: every Service CIDR, then a
// host prefix for every ClusterIP.
func refuseEntries(state *desired.State) map[lbmap.RefuseKey]lbmap.RefuseKind {
	want := make(map[lbmap.RefuseKey]lbmap.RefuseKind, len(state.ServiceCIDRs)+len(state.Frontends))
	for _, p := range state.ServiceCIDRs {
		want[lbmap.NewRefuseKey(p)] = lbmap.RefuseUnallocated
	}
	for fe, svc := range state.Frontends {
		if svc.Kind == desired.ClusterIP {
			want[lbmap.NewRefuseKey(netip.PrefixFrom(fe.Addr, fe.Addr.BitLen()))] = lbmap.RefuseNoPort
		}
	}
	return want
}

// syncRefuse writes the difference between the trie the mirror holds and the
// one state asks for: writes first (the CIDRs before the ClusterIPs, so a
// full trie keeps the wider refusals), then deletes.
func (s *Syncer) syncRefuse(state *desired.State, res *Result) []error {
	t := s.tables.Refuse
	if t == nil {
		return nil
	}
	want := refuseEntries(state)
	var keys []lbmap.RefuseKey
	for k, kind := range want {
		if cur, ok := s.mirror.refuse[k]; !ok || cur != kind {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareRefuseKeys)
	values := make([]lbmap.RefuseKind, len(keys))
	for i, k := range keys {
		values[i] = want[k]
	}
	var errs []error
	failed := map[int]bool{}
	for _, f := range t.Update(keys, values) {
		failed[f.Index] = true
		errs = append(errs, fmt.Errorf("write refuse entry %s (%s): %w", keys[f.Index].Prefix(), values[f.Index], f.Err))
	}
	for i, k := range keys {
		if !failed[i] {
			s.mirror.refuse[k] = values[i]
			res.Upserts++
		}
	}
	var gone []lbmap.RefuseKey
	for k := range s.mirror.refuse {
		if _, ok := want[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, compareRefuseKeys)
	failed = map[int]bool{}
	for _, f := range t.Delete(gone) {
		failed[f.Index] = true
		errs = append(errs, fmt.Errorf("delete refuse entry %s: %w", gone[f.Index].Prefix(), f.Err))
	}
	for i, k := range gone {
		if !failed[i] {
			delete(s.mirror.refuse, k)
			res.Deletes++
		}
	}
	return errs
}

// compareRefuseKeys puts wider prefixes first, then orders by address.
func compareRefuseKeys(a, b lbmap.RefuseKey) int {
	if a.Prefixlen != b.Prefixlen {
		return int(a.Prefixlen) - int(b.Prefixlen)
	}
	return a.Prefix().Addr().Compare(b.Prefix().Addr())
}

// restoreRefuse reads the trie into the mirror.
func (mr *mirror) restoreRefuse(t lbmap.Tables) error {
	if t.Refuse == nil {
		return nil
	}
	keys, values, err := t.Refuse.Dump()
	if err != nil {
		return fmt.Errorf("restore refuse entries: %w", err)
	}
	mr.refuse = make(map[lbmap.RefuseKey]lbmap.RefuseKind, len(keys))
	for i, k := range keys {
		mr.refuse[k] = values[i]
	}
	return nil
}

// refuseHeld is the trie the mirror holds, for tests.
func (mr *mirror) refuseHeld() map[lbmap.RefuseKey]lbmap.RefuseKind { return maps.Clone(mr.refuse) }
