package syncer

import (
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// action is what one op does, to which map.
type action uint8

// The stages of a plan, in the order they run (see doc.go for why).
const (
	writeNodeConfig action = iota + 1
	writeBackend
	writeRevNat
	writeName
	writeSlot
	writeSourceRange
	writeInternalMaster
	writeMaster
	deleteMaster
	deleteInternalMaster
	deleteSourceRange
	deleteSlot
	deleteStray
	deleteStraySourceRange
	forgetScope // no map write: the mirror drops a scope the maps hold nothing of
	deleteRevNat
	deleteName
	deleteBackend
)

var doing = map[action]string{
	writeNodeConfig:        "write node config",
	writeSourceRange:       "write source range",
	deleteSourceRange:      "delete source range",
	deleteStraySourceRange: "delete stray source range",
	writeBackend:           "write backend",
	writeRevNat:            "write rev_nat",
	writeName:              "write service name",
	writeSlot:              "write backend slot",
	writeInternalMaster:    "write master entry",
	writeMaster:            "write master entry",
	deleteMaster:           "delete master entry",
	deleteInternalMaster:   "delete master entry",
	deleteSlot:             "delete backend slot",
	deleteStray:            "delete stray services entry",
	forgetScope:            "forget frontend scope",
	deleteRevNat:           "delete rev_nat",
	deleteName:             "delete service name",
	deleteBackend:          "delete backend",
}

// op is one map operation of a plan, in map values: the translation from
// desired values happened while planning.
type op struct {
	action action
	// fs is the frontend scope the op serves (not for backend ops, strays
	// and orphans). Its frontend fails when the op fails, and a failure of
	// that frontend earlier in the plan cancels the op.
	fs      frontendScope
	key     lbmap.ServiceKey   // services ops
	value   lbmap.ServiceValue // services writes
	id      uint32             // backend id for backend ops, service id for rev_nat and names
	backend lbmap.Backend
	revNat  lbmap.RevNat
	name    *lbmap.ServiceName
	// rangeKey is the source-ranges entry of range ops, nodeConfig the
	// value of writeNodeConfig.
	rangeKey   lbmap.SourceRangeKey
	nodeConfig lbmap.NodeConfig
	// users are, for writeBackend, the frontends that fail with it; for
	// deleteRevNat, deleteName and deleteBackend, the frontends whose
	// failure cancels it (an entry of theirs may still name the id).
	users []desired.Frontend
}

// owned reports whether the op belongs to the frontend in fs.
func (o *op) owned() bool {
	switch o.action {
	case writeNodeConfig, writeBackend, deleteStray, deleteStraySourceRange, deleteRevNat, deleteName, deleteBackend:
		return false
	}
	return true
}

// plan is what one sync writes, in order.
type plan struct {
	ops  []op
	errs []error // frontends and backends left out while planning
	// leftOut counts the frontends left out while planning, by reason.
	leftOut map[string]int
	// state is the desired state planned from, and removing the Service
	// names of the frontends the plan removes, for errors (label).
	state    *desired.State
	removing map[desired.Frontend]string
	// serviceIDs and backendIDs are the allocators after this plan's
	// allocations; the syncer keeps them once the plan is applied.
	serviceIDs, backendIDs idAllocator
}

// capacities are the sizes of the maps.
type capacities struct {
	services, backends, revNat, names int
}

// frontendPlan is what one desired frontend needs.
type frontendPlan struct {
	svc      *desired.FrontendEntry
	id       uint32
	existing bool            // the mirror holds a scope of it
	scopes   []scopePlan     // the scopes wanted, default first
	dropped  []frontendScope // scopes held that are not wanted any more
	failed   bool
}

// scopePlan is the layout of one wanted scope.
type scopePlan struct {
	fs     frontendScope
	entry  *scopeEntries // nil when new
	layout []uint32      // backend ids for slots 1..len
	master lbmap.ServiceValue
}

// planner builds a plan from the mirror, which it only reads.
type planner struct {
	mr   *mirror
	caps capacities
	p    *plan
	// usable maps the backends the planned frontends need to their ids,
	// state says whether each is active for any of them, and write holds
	// those whose entry is missing or differs.
	usable    map[desired.Backend]uint32
	state     map[desired.Backend]lbmap.BackendState
	write     map[uint32]lbmap.Backend
	allocated map[uint32]bool // service ids handed out by this plan
	// backendDelta and idDelta are how the plan changes each backend's and
	// service id's reference count; the releasers are the frontends that
	// drop a reference.
	backendDelta     map[uint32]int
	backendReleasers map[uint32][]desired.Frontend
	idDelta          map[uint32]int
	idReleasers      map[uint32][]desired.Frontend
}

// plan diffs every frontend when changed is nil, only those listed otherwise.
// It reads the mirror and allocators and changes neither.
func (s *Syncer) plan(state *desired.State, changed []desired.Frontend) *plan {
	return s.planInto(state, changed, nil)
}

// planInto is plan with its ops appended to ops, a buffer the caller no
// longer needs.
func (s *Syncer) planInto(state *desired.State, changed []desired.Frontend, ops []op) *plan {
	pl := &planner{
		mr:   s.mirror,
		caps: s.caps,
		p: &plan{
			ops:        ops,
			state:      state,
			removing:   map[desired.Frontend]string{},
			leftOut:    map[string]int{},
			serviceIDs: s.serviceIDs,
			backendIDs: s.backendIDs,
		},
		write:            map[uint32]lbmap.Backend{},
		allocated:        map[uint32]bool{},
		backendDelta:     map[uint32]int{},
		backendReleasers: map[uint32][]desired.Frontend{},
		idDelta:          map[uint32]int{},
		idReleasers:      map[uint32][]desired.Frontend{},
	}
	if want := nodeConfigValue(state.SNAT); want != pl.mr.nodeConfig {
		// First: a NodePort frontend made reachable below may need SNAT.
		pl.add(op{action: writeNodeConfig, nodeConfig: want})
	}
	services, gone := pl.selectFrontends(state, changed)
	pl.assignBackendIDs(services)
	fps := make([]*frontendPlan, 0, len(services))
	for _, svc := range services {
		if fp := pl.layoutFrontend(svc); fp != nil {
			fps = append(fps, fp)
		}
	}
	pl.reserveRoom(fps)
	pl.planWrites(fps)
	pl.planRemovals(fps, gone, changed == nil)
	return pl.p
}

// selectFrontends returns the desired frontends to diff and the held ones
// to remove.
func (pl *planner) selectFrontends(state *desired.State, changed []desired.Frontend) ([]*desired.FrontendEntry, []desired.Frontend) {
	var services []*desired.FrontendEntry
	goneSet := map[desired.Frontend]bool{}
	if changed == nil {
		services = state.Sorted()
		for fs := range pl.mr.frontends {
			if _, ok := state.Frontends[fs.fe]; !ok {
				goneSet[fs.fe] = true
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
			} else if pl.holds(fe) {
				goneSet[fe] = true
			}
		}
	}
	gone := slices.SortedFunc(maps.Keys(goneSet), desired.Frontend.Compare)
	for _, fe := range gone {
		pl.p.removing[fe] = pl.heldName(fe)
	}
	return services, gone
}

func (pl *planner) holds(fe desired.Frontend) bool {
	for _, scope := range scopes {
		if _, ok := pl.mr.frontends[frontendScope{fe, scope}]; ok {
			return true
		}
	}
	return false
}

// label says, for an error, what the plan does to a frontend:
// "program default/web (10.96.0.10:80/TCP)" or "remove default/web (...)".
func (p *plan) label(fe desired.Frontend) string {
	if name, ok := p.removing[fe]; ok {
		return fmt.Sprintf("remove %s (%s)", name, fe)
	}
	var name desired.ServicePortName
	if svc, ok := p.state.Frontends[fe]; ok {
		name = svc.Name
	}
	return fmt.Sprintf("program %s (%s)", name, fe)
}

// heldName is the Service name the maps hold for a frontend.
func (pl *planner) heldName(fe desired.Frontend) string {
	for _, scope := range scopes {
		if e, ok := pl.mr.frontends[frontendScope{fe, scope}]; ok {
			if n, ok := pl.mr.names[e.master.ServiceId]; ok {
				return n
			}
		}
	}
	return "-"
}

// assignBackendIDs finds or allocates the id of every backend the services
// use, as long as the backends map has room.
func (pl *planner) assignBackendIDs(services []*desired.FrontendEntry) {
	room := pl.caps.backends - len(pl.mr.backends)
	inUse := func(id uint32) bool { _, ok := pl.mr.backends[id]; return ok }
	wanted := pl.wantBackends(services)
	pl.usable = make(map[desired.Backend]uint32, len(wanted))
	for _, b := range wanted {
		id, ok := pl.mr.backendIDs[b]
		if !ok {
			if room <= 0 {
				pl.p.errs = append(pl.p.errs, fmt.Errorf("add backend %s: the backends map is full (%d entries)", b, pl.caps.backends))
				continue
			}
			room--
			var err error
			if id, err = pl.p.backendIDs.allocate(inUse); err != nil {
				pl.p.errs = append(pl.p.errs, fmt.Errorf("add backend %s: %w", b, err))
				continue
			}
		}
		pl.usable[b] = id
		v := backendValue(b, pl.state[b])
		if cur, ok := pl.mr.backends[id]; !ok || cur != v {
			pl.write[id] = v
		}
	}
}

// wantBackends returns, sorted, the backends the services use in any scope,
// and records in pl.state whether each is active for any of them.
func (pl *planner) wantBackends(services []*desired.FrontendEntry) []desired.Backend {
	n := 0
	for _, svc := range services {
		n += len(svc.Active) + len(svc.Terminating)
	}
	pl.state = make(map[desired.Backend]lbmap.BackendState, n)
	for _, svc := range services {
		for _, scope := range scopes {
			set, ok := backendSet(svc, scope)
			if !ok {
				continue
			}
			for _, b := range set.Terminating {
				if _, ok := pl.state[b]; !ok {
					pl.state[b] = lbmap.BackendTerminating
				}
			}
			for _, b := range set.Active {
				pl.state[b] = lbmap.BackendActive
			}
		}
	}
	wanted := make([]desired.Backend, 0, len(pl.state))
	for b := range pl.state {
		wanted = append(wanted, b)
	}
	slices.SortFunc(wanted, desired.Backend.Compare)
	return wanted
}

// layoutFrontend decides svc's id and, per scope, its slots and master.
func (pl *planner) layoutFrontend(svc *desired.FrontendEntry) *frontendPlan {
	fp := &frontendPlan{svc: svc}
	var held [len(scopes)]*scopeEntries
	for i, scope := range scopes {
		held[i] = pl.mr.frontends[frontendScope{svc.Frontend, scope}]
		if held[i] != nil && !fp.existing {
			fp.id, fp.existing = held[i].master.ServiceId, true
		}
	}
	if !fp.existing {
		id, err := pl.p.serviceIDs.allocate(func(id uint32) bool { return pl.allocated[id] || pl.mr.serviceIDInUse(id) })
		if err != nil {
			pl.p.errs = append(pl.p.errs, fmt.Errorf("program %s (%s): %w", svc.Name, svc.Frontend, err))
			pl.p.leftOut[LeftOutNoServiceID]++
			return nil
		}
		pl.allocated[id] = true
		fp.id = id
	}
	if svc.Internal != nil {
		fp.scopes = make([]scopePlan, 0, 2)
	} else {
		fp.scopes = make([]scopePlan, 0, 1)
	}
	for i, scope := range scopes {
		fs, entry := frontendScope{svc.Frontend, scope}, held[i]
		set, wanted := backendSet(svc, scope)
		if !wanted {
			if entry != nil {
				fp.dropped = append(fp.dropped, fs)
			}
			continue
		}
		active := pl.backendIDs(svc, set.Active)
		terminating := pl.backendIDs(svc, set.Terminating)
		var oldActive, oldTerminating []uint32
		if entry != nil {
			oldActive, oldTerminating = entry.regions()
		}
		fp.scopes = append(fp.scopes, scopePlan{
			fs:     fs,
			entry:  entry,
			layout: append(stableLayout(oldActive, active), stableLayout(oldTerminating, terminating)...),
			master: masterValue(svc, scope, fp.id, len(active), len(terminating)),
		})
	}
	return fp
}

// backendIDs maps a frontend's backends to ids, leaving out (with an error
// naming the Service) any that got none.
func (pl *planner) backendIDs(svc *desired.FrontendEntry, backends []desired.Backend) []uint32 {
	ids := make([]uint32, 0, len(backends))
	for _, b := range backends {
		id, ok := pl.usable[b]
		if !ok {
			pl.p.errs = append(pl.p.errs, fmt.Errorf("program %s (%s): backend %s left out: its backend entry could not be written", svc.Name, svc.Frontend, b))
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

func (pl *planner) release(delta map[uint32]int, releasers map[uint32][]desired.Frontend, id uint32, by desired.Frontend) {
	delta[id]--
	if rs := releasers[id]; len(rs) == 0 || rs[len(rs)-1] != by {
		releasers[id] = append(rs, by)
	}
}

// reserveRoom fails, with an error naming the Service, every frontend whose
// new entries do not fit in the maps, so that the ones that fit are written
// whole instead of every frontend getting a part. Frontends already in the
// maps go first, then new ones in order. Entries removed by this sync free
// their room only for the next one.
func (pl *planner) reserveRoom(fps []*frontendPlan) {
	mr := pl.mr
	servicesRoom := pl.caps.services - len(mr.strays) - mr.serviceEntries
	revNatRoom := min(pl.caps.revNat, pl.caps.names) - max(len(mr.revNat), len(mr.names))
	ordered := make([]*frontendPlan, 0, len(fps))
	for _, existing := range []bool{true, false} {
		for _, fp := range fps {
			if fp.existing == existing {
				ordered = append(ordered, fp)
			}
		}
	}
	for _, fp := range ordered {
		need := 0
		for _, sp := range fp.scopes {
			need += sp.newEntries()
		}
		_, hasRevNat := mr.revNat[fp.id]
		switch {
		case need > servicesRoom:
			pl.p.errs = append(pl.p.errs, fmt.Errorf("program %s (%s): the services map is full (%d entries): no room for %d more",
				fp.svc.Name, fp.svc.Frontend, pl.caps.services, need))
			fp.failed = true
			pl.p.leftOut[LeftOutServicesMapFull]++
		case !hasRevNat && revNatRoom <= 0:
			pl.p.errs = append(pl.p.errs, fmt.Errorf("program %s (%s): the rev_nat map is full (%d entries)",
				fp.svc.Name, fp.svc.Frontend, pl.caps.revNat))
			fp.failed = true
			pl.p.leftOut[LeftOutRevNatMapFull]++
		default:
			servicesRoom -= need
			if !hasRevNat {
				revNatRoom--
			}
		}
	}
}

// newEntries counts the services map entries the scope adds.
func (sp *scopePlan) newEntries() int {
	if sp.entry == nil {
		return 1 + len(sp.layout)
	}
	need := 0
	if !sp.entry.written {
		need++
	}
	for i := range sp.layout {
		if _, ok := sp.entry.slots.get(uint16(i + 1)); !ok {
			need++
		}
	}
	return need
}

// planWrites adds the writes: backends, rev_nat and names, slots, internal
// masters, default masters.
func (pl *planner) planWrites(fps []*frontendPlan) {
	live := make([]*frontendPlan, 0, len(fps))
	for _, fp := range fps {
		if !fp.failed {
			live = append(live, fp)
		}
	}
	pl.planBackendWrites(live)
	for _, fp := range live {
		fs := frontendScope{fp.svc.Frontend, lbmap.ScopeDefault}
		if rev := revNatValue(fp.svc.Frontend); pl.mr.revNat[fp.id] != rev {
			pl.add(op{action: writeRevNat, fs: fs, id: fp.id, revNat: rev})
		}
	}
	for _, fp := range live {
		fs := frontendScope{fp.svc.Frontend, lbmap.ScopeDefault}
		if pl.mr.names[fp.id] != lbmap.ServiceNameText(fp.svc.Name.String()) {
			name := nameValue(fp.svc.Name)
			pl.add(op{action: writeName, fs: fs, id: fp.id, name: &name})
		}
	}
	for _, fp := range live {
		for _, sp := range fp.scopes {
			pl.planSlotWrites(&sp)
		}
	}
	for _, fp := range live {
		pl.planSourceRangeWrites(fp)
	}
	for _, act := range []action{writeInternalMaster, writeMaster} {
		for _, fp := range live {
			for _, sp := range fp.scopes {
				if (act == writeMaster) != (sp.fs.scope == lbmap.ScopeDefault) {
					continue
				}
				if sp.entry != nil && sp.entry.master.ServiceId != fp.id {
					// Only from outside socklb: the scopes disagreed on the id.
					pl.release(pl.idDelta, pl.idReleasers, sp.entry.master.ServiceId, fp.svc.Frontend)
				}
				if sp.entry == nil || !sp.entry.written || sp.entry.master != sp.master {
					pl.add(op{action: act, fs: sp.fs, key: serviceKey(sp.fs, 0), value: sp.master})
				}
			}
		}
	}
}

// planBackendWrites writes every backend a frontend's new slots name whose
// entry is missing or differs (pl.write). Its users are looked for only when there is
// such a backend: in a resync there is usually none.
func (pl *planner) planBackendWrites(live []*frontendPlan) {
	write := pl.write
	if len(write) == 0 {
		return
	}
	users := map[uint32][]desired.Frontend{}
	for _, fp := range live {
		for _, sp := range fp.scopes {
			for _, id := range sp.layout {
				if _, ok := write[id]; !ok {
					continue
				}
				if us := users[id]; len(us) == 0 || us[len(us)-1] != fp.svc.Frontend {
					users[id] = append(us, fp.svc.Frontend)
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(users)) {
		pl.add(op{action: writeBackend, id: id, backend: write[id], users: users[id]})
	}
}

func (pl *planner) planSlotWrites(sp *scopePlan) {
	for i, bid := range sp.layout {
		slot := uint16(i + 1)
		if sp.entry != nil {
			old, ok := sp.entry.slots.get(slot)
			if ok && old == bid {
				continue
			}
			if ok {
				pl.release(pl.backendDelta, pl.backendReleasers, old, sp.fs.fe)
			}
		}
		pl.backendDelta[bid]++
		pl.add(op{action: writeSlot, fs: sp.fs, key: serviceKey(sp.fs, slot), value: slotValue(sp.master.ServiceId, bid)})
	}
}

func (pl *planner) add(o op) { pl.p.ops = append(pl.p.ops, o) }

// planRemovals adds the removals, in the reverse order of the writes:
// default masters, internal masters, slots, rev_nat and names, backends.
// full also prunes strays and orphans.
func (pl *planner) planRemovals(fps []*frontendPlan, gone []desired.Frontend, full bool) {
	var removed []frontendScope // whole scopes, default first per frontend
	for _, fe := range gone {
		for _, scope := range scopes {
			if _, ok := pl.mr.frontends[frontendScope{fe, scope}]; ok {
				removed = append(removed, frontendScope{fe, scope})
			}
		}
	}
	for _, fp := range fps {
		if !fp.failed {
			removed = append(removed, fp.dropped...)
		}
	}
	for _, act := range []action{deleteMaster, deleteInternalMaster} {
		for _, fs := range removed {
			if (act == deleteMaster) == (fs.scope == lbmap.ScopeDefault) && pl.mr.frontends[fs].written {
				pl.add(op{action: act, fs: fs, key: serviceKey(fs, 0)})
			}
		}
	}
	pl.planSourceRangeDeletes(fps, removed)
	for _, fp := range fps {
		if !fp.failed {
			for _, sp := range fp.scopes {
				pl.planSlotDeletes(sp.fs, sp.entry, len(sp.layout))
			}
		}
	}
	for _, fs := range removed {
		e := pl.mr.frontends[fs]
		pl.release(pl.idDelta, pl.idReleasers, e.master.ServiceId, fs.fe)
		if !e.written && e.slots.len() == 0 {
			pl.add(op{action: forgetScope, fs: fs})
		}
		pl.planSlotDeletes(fs, e, 0)
	}
	if full {
		for _, k := range slices.SortedFunc(maps.Keys(pl.mr.strays), lbmap.CompareServiceKeys) {
			pl.add(op{action: deleteStray, key: k})
		}
		pl.planStraySourceRangeDeletes()
	}
	pl.planRevNatDeletes(full)
	pl.planBackendDeletes()
}

// planSourceRangeWrites writes the source ranges fp's default master will
// need, before the master that sets FlagSourceRanges makes them matter.
func (pl *planner) planSourceRangeWrites(fp *frontendPlan) {
	held := pl.mr.sourceRanges[fp.id]
	fs := frontendScope{fp.svc.Frontend, lbmap.ScopeDefault}
	for _, k := range sortedRangeKeys(sourceRangeKeys(fp.svc, fp.id)) {
		if !held[k] {
			pl.add(op{action: writeSourceRange, fs: fs, rangeKey: k})
		}
	}
}

// planSourceRangeDeletes deletes, once every master is written or deleted,
// the ranges no master needs any more: those a planned frontend dropped and
// those of removed frontends. Until then a master with FlagSourceRanges
// still lets in every client it let in before.
func (pl *planner) planSourceRangeDeletes(fps []*frontendPlan, removed []frontendScope) {
	for _, fp := range fps {
		if fp.failed {
			continue
		}
		want := sourceRangeKeys(fp.svc, fp.id)
		fs := frontendScope{fp.svc.Frontend, lbmap.ScopeDefault}
		for _, k := range sortedRangeKeys(pl.mr.sourceRanges[fp.id]) {
			if !want[k] {
				pl.add(op{action: deleteSourceRange, fs: fs, rangeKey: k})
			}
		}
	}
	for _, fs := range removed {
		if fs.scope != lbmap.ScopeDefault {
			continue
		}
		id := pl.mr.frontends[fs].master.ServiceId
		for _, k := range sortedRangeKeys(pl.mr.sourceRanges[id]) {
			pl.add(op{action: deleteSourceRange, fs: fs, rangeKey: k})
		}
	}
}

// planStraySourceRangeDeletes deletes, in a full sync, the ranges of ids no
// frontend scope holds.
func (pl *planner) planStraySourceRangeDeletes() {
	for _, id := range slices.Sorted(maps.Keys(pl.mr.sourceRanges)) {
		if pl.mr.serviceIDRefs[id] > 0 || pl.allocated[id] {
			continue
		}
		for _, k := range sortedRangeKeys(pl.mr.sourceRanges[id]) {
			pl.add(op{action: deleteStraySourceRange, rangeKey: k})
		}
	}
}

func sortedRangeKeys(keys map[lbmap.SourceRangeKey]bool) []lbmap.SourceRangeKey {
	return slices.SortedFunc(maps.Keys(keys), func(a, b lbmap.SourceRangeKey) int {
		pa, pb := a.Prefix(), b.Prefix()
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return pa.Bits() - pb.Bits()
	})
}

// planSlotDeletes deletes the slots of e above keep.
func (pl *planner) planSlotDeletes(fs frontendScope, e *scopeEntries, keep int) {
	if e == nil {
		return
	}
	for slot, id := range e.slots.all() {
		if int(slot) > keep {
			pl.release(pl.backendDelta, pl.backendReleasers, id, fs.fe)
			pl.add(op{action: deleteSlot, fs: fs, key: serviceKey(fs, slot)})
		}
	}
}

// planRevNatDeletes deletes the rev_nat entries and names of the ids no
// frontend scope holds after the plan: those it releases, and in a full sync
// every one held by none.
func (pl *planner) planRevNatDeletes(full bool) {
	freed := map[uint32]bool{}
	for id, d := range pl.idDelta {
		if pl.mr.serviceIDRefs[id]+d <= 0 {
			freed[id] = true
		}
	}
	if full {
		for _, ids := range []iter.Seq[uint32]{maps.Keys(pl.mr.revNat), maps.Keys(pl.mr.names)} {
			for id := range ids {
				if pl.mr.serviceIDRefs[id] == 0 {
					freed[id] = true
				}
			}
		}
	}
	sorted := slices.Sorted(maps.Keys(freed))
	for _, id := range sorted {
		if _, ok := pl.mr.revNat[id]; ok {
			pl.add(op{action: deleteRevNat, id: id, users: pl.idReleasers[id]})
		}
	}
	for _, id := range sorted {
		if _, ok := pl.mr.names[id]; ok {
			pl.add(op{action: deleteName, id: id, users: pl.idReleasers[id]})
		}
	}
}

// planBackendDeletes deletes the backends no slot names after the plan.
func (pl *planner) planBackendDeletes() {
	// Not a clone of unreferenced: a map keeps the size it once had, and
	// the first sync puts every backend in it for a moment.
	var candidates []uint32
	for id := range pl.mr.unreferenced {
		if pl.backendDelta[id] >= 0 {
			candidates = append(candidates, id)
		}
	}
	for id, d := range pl.backendDelta {
		if d < 0 {
			candidates = append(candidates, id)
		}
	}
	slices.Sort(candidates)
	for _, id := range candidates {
		if _, ok := pl.mr.backends[id]; ok && pl.mr.backendRefs[id]+pl.backendDelta[id] <= 0 {
			pl.add(op{action: deleteBackend, id: id, users: pl.backendReleasers[id]})
		}
	}
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
