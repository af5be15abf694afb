package syncer

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// Syncer owns the writes to the load-balancing maps.
type Syncer struct {
	maps       *lbmap.Maps
	log        *zap.Logger
	mirror     *mirror
	serviceIDs *idAllocator
	backendIDs *idAllocator
}

// Stats counts the map writes of one Sync.
type Stats struct {
	Upserts int
	Deletes int
}

// New restores the mirror from the maps. Nothing is written until Sync.
func New(m *lbmap.Maps, log *zap.Logger) (*Syncer, error) {
	mr, err := loadMirror(m)
	if err != nil {
		return nil, err
	}
	s := &Syncer{maps: m, log: log, mirror: mr}

	var serviceIDs, backendIDs []uint32
	for _, e := range mr.frontends {
		serviceIDs = append(serviceIDs, e.master.ServiceId)
	}
	for id := range mr.revNat {
		serviceIDs = append(serviceIDs, id)
	}
	for id := range mr.backends {
		backendIDs = append(backendIDs, id)
	}
	s.serviceIDs = newIDAllocator(serviceIDs, s.serviceIDInUse)
	s.backendIDs = newIDAllocator(backendIDs, func(id uint32) bool { _, ok := s.mirror.backends[id]; return ok })
	log.Info("map state restored",
		zap.Int("frontends", len(mr.frontends)),
		zap.Int("backends", len(mr.backends)),
		zap.Int("stray_entries", len(mr.strays)))
	return s, nil
}

func (s *Syncer) serviceIDInUse(id uint32) bool {
	_, rev := s.mirror.revNat[id]
	_, name := s.mirror.names[id]
	return rev || name || s.mirror.frontendIDs[id]
}

// frontendPlan is what one desired frontend needs written.
type frontendPlan struct {
	svc    *desired.FrontendEntry
	entry  *frontendEntries
	id     uint32
	layout []uint32 // backend ids for slots 1..len
	master lbmap.ServiceValue
	failed bool
}

// Sync makes the maps hold state, writing only what differs from the mirror.
// It should be called only once the objects behind state are completely known:
// every frontend and backend not in state is removed. A failure touches only
// the frontends it concerns; each is returned as an error naming the Service,
// and everything else is applied.
func (s *Syncer) Sync(state *desired.State) (Stats, error) {
	return s.sync(state, nil)
}

// SyncFrontends is Sync limited to the frontends that changed since the last
// sync (removed ones included), so that one Service's change among thousands
// costs what that Service costs. state is still the whole desired state.
func (s *Syncer) SyncFrontends(state *desired.State, changed []desired.Frontend) (Stats, error) {
	if changed == nil {
		changed = []desired.Frontend{}
	}
	return s.sync(state, changed)
}

