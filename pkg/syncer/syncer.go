package syncer

import (
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
)

// Syncer owns the writes to the load-balancing maps.
type Syncer struct {
	tables     lbmap.Tables
	caps       capacities
	log        *zap.Logger
	mirror     *mirror
	serviceIDs idAllocator
	backendIDs idAllocator
}

// Result is what one sync did: the map writes it made, and what changed for
// the socket destruction and metrics that act on changes.
type Result struct {
	Upserts int
	Deletes int
	// Frontends lists the frontend scopes whose entries this sync added,
	// changed or removed, ordered by frontend, then scope.
	Frontends []FrontendChange
	// RemovedBackends lists the backends deleted from the backends map,
	// ordered by id. Sockets still connected to one reach nothing.
	RemovedBackends []RemovedBackend
	// LeftOut counts the frontends this sync could not program, by reason
	// (LeftOutServicesMapFull, ...); nil when none. Every sync after a
	// failure is full, so a failing sync counts all that are left out.
	LeftOut map[string]int
}

// The reasons of Result.LeftOut, as metrics label them.
const (
	LeftOutServicesMapFull = "services_map_full" // no room for its entries in the services map
	LeftOutRevNatMapFull   = "rev_nat_map_full"  // no room for its service id in rev_nat or the names
	LeftOutNoServiceID     = "no_service_id"     // every service id is taken
	LeftOutWriteFailed     = "write_failed"      // a map write of it (or of a backend it needs) failed
)

// Change is what a sync did to one scope of a frontend.
type Change uint8

const (
	// Added: the scope's master entry was written for the first time, so
	// connects to the frontend are translated from now on.
	Added Change = iota + 1
	// Changed: the backends the scope exposes changed.
	Changed
	// Removed: the scope's master entry was deleted.
	Removed
)

