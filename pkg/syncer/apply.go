package syncer

import (
	"fmt"
	"maps"
	"slices"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// applier runs a plan's ops against the maps, one batch per stage, and keeps
// the mirror in step with every op that succeeds. A failing op fails its
// frontend: the frontend's later ops are skipped, so what the maps already
// hold of it stays consistent, and everything else goes on.
type applier struct {
	t       lbmap.Tables
	mr      *mirror
	label   func(desired.Frontend) string
	failed  map[desired.Frontend]bool
	changes map[frontendScope]Change
	res     Result
	errs    []error
}

func newApplier(t lbmap.Tables, mr *mirror, label func(desired.Frontend) string) *applier {
	return &applier{t: t, mr: mr, label: label, failed: map[desired.Frontend]bool{}, changes: map[frontendScope]Change{}}
}

// run applies ops, batching the consecutive ones of one action.
func (a *applier) run(ops []op) {
	for start := 0; start < len(ops); {
		end := start + 1
		for end < len(ops) && ops[end].action == ops[start].action {
			end++
		}
		a.batch(ops[start:end])
		start = end
	}
}

func (a *applier) batch(ops []op) {
	// Copied only when an op is cancelled: a first sync's batches hold
	// tens of thousands of ops of some 250 bytes, and none is.
	run := ops
	for i := range ops {
		if a.cancelled(&ops[i]) {
			run = make([]op, 0, len(ops))
			for j := range ops {
				if !a.cancelled(&ops[j]) {
					run = append(run, ops[j])
				}
			}
			break
		}
	}
	if len(run) == 0 {
		return
	}
	var failed []lbmap.EntryError
	switch run[0].action {
	case writeNodeConfig:
		failed = update(a.t.NodeConfig, run, func(o *op) (uint32, lbmap.NodeConfig) { return nodeConfigKey, o.nodeConfig })
	case writeSourceRange:
		failed = update(a.t.SourceRanges, run, func(o *op) (lbmap.SourceRangeKey, uint8) { return o.rangeKey, sourceRangeAllowed })
	case deleteSourceRange, deleteStraySourceRange:
		failed = remove(a.t.SourceRanges, run, func(o *op) lbmap.SourceRangeKey { return o.rangeKey })
	case writeBackend:
		failed = update(a.t.Backends, run, func(o *op) (uint32, lbmap.Backend) { return o.id, o.backend })
	case writeRevNat:
		failed = update(a.t.RevNat, run, func(o *op) (uint32, lbmap.RevNat) { return o.id, o.revNat })
	case writeName:
		failed = update(a.t.ServiceNames, run, func(o *op) (uint32, lbmap.ServiceName) { return o.id, *o.name })
	case writeSlot, writeInternalMaster, writeMaster:
		failed = update(a.t.Services, run, func(o *op) (lbmap.ServiceKey, lbmap.ServiceValue) { return o.key, o.value })
	case deleteMaster, deleteInternalMaster, deleteSlot, deleteStray:
		failed = remove(a.t.Services, run, func(o *op) lbmap.ServiceKey { return o.key })
	case deleteRevNat:
		failed = remove(a.t.RevNat, run, func(o *op) uint32 { return o.id })
	case deleteName:
		failed = remove(a.t.ServiceNames, run, func(o *op) uint32 { return o.id })
	case deleteBackend:
		failed = remove(a.t.Backends, run, func(o *op) uint32 { return o.id })
	}
	bad := make(map[int]error, len(failed))
	for _, f := range failed {
		bad[f.Index] = f.Err
	}
	for i := range run {
		if err, ok := bad[i]; ok {
			a.fail(&run[i], err)
		} else {
			a.done(&run[i])
		}
	}
}

func update[K comparable, V any](t lbmap.Table[K, V], ops []op, entry func(*op) (K, V)) []lbmap.EntryError {
	keys := make([]K, len(ops))
	values := make([]V, len(ops))
	for i := range ops {
		keys[i], values[i] = entry(&ops[i])
	}
	return t.Update(keys, values)
}

func remove[K comparable, V any](t lbmap.Table[K, V], ops []op, key func(*op) K) []lbmap.EntryError {
	keys := make([]K, len(ops))
	for i := range ops {
		keys[i] = key(&ops[i])
	}
	return t.Delete(keys)
}

// cancelled reports whether a failure earlier in the plan forbids o.
func (a *applier) cancelled(o *op) bool {
	if o.owned() {
		return a.failed[o.fs.fe]
	}
	if o.action == writeBackend || o.action == writeNodeConfig {
		return false // its users have not been written yet; the node config has none
	}
	for _, fe := range o.users {
		if a.failed[fe] {
			return true
		}
	}
	return false
}

func (a *applier) fail(o *op, err error) {
	what := doing[o.action]
	if o.fs.scope == lbmap.ScopeInternal {
		what += " of the internal scope"
	}
	switch {
	case o.action == writeBackend:
		b := backendOfValue(o.backend)
		a.errs = append(a.errs, fmt.Errorf("write backend %s: %w", b, err))
		for _, fe := range o.users {
			a.failFrontend(fe, fmt.Errorf("%s: not changed: backend %s could not be written", a.label(fe), b))
		}
	case o.owned():
		a.failFrontend(o.fs.fe, fmt.Errorf("%s: %s: %w", a.label(o.fs.fe), what, err))
	case o.action == deleteBackend:
		a.errs = append(a.errs, fmt.Errorf("%s %s (id %d): %w", what, backendOfValue(a.mr.backends[o.id]), o.id, err))
	case o.action == deleteStray:
		a.errs = append(a.errs, fmt.Errorf("%s %s: %w", what, o.key, err))
	case o.action == writeNodeConfig:
		a.errs = append(a.errs, fmt.Errorf("%s: %w", what, err))
	case o.action == deleteStraySourceRange:
		a.errs = append(a.errs, fmt.Errorf("%s %s of service id %d: %w", what, o.rangeKey.Prefix(), o.rangeKey.ServiceID(), err))
	default:
		a.errs = append(a.errs, fmt.Errorf("%s of service id %d: %w", what, o.id, err))
	}
}

func (a *applier) failFrontend(fe desired.Frontend, err error) {
	if !a.failed[fe] {
		a.errs = append(a.errs, err)
		if a.res.LeftOut == nil {
			a.res.LeftOut = map[string]int{}
		}
		a.res.LeftOut[LeftOutWriteFailed]++
	}
	a.failed[fe] = true
}

// done records in the mirror what o wrote.
func (a *applier) done(o *op) {
	mr := a.mr
	switch o.action {
	case writeNodeConfig:
		mr.nodeConfig = o.nodeConfig
	case writeSourceRange:
		mr.entry(o.fs, o.rangeKey.ServiceID()) // as for rev_nat: a retry keeps the id
		mr.addSourceRange(o.rangeKey)
	case deleteSourceRange, deleteStraySourceRange:
		mr.deleteSourceRange(o.rangeKey)
	case writeBackend:
		mr.setBackend(o.id, o.backend)
	case writeRevNat:
		mr.entry(o.fs, o.id) // remembered before any slot, so that a retry keeps the id
		mr.revNat[o.id] = o.revNat
	case writeName:
		mr.entry(o.fs, o.id)
		mr.names[o.id] = o.name.Get()
	case writeSlot:
		e := mr.entry(o.fs, o.value.ServiceId)
		if e.written {
			a.note(o.fs, Changed)
		}
		mr.setSlot(e, o.key.Slot, o.value.BackendId)
	case writeInternalMaster, writeMaster:
		e := mr.entry(o.fs, o.value.ServiceId)
		if e.written {
			a.note(o.fs, Changed)
		} else {
			a.note(o.fs, Added)
		}
		mr.setMaster(e, o.value)
	case deleteMaster, deleteInternalMaster:
		if e := mr.frontends[o.fs]; e != nil {
			mr.setWritten(e, false)
			mr.forgetIfEmpty(o.fs)
		}
		a.note(o.fs, Removed)
	case deleteSlot:
		if e := mr.frontends[o.fs]; e != nil {
			mr.deleteSlot(e, o.key.Slot)
			mr.forgetIfEmpty(o.fs)
		}
	case deleteStray:
		delete(mr.strays, o.key)
	case forgetScope:
		mr.forgetIfEmpty(o.fs)
		return // no map write to count
	case deleteRevNat:
		delete(mr.revNat, o.id)
	case deleteName:
		delete(mr.names, o.id)
	case deleteBackend:
		if v, ok := mr.backends[o.id]; ok {
			a.res.RemovedBackends = append(a.res.RemovedBackends, RemovedBackend{Backend: backendOfValue(v), ID: o.id})
		}
		mr.deleteBackend(o.id)
	}
	if o.action < deleteMaster { // the writes come first
		a.res.Upserts++
	} else {
		a.res.Deletes++
	}
}

// note records what happened to a scope; being added or removed says more
// than being changed.
func (a *applier) note(fs frontendScope, c Change) {
	if cur, ok := a.changes[fs]; !ok || cur == Changed {
		a.changes[fs] = c
	}
}

func (a *applier) result() Result {
	keys := slices.SortedFunc(maps.Keys(a.changes), func(x, y frontendScope) int {
		if c := x.fe.Compare(y.fe); c != 0 {
			return c
		}
		return int(x.scope) - int(y.scope)
	})
	for _, fs := range keys {
		a.res.Frontends = append(a.res.Frontends, FrontendChange{Frontend: fs.fe, Scope: fs.scope, Change: a.changes[fs]})
	}
	return a.res
}