// sync diffs every frontend when changed is nil, only those listed otherwise.
func (s *Syncer) sync(state *desired.State, changed []desired.Frontend) (Stats, error) {
	var st Stats
	var errs []error
	mr := s.mirror

	var services []*desired.FrontendEntry
	var gone []desired.Frontend
	if changed == nil {
		services = state.Sorted()
		for fe := range mr.frontends {
			if _, ok := state.Frontends[fe]; !ok {
				gone = append(gone, fe)
			}
		}
	} else {
		seen := make(map[desired.Frontend]bool, len(changed))
		for _, fe := range changed {
			if seen[fe] {
				continue // one plan per frontend, or a new one would get two ids
			}
			seen[fe] = true
			if svc, ok := state.Frontends[fe]; ok {
				services = append(services, svc)
			} else if _, ok := mr.frontends[fe]; ok {
				gone = append(gone, fe)
			}
		}
	}
	slices.SortFunc(gone, desired.Frontend.Compare)

	// 1. Backends: every one a frontend needs, before any slot names it.
	usable := s.writeBackends(services, &st, &errs)

	// 2. Per frontend: id and slot layout.
	plans := make([]*frontendPlan, 0, len(services))
	for _, svc := range services {
		p := &frontendPlan{svc: svc, entry: mr.frontends[svc.Frontend]}
		if p.entry != nil {
			p.id = p.entry.master.ServiceId
		} else {
			id, err := s.serviceIDs.allocate()
			if err != nil {
				errs = append(errs, fmt.Errorf("program %s (%s): %w", svc.Name, svc.Frontend, err))
				continue
			}
			p.id = id
		}
		active := backendIDs(svc, svc.Active, usable, &errs)
		terminating := backendIDs(svc, svc.Terminating, usable, &errs)
		var oldActive, oldTerminating []uint32
		if p.entry != nil {
			oldActive, oldTerminating = p.entry.regions()
		}
		p.layout = append(stableLayout(oldActive, active), stableLayout(oldTerminating, terminating)...)
		p.master = lbmap.ServiceValue{
			ServiceId:   p.id,
			Count:       uint16(len(active)),
			Terminating: uint16(len(terminating)),
			Flags:       kindFlags(svc.Kind),
		}
		plans = append(plans, p)
	}
	s.reserveRoom(plans, &errs)

	// 3. Rev-NAT and names, so a translated socket can always be shown its VIP.
	var rkeys, nkeys []uint32
	var rvals []lbmap.RevNat
	var nvals []lbmap.ServiceName
	var rplans, nplans []*frontendPlan
	for _, p := range plans {
		if p.failed {
			continue
		}
		fe := p.svc.Frontend
		if rev := lbmap.NewRevNat(fe.Addr, fe.Port, uint8(fe.Proto)); mr.revNat[p.id] != rev {
			rkeys, rvals, rplans = append(rkeys, p.id), append(rvals, rev), append(rplans, p)
		}
		if name := lbmap.NewServiceName(p.svc.Name.String()); mr.names[p.id] != name {
			nkeys, nvals, nplans = append(nkeys, p.id), append(nvals, name), append(nplans, p)
		}
	}
	upsert(s.maps.RevNat, rkeys, rvals, rplans, "write rev_nat", &st, &errs, func(i int) { mr.revNat[rkeys[i]] = rvals[i] })
	upsert(s.maps.ServiceNames, nkeys, nvals, nplans, "write service name", &st, &errs, func(i int) { mr.names[nkeys[i]] = nvals[i] })

	// 4. Backend slots, before the master entry that makes them reachable.
	var skeys []lbmap.ServiceKey
	var svals []lbmap.ServiceValue
	var splans []*frontendPlan
	for _, p := range plans {
		if p.failed {
			continue
		}
		if p.entry == nil {
			// Remembered before the master exists so that a retry keeps the id.
			p.entry = mr.addFrontend(p.svc.Frontend, p.id)
		}
		for i, bid := range p.layout {
			slot := uint16(i + 1)
			if cur, ok := p.entry.slots[slot]; ok && cur == bid {
				continue
			}
			skeys = append(skeys, serviceKey(p.svc.Frontend, slot))
			svals = append(svals, lbmap.ServiceValue{BackendId: bid, ServiceId: p.id})
			splans = append(splans, p)
		}
	}
	upsert(s.maps.Services, skeys, svals, splans, "write backend slot", &st, &errs, func(i int) {
		mr.setSlot(splans[i].entry, skeys[i].Slot, svals[i].BackendId)
	})

	// 5. Master entries: the moment the new backend set becomes visible.
	var mkeys []lbmap.ServiceKey
	var mvals []lbmap.ServiceValue
	var mplans []*frontendPlan
	for _, p := range plans {
		if p.failed || (p.entry.written && p.entry.master == p.master) {
			continue
		}
		mkeys = append(mkeys, serviceKey(p.svc.Frontend, 0))
		mvals = append(mvals, p.master)
		mplans = append(mplans, p)
	}
	upsert(s.maps.Services, mkeys, mvals, mplans, "write master entry", &st, &errs, func(i int) {
		mplans[i].entry.master = mvals[i]
		mr.setWritten(mplans[i].entry, true)
	})

	// 6. Removals, in the reverse order: master, slots, rev-NAT, backends.
	var slotDeletes []lbmap.ServiceKey
	for _, p := range plans {
		if p.failed || !p.entry.written || p.entry.master != p.master {
			continue
		}
		for slot := range p.entry.slots {
			if int(slot) > len(p.layout) {
				slotDeletes = append(slotDeletes, serviceKey(p.svc.Frontend, slot))
			}
		}
	}
	freedIDs := s.removeFrontends(gone, &slotDeletes, &st, &errs)
	var strays []lbmap.ServiceKey
	if changed == nil {
		strays = mr.strays
		slotDeletes = append(slotDeletes, strays...)
	}
	failed := deleteKeys(s.maps.Services, slotDeletes, "delete backend slot", &st, &errs)
	var keptStrays []lbmap.ServiceKey
	for i, k := range slotDeletes {
		fe, ours := frontendOfKey(k)
		e := mr.frontends[fe]
		if !ours || e == nil {
			if failed[i] {
				keptStrays = append(keptStrays, k)
			}
			continue
		}
		if failed[i] {
			continue
		}
		mr.deleteSlot(e, k.Slot)
		if !e.written && len(e.slots) == 0 {
			mr.removeFrontend(fe)
		}
	}
	if changed == nil {
		mr.strays = keptStrays
	}
	s.deleteOrphanRevNat(changed == nil, freedIDs, &st, &errs)
	s.deleteUnreferencedBackends(&st, &errs)

	return st, errors.Join(errs...)
}