func (c Change) String() string {
	switch c {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("Change(%d)", uint8(c))
}

// FrontendChange is what a sync did to one frontend in one scope.
type FrontendChange struct {
	Frontend desired.Frontend
	Scope    lbmap.Scope // lbmap.ScopeDefault or lbmap.ScopeInternal
	Change   Change
}

// RemovedBackend is a backend a sync deleted from the backends map.
type RemovedBackend struct {
	Backend desired.Backend
	ID      uint32
}

// Owners returns, per frontend the maps hold, the Service its name entry
// names: what the agent before this one programmed. The first build keeps
// each frontend with it (desired.Builder.Hold).
func (s *Syncer) Owners() map[desired.Frontend]desired.ServiceRef {
	owners := make(map[desired.Frontend]desired.ServiceRef, len(s.mirror.frontends))
	for fs, e := range s.mirror.frontends {
		if ref, ok := serviceRefOfName(s.mirror.names[e.master.ServiceId]); ok {
			owners[fs.fe] = ref
		}
	}
	return owners
}

// New restores the mirror from the maps. Nothing is written until Sync.
func New(m *lbmap.Maps, log *zap.Logger) (*Syncer, error) {
	return NewWithTables(m.Tables(), log)
}

// NewWithTables is New for maps reached through lbmap.Table, such as maps
// in memory.
func NewWithTables(t lbmap.Tables, log *zap.Logger) (*Syncer, error) {
	mr, err := loadMirror(t)
	if err != nil {
		return nil, err
	}
	s := &Syncer{
		tables: t,
		caps: capacities{
			services: int(t.Services.MaxEntries()),
			backends: int(t.Backends.MaxEntries()),
			revNat:   int(t.RevNat.MaxEntries()),
			names:    int(t.ServiceNames.MaxEntries()),
		},
		log:    log,
		mirror: mr,
	}
	var serviceIDs, backendIDs []uint32
	frontends := map[desired.Frontend]bool{}
	for fs, e := range mr.frontends {
		serviceIDs = append(serviceIDs, e.master.ServiceId)
		frontends[fs.fe] = true
	}
	for id := range mr.revNat {
		serviceIDs = append(serviceIDs, id)
	}
	for id := range mr.backends {
		backendIDs = append(backendIDs, id)
	}
	s.serviceIDs = newIDAllocator(serviceIDs)
	s.backendIDs = newIDAllocator(backendIDs)
	log.Info("map state restored",
		zap.Int(logfield.Frontends, len(frontends)),
		zap.Int(logfield.Backends, len(mr.backends)),
		zap.Int(logfield.StrayEntries, len(mr.strays)))
	return s, nil
}

// Sync makes the maps hold state, writing only what differs from the mirror.
// It should be called only once the objects behind state are completely known:
// every frontend and backend not in state is removed. A failure touches only
// the frontends it concerns; each is returned as an error naming the Service,
// and everything else is applied.
func (s *Syncer) Sync(state *desired.State) (Result, error) {
	if len(state.Frontends) > firstSyncChunk && s.mirror.empty() {
		return s.syncInChunks(state)
	}
	return s.sync(state, nil)
}

// firstSyncChunk is how many frontends one plan of a first sync onto empty
// maps writes: a plan holds every op it will run, about 240 bytes each and
// nine per frontend with three backends, so that planning 30,000 frontends
// at once held some 65 MB of ops at the agent's peak.
const firstSyncChunk = 2048

// syncInChunks is Sync onto maps that hold nothing, as plans of
// firstSyncChunk frontends in frontend order. With nothing held there is
// nothing to remove and no stray, and room goes to frontends in the order
// a single plan gives it (every frontend is new), so the maps end as one
// plan leaves them.
func (s *Syncer) syncInChunks(state *desired.State) (Result, error) {
	var res Result
	var errs []error
	// One buffer holds each chunk's ops in turn: some 20,000 of 250 bytes,
	// which a plan of its own would grow by doubling, chunk after chunk.
	var ops []op
	for chunk := range slices.Chunk(state.Sorted(), firstSyncChunk) {
		changed := make([]desired.Frontend, len(chunk))
		for i, e := range chunk {
			changed[i] = e.Frontend
		}
		p := s.planInto(state, changed, ops[:0])
		ops = p.ops
		part, applyErrs := s.apply(p)
		res.add(part, p.leftOut)
		errs = append(errs, p.errs...)
		errs = append(errs, applyErrs...)
	}
	errs = append(errs, s.syncRefuse(state, &res)...)
	return res, errors.Join(errs...)
}

// add counts part, a later plan's result with the frontends it left out,
// into r.
func (r *Result) add(part Result, leftOut map[string]int) {
	r.Upserts += part.Upserts
	r.Deletes += part.Deletes
	r.Frontends = append(r.Frontends, part.Frontends...)
	r.RemovedBackends = append(r.RemovedBackends, part.RemovedBackends...)
	for _, counts := range []map[string]int{part.LeftOut, leftOut} {
		for reason, n := range counts {
			if r.LeftOut == nil {
				r.LeftOut = map[string]int{}
			}
			r.LeftOut[reason] += n
		}
	}
}

// SyncFrontends is Sync limited to the frontends that changed since the last
// sync (removed ones included), so that one Service's change among thousands
// costs what that Service costs. state is still the whole desired state.
func (s *Syncer) SyncFrontends(state *desired.State, changed []desired.Frontend) (Result, error) {
	if changed == nil {
		changed = []desired.Frontend{}
	}
	return s.sync(state, changed)
}

// sync plans every frontend when changed is nil, only those listed
// otherwise, and applies the plan.
func (s *Syncer) sync(state *desired.State, changed []desired.Frontend) (Result, error) {
	p := s.plan(state, changed)
	applied, errs := s.apply(p)
	var res Result
	res.add(applied, p.leftOut)
	errs = append(errs, s.syncRefuse(state, &res)...)
	return res, errors.Join(append(p.errs, errs...)...)
}

// apply runs p against the maps and keeps its id allocations.
func (s *Syncer) apply(p *plan) (Result, []error) {
	a := newApplier(s.tables, s.mirror, p.label)
	a.run(p.ops)
	s.serviceIDs, s.backendIDs = p.serviceIDs, p.backendIDs
	return a.result(), a.errs
}