// writeBackends writes every backend the services use and returns the ids of
// those the maps hold afterwards.
func (s *Syncer) writeBackends(services []*desired.FrontendEntry, st *Stats, errs *[]error) map[desired.Backend]uint32 {
	mr := s.mirror
	wantState := map[desired.Backend]lbmap.BackendState{}
	for _, svc := range services {
		for _, b := range svc.Terminating {
			if _, ok := wantState[b]; !ok {
				wantState[b] = lbmap.BackendTerminating
			}
		}
		for _, b := range svc.Active {
			wantState[b] = lbmap.BackendActive
		}
	}
	wanted := make([]desired.Backend, 0, len(wantState))
	for b := range wantState {
		wanted = append(wanted, b)
	}
	slices.SortFunc(wanted, desired.Backend.Compare)

	var keys []uint32
	var vals []lbmap.Backend
	var owners []desired.Backend
	room := int(s.maps.Backends.MaxEntries()) - len(mr.backends)
	for _, b := range wanted {
		id, ok := mr.backendIDs[b]
		if !ok {
			if room <= 0 {
				*errs = append(*errs, fmt.Errorf("add backend %s: the backends map is full (%d entries)", b, s.maps.Backends.MaxEntries()))
				continue
			}
			room--
			var err error
			if id, err = s.backendIDs.allocate(); err != nil {
				*errs = append(*errs, fmt.Errorf("add backend %s: %w", b, err))
				continue
			}
		}
		v := lbmap.NewBackend(b.Addr, b.Port, uint8(b.Proto), wantState[b])
		if cur, ok := mr.backends[id]; ok && cur == v {
			continue
		}
		keys, vals, owners = append(keys, id), append(vals, v), append(owners, b)
	}
	failed := map[int]bool{}
	for _, f := range lbmap.Update(s.maps.Backends, keys, vals) {
		failed[f.Index] = true
		*errs = append(*errs, fmt.Errorf("write backend %s: %w", owners[f.Index], f.Err))
	}
	for i, id := range keys {
		if !failed[i] {
			mr.setBackend(id, vals[i])
			if mr.backendRefs[id] == 0 {
				mr.unreferenced[id] = true // until a slot names it
			}
			st.Upserts++
		}
	}

	usable := make(map[desired.Backend]uint32, len(wanted))
	for _, b := range wanted {
		if id, ok := mr.backendIDs[b]; ok {
			usable[b] = id
		}
	}
	return usable
}

// reserveRoom fails, with an error naming the Service, every frontend whose
// new entries do not fit in the maps, so that the ones that fit are written
// whole instead of every frontend getting a part. Frontends already in the
// maps go first, then new ones in order. Entries removed by this sync free
// their room only for the next one.
func (s *Syncer) reserveRoom(plans []*frontendPlan, errs *[]error) {
	mr := s.mirror
	servicesRoom := int(s.maps.Services.MaxEntries()) - len(mr.strays) - mr.serviceEntries
	revNatRoom := int(min(s.maps.RevNat.MaxEntries(), s.maps.ServiceNames.MaxEntries())) - max(len(mr.revNat), len(mr.names))
	ordered := make([]*frontendPlan, 0, len(plans))
	for _, p := range plans {
		if p.entry != nil {
			ordered = append(ordered, p)
		}
	}
	for _, p := range plans {
		if p.entry == nil {
			ordered = append(ordered, p)
		}
	}
	for _, p := range ordered {
		need := 0
		if p.entry == nil || !p.entry.written {
			need++
		}
		for i := range p.layout {
			if p.entry == nil {
				need++
			} else if _, ok := p.entry.slots[uint16(i+1)]; !ok {
				need++
			}
		}
		_, hasRevNat := mr.revNat[p.id]
		switch {
		case need > servicesRoom:
			*errs = append(*errs, fmt.Errorf("program %s (%s): the services map is full (%d entries): no room for %d more",
				p.svc.Name, p.svc.Frontend, s.maps.Services.MaxEntries(), need))
			p.failed = true
		case !hasRevNat && revNatRoom <= 0:
			*errs = append(*errs, fmt.Errorf("program %s (%s): the rev_nat map is full (%d entries)",
				p.svc.Name, p.svc.Frontend, s.maps.RevNat.MaxEntries()))
			p.failed = true
		default:
			servicesRoom -= need
			if !hasRevNat {
				revNatRoom--
			}
		}
	}
}

// upsert writes one batch; entries that fail mark their frontend failed, and
// apply records every entry that went in.
func upsert[K, V any](m *ebpf.Map, keys []K, vals []V, owners []*frontendPlan, doing string, st *Stats, errs *[]error, apply func(i int)) {
	failed := map[int]bool{}
	for _, f := range lbmap.Update(m, keys, vals) {
		failed[f.Index] = true
		p := owners[f.Index]
		if !p.failed {
			*errs = append(*errs, fmt.Errorf("program %s (%s): %s: %w", p.svc.Name, p.svc.Frontend, doing, f.Err))
		}
		p.failed = true
	}
	for i := range owners {
		if !failed[i] {
			apply(i)
			st.Upserts++
		}
	}
}

func deleteKeys[K any](m *ebpf.Map, keys []K, doing string, st *Stats, errs *[]error) map[int]bool {
	failed := map[int]bool{}
	for _, f := range lbmap.Delete(m, keys) {
		failed[f.Index] = true
		*errs = append(*errs, fmt.Errorf("%s %v: %w", doing, keys[f.Index], f.Err))
	}
	st.Deletes += len(keys) - len(failed)
	return failed
}

// removeFrontends deletes the master entries of frontends no longer wanted,
// queues their slots for deletion and returns their ids.
func (s *Syncer) removeFrontends(gone []desired.Frontend, slotDeletes *[]lbmap.ServiceKey, st *Stats, errs *[]error) []uint32 {
	mr := s.mirror
	var masters []desired.Frontend
	for _, fe := range gone {
		if mr.frontends[fe].written {
			masters = append(masters, fe)
		}
	}
	keys := make([]lbmap.ServiceKey, len(masters))
	for i, fe := range masters {
		keys[i] = serviceKey(fe, 0)
	}
	failed := deleteKeys(s.maps.Services, keys, "delete master entry", st, errs)
	var ids []uint32
	for i, fe := range masters {
		if !failed[i] {
			mr.setWritten(mr.frontends[fe], false)
		}
	}
	for _, fe := range gone {
		e := mr.frontends[fe]
		if e.written {
			continue // its master could not be deleted: its slots stay reachable
		}
		ids = append(ids, e.master.ServiceId)
		for slot := range e.slots {
			*slotDeletes = append(*slotDeletes, serviceKey(fe, slot))
		}
		if len(e.slots) == 0 {
			mr.removeFrontend(fe)
		}
	}
	return ids
}

// deleteOrphanRevNat removes the rev-NAT entries and names of ids no frontend
// has any more: among candidates, or among all ids in a full sync.
func (s *Syncer) deleteOrphanRevNat(full bool, candidates []uint32, st *Stats, errs *[]error) {
	mr := s.mirror
	if full {
		candidates = candidates[:0]
		for id := range mr.revNat {
			candidates = append(candidates, id)
		}
		for id := range mr.names {
			if _, ok := mr.revNat[id]; !ok {
				candidates = append(candidates, id)
			}
		}
	}
	var rkeys, nkeys []uint32
	for _, id := range candidates {
		if mr.frontendIDs[id] {
			continue
		}
		if _, ok := mr.revNat[id]; ok {
			rkeys = append(rkeys, id)
		}
		if _, ok := mr.names[id]; ok {
			nkeys = append(nkeys, id)
		}
	}
	failed := deleteKeys(s.maps.RevNat, rkeys, "delete rev_nat", st, errs)
	for i, id := range rkeys {
		if !failed[i] {
			delete(mr.revNat, id)
		}
	}
	failed = deleteKeys(s.maps.ServiceNames, nkeys, "delete service name", st, errs)
	for i, id := range nkeys {
		if !failed[i] {
			delete(mr.names, id)
		}
	}
}

// deleteUnreferencedBackends deletes the backends no slot names any more.
func (s *Syncer) deleteUnreferencedBackends(st *Stats, errs *[]error) {
	mr := s.mirror
	var keys []uint32
	for id := range mr.unreferenced {
		if _, ok := mr.backends[id]; ok && mr.backendRefs[id] == 0 {
			keys = append(keys, id)
		} else {
			delete(mr.unreferenced, id)
		}
	}
	slices.Sort(keys)
	failed := deleteKeys(s.maps.Backends, keys, "delete backend", st, errs)
	for i, id := range keys {
		if !failed[i] {
			mr.deleteBackend(id)
			delete(mr.unreferenced, id)
		}
	}
}

// backendIDs maps a frontend's backends to ids, leaving out (with an error
// naming the Service) any whose backend entry could not be written.
func backendIDs(svc *desired.FrontendEntry, backends []desired.Backend, usable map[desired.Backend]uint32, errs *[]error) []uint32 {
	ids := make([]uint32, 0, len(backends))
	for _, b := range backends {
		id, ok := usable[b]
		if !ok {
			*errs = append(*errs, fmt.Errorf("program %s (%s): backend %s left out: its backend entry could not be written", svc.Name, svc.Frontend, b))
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

// regions splits the slots into the active and terminating backend ids the
// master entry currently exposes.
func (e *frontendEntries) regions() (active, terminating []uint32) {
	n := int(e.master.Count)
	t := int(e.master.Terminating)
	for slot := 1; slot <= n+t; slot++ {
		id := e.slots[uint16(slot)]
		if slot <= n {
			active = append(active, id)
		} else {
			terminating = append(terminating, id)
		}
	}
	return active, terminating
}

// stableLayout orders want so that backends keep the slot they had in old
// where they can: a removal then rewrites one slot instead of shifting all,
// and UDP sockets pinned to an unaffected backend keep it.
func stableLayout(old, want []uint32) []uint32 {
	wanted := make(map[uint32]bool, len(want))
	for _, id := range want {
		wanted[id] = true
	}
	layout := make([]uint32, len(want))
	placed := make(map[uint32]bool, len(want))
	for i := 0; i < len(old) && i < len(layout); i++ {
		if wanted[old[i]] && !placed[old[i]] {
			layout[i] = old[i]
			placed[old[i]] = true
		}
	}
	next := 0
	for i := range layout {
		if layout[i] != 0 {
			continue
		}
		for placed[want[next]] {
			next++
		}
		layout[i] = want[next]
		placed[want[next]] = true
	}
	return layout
}

func serviceKey(fe desired.Frontend, slot uint16) lbmap.ServiceKey {
	return lbmap.NewServiceKey(fe.Addr, fe.Port, uint8(fe.Proto), lbmap.ScopeDefault, slot)
}

func kindFlags(k desired.FrontendKind) lbmap.ServiceFlags {
	switch k {
	case desired.ClusterIP:
		return lbmap.FlagClusterIP
	}
	return 0
}
