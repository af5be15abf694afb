// Package agent runs the loop from objects to maps: it waits for its source
// to have a complete view, then on every change (coalesced and rate limited)
// builds the desired state and lets the syncer write the difference.
package agent

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/pkg/syncer"
)

// Config tunes the sync loop.
type Config struct {
	// Node describes the node when the source has no Node object
	// (standalone mode, or a cluster whose Node was not seen yet).
	Node desired.NodeInfo
	// MinSyncInterval and SyncBurst bound how often the maps are synced,
	// however fast objects change: changes in between are coalesced.
	MinSyncInterval time.Duration
	SyncBurst       int
	// ResyncPeriod is the period of a full sync with nothing changed, which
	// repairs maps that someone else modified.
	ResyncPeriod time.Duration
	// RetryBase and RetryMax bound the backoff after a failed sync.
	RetryBase, RetryMax time.Duration
	// Options configure the desired-state builder (NodePort addresses,
	// the external-IP allowlist, SNAT ports).
	Options desired.Options
	// ServiceCIDRs are Service CIDRs known from the flags (standalone
	// mode's --service-cidr); a source that reads ServiceCIDR objects adds
	// its own. Connects to an unallocated address in one are refused.
	ServiceCIDRs []netip.Prefix

	// OnNode, when set, is called with the node each full build is for,
	// the first time and whenever it changes: the north-south datapath
	// follows the node's addresses.
	OnNode func(desired.NodeInfo)
	// AfterSync, when set, is called with the desired state after every
	// sync that succeeded: what else follows the state (health checks).
	AfterSync func(*desired.State)
	// AfterSyncResult, when set, is called like AfterSync with what the
	// sync did too: what acts on changes (stale UDP sockets).
	AfterSyncResult func(*desired.State, syncer.Result)
	// OnProblem, when set, is called once for each new problem with an
	// object (an Event in a cluster); every problem is logged anyway.
	OnProblem func(*desired.ObjectError)
	// RepairDatapath, when set, is called before every sync to put back
	// what someone removed from under the datapath (a map's pin); it
	// returns what it repaired, and a repair makes the sync full.
	RepairDatapath func() ([]string, error)
	// RepairPeriod is how often a sync runs with nothing changed, so that
	// the repair runs even on a quiet node; zero: only with other syncs.
	RepairPeriod time.Duration

	// OnQueued, when set, is called whenever the source asks for a sync: a
	// change waits to be programmed (kube-proxy's QueuedUpdate). It must
	// not block.
	OnQueued func()
	// OnSync, when set, is called after every sync, failed or not, with
	// what it did: the metrics and the proxy health check follow it.
	OnSync func(SyncReport)
}

// SyncReport is what one sync did, for metrics and health.
type SyncReport struct {
	Full bool
	Took time.Duration
	// Err is the sync's failure, nil when everything was programmed.
	Err error
	// Result is what the syncer wrote and left out.
	Result syncer.Result
	// State is the desired state synced; it must not be modified.
	State *desired.State
	// Conflicts counts the frontend claims the state leaves out because
	// another Service holds the frontend.
	Conflicts int
	// ProgrammingLatencies holds, after a sync that succeeded, for each
	// Service whose EndpointSlice change it programmed, the time from the
	// change's endpoints.kubernetes.io/last-change-trigger-time to now:
	// kube-proxy's network programming latency (cluster mode).
	ProgrammingLatencies []time.Duration
}

// DefaultConfig is what socklb agent runs with.
func DefaultConfig() Config {
	return Config{
		MinSyncInterval: 10 * time.Millisecond,
		SyncBurst:       2,
		ResyncPeriod:    5 * time.Minute,
		RetryBase:       100 * time.Millisecond,
		RetryMax:        30 * time.Second,
		RepairPeriod:    10 * time.Second,
	}
}

// The queue holds at most these three items, so its de-duplication is
// exactly the coalescing wanted: any number of changes before a sync make
// one sync.
const (
	syncKey     = "sync"      // rebuild what changed
	fullSyncKey = "full-sync" // rebuild and diff everything
	repairKey   = "repair"    // check the datapath; sync in full if repaired
)

// Syncer writes desired states into the maps: *syncer.Syncer.
type Syncer interface {
	Sync(state *desired.State) (syncer.Result, error)
	SyncFrontends(state *desired.State, changed []desired.Frontend) (syncer.Result, error)
}

// ownersSource is a Syncer that knows who owns the frontends the maps
// already hold (*syncer.Syncer): the first build keeps them with their
// owners, so a restart hands no running Service's frontend to a newcomer.
type ownersSource interface {
	Owners() map[desired.Frontend]desired.ServiceRef
}

// serviceCIDRSource is a source that reads the cluster's Service CIDRs
// (the ServiceCIDR objects); it calls changed() when they change.
type serviceCIDRSource interface {
	ServiceCIDRs() []netip.Prefix
}

// Agent connects a source to the syncer.
type Agent struct {
	cfg     Config
	source  source.Source
	syncer  Syncer
	log     *zap.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	limiter flowcontrol.RateLimiter

	// desired is the desired state, updated one Service at a time between
	// full syncs; built tells whether a full sync has filled it.
	desired *desired.Builder
	built   bool
	// triggers holds when each change not yet programmed was triggered,
	// per Service, and allTriggered when a change of everything was: they
	// are kept across failed syncs, as the network programming latency
	// counts until a sync succeeds.
	triggers     map[desired.ServiceRef]time.Time
	allTriggered time.Time
	// endpointTriggers are the EndpointSlice controller's trigger times of
	// the changes not yet programmed, kept likewise.
	endpointTriggers map[desired.ServiceRef]time.Time
	// lastFailed makes the next sync full: after a failure the mirror is
	// right but which frontends still differ is not tracked.
	lastFailed bool
	// lastProblems holds the object problems already logged, so a periodic
	// sync does not repeat them.
	lastProblems map[string]bool
	// conflicts counts, per Service with any, its frontend claims left out
	// because another Service holds the frontend; kept per Service so that
	// a sync of a few Services among thousands recounts only theirs.
	conflicts map[desired.ServiceRef]int
	// lastFailures holds the sync failures of the last summary logged at
	// error level, so that a retry that fails the same way says so at
	// debug only; nil when the last sync succeeded.
	lastFailures map[string]bool
	// lastRepairErr is the last repair failure logged, likewise.
	lastRepairErr string
	// loggedSync tells whether a sync was logged at info yet.
	loggedSync bool
	// loggedUnused holds the slices without a Service already logged.
	loggedUnused map[desired.UnusedSlice]bool
}

// New makes an agent; Run starts it.
func New(cfg Config, src source.Source, s Syncer, log *zap.Logger) *Agent {
	retry := workqueue.NewTypedItemExponentialFailureRateLimiter[string](cfg.RetryBase, cfg.RetryMax)
	a := &Agent{
		cfg:    cfg,
		source: src,
		syncer: s,
		log:    log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(retry, workqueue.TypedRateLimitingQueueConfig[string]{
			Name: "socklb-sync",
		}),
		limiter:          flowcontrol.NewTokenBucketRateLimiter(float32(time.Second)/float32(cfg.MinSyncInterval), cfg.SyncBurst),
		desired:          desired.NewBuilderWithOptions(cfg.Node, cfg.Options),
		triggers:         map[desired.ServiceRef]time.Time{},
		endpointTriggers: map[desired.ServiceRef]time.Time{},
		lastProblems:     map[string]bool{},
		conflicts:        map[desired.ServiceRef]int{},
		loggedUnused:     map[desired.UnusedSlice]bool{},
	}
	if o, ok := s.(ownersSource); ok {
		a.desired.Hold(o.Owners())
	}
	return a
}

// Run blocks until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	srcErr := make(chan error, 1)
	go func() { srcErr <- a.source.Run(ctx, a.requestSync) }()
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()

	// Leftovers are pruned by the first sync, so it waits for a full view.
	a.log.Info("waiting for the source to sync")
	for !a.source.HasSynced() {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcErr:
			return fmt.Errorf("source stopped before it synced: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	a.log.Info("source synced")
	a.queue.Add(fullSyncKey)
	if a.cfg.RepairDatapath != nil && a.cfg.RepairPeriod > 0 {
		go a.tick(ctx, a.cfg.RepairPeriod)
	}

	for a.processOne(ctx) {
	}
	select {
	case err := <-srcErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	default:
	}
	return nil
}

// tick requests a datapath check every period, so that a quiet node is
// repaired too. It is queued like the syncs, so the kernel is never
// touched from two goroutines.
func (a *Agent) tick(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.queue.Add(repairKey)
		}
	}
}

func (a *Agent) requestSync() {
	if a.cfg.OnQueued != nil {
		a.cfg.OnQueued()
	}
	a.queue.Add(syncKey)
}

func (a *Agent) processOne(ctx context.Context) bool {
	key, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	defer a.queue.Done(key)
	if err := a.limiter.Wait(ctx); err != nil {
		return false
	}
	if key == repairKey {
		// Only a repair needs a sync: a sync after each check would rebuild
		// everything every period while a map is full.
		if len(a.repairDatapath()) > 0 {
			a.queue.Add(fullSyncKey)
		}
		return true
	}
	if err := a.syncOnce(key == fullSyncKey); err != nil {
		a.logFailures(err, a.queue.NumRequeues(key))
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	if key == fullSyncKey {
		a.queue.AddAfter(fullSyncKey, a.cfg.ResyncPeriod)
	}
	return true
}

// syncOnce rebuilds and diffs only the Services the source reports changed
// when it can. The first sync, every periodic resync, the sync after a
// failure and one after a pin repair diff every frontend against the maps
// (full); the desired state is rebuilt from every object only when it must
// be (the first build, a change every Service reads, a source that cannot
// say what changed). As kube-proxy's periodic sync renders its
// change-tracked state rather than its informers' objects, a resync then
// decodes nothing and holds one desired state, not two: at 30,000 Services
// the rebuild was the agent's memory peak. FuzzBuild holds the builder to
// building the same state either way.
func (a *Agent) syncOnce(full bool) error {
	start := time.Now()
	inc, incremental := a.source.(source.Incremental)
	var changes source.Changes
	if incremental {
		changes = inc.TakeChanges()
		a.keepTriggers(changes)
	}
	rebuild := !incremental || !a.built || changes.All
	repaired := a.repairDatapath()
	full = full || rebuild || a.lastFailed || len(repaired) > 0
	a.setServiceCIDRs()

	var changed []desired.Frontend
	if rebuild {
		// Changes taken above are in the full build too.
		a.buildAll(a.fullObjects())
	} else {
		changed = a.buildChanged(inc, changes.Services)
	}
	var stats syncer.Result
	var err error
	if full {
		stats, err = a.syncer.Sync(a.desired.State())
	} else {
		stats, err = a.syncer.SyncFrontends(a.desired.State(), changed)
	}
	a.lastFailed = err != nil
	if err == nil && a.cfg.AfterSync != nil {
		a.cfg.AfterSync(a.desired.State())
	}
	if err == nil && a.cfg.AfterSyncResult != nil {
		a.cfg.AfterSyncResult(a.desired.State(), stats)
	}
	took := time.Since(start)
	a.report(SyncReport{Full: full, Took: took, Err: err, Result: stats, State: a.desired.State()})
	a.logSync(full, len(changes.Services), stats, err, took)
	return err
}

// setServiceCIDRs gives the builder the Service CIDRs of the flags and the
// source, logging them when they change. They change no frontend: every
// sync writes the fail-fast trie from the state.
func (a *Agent) setServiceCIDRs() {
	cidrs := slices.Clone(a.cfg.ServiceCIDRs)
	if s, ok := a.source.(serviceCIDRSource); ok {
		cidrs = append(cidrs, s.ServiceCIDRs()...)
	}
	if a.desired.SetServiceCIDRs(cidrs) {
		a.log.Info("service cidrs", zap.Stringers(logfield.ServiceCIDRs, prefixStringers(a.desired.State().ServiceCIDRs)))
	}
}

func prefixStringers(ps []netip.Prefix) []fmt.Stringer {
	out := make([]fmt.Stringer, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

// report hands a sync's report to OnSync, with the conflicts and, after a
// success, the network programming latencies it completes.
func (a *Agent) report(r SyncReport) {
	if r.Err == nil {
		now := time.Now()
		for _, t := range a.endpointTriggers {
			r.ProgrammingLatencies = append(r.ProgrammingLatencies, now.Sub(t))
		}
		clear(a.endpointTriggers)
	}
	if a.cfg.OnSync == nil {
		return
	}
	for _, n := range a.conflicts {
		r.Conflicts += n
	}
	a.cfg.OnSync(r)
}

// countConflicts recounts the conflicts of the Services problems concern
// (every Service when all is set) from their problems.
func (a *Agent) countConflicts(problems []error, all bool) {
	if all {
		clear(a.conflicts)
	}
	for _, p := range problems {
		var oe *desired.ObjectError
		if errors.As(p, &oe) && oe.Reason == desired.ReasonFrontendConflict {
			a.conflicts[desired.ServiceRef{Namespace: oe.Namespace, Name: oe.Name}]++
		}
	}
}

// recountConflicts recounts the conflicts of refs and of the Services now
// holding the frontends in changed: a claim left out gets its frontend when
// the holder lets go, and only the holder's change says so.
func (a *Agent) recountConflicts(refs []desired.ServiceRef, changed []desired.Frontend) {
	recount := map[desired.ServiceRef]bool{}
	for _, ref := range refs {
		recount[ref] = true
	}
	for _, fe := range changed {
		if e, ok := a.desired.State().Frontends[fe]; ok {
			recount[desired.ServiceRef{Namespace: e.Name.Namespace, Name: e.Name.Name}] = true
		}
	}
	for ref := range recount {
		delete(a.conflicts, ref)
		a.countConflicts(a.desired.ErrorsOf(ref), false)
	}
}

// logSync logs what a sync did, at info when it wrote anything (or is the
// first): an operator sees every change applied and how long it took, and
// a resync or retry that finds nothing to do stays at debug.
func (a *Agent) logSync(full bool, servicesChanged int, stats syncer.Result, err error, took time.Duration) {
	var added, changed, removed int
	for _, fc := range stats.Frontends {
		switch fc.Change {
		case syncer.Added:
			added++
		case syncer.Changed:
			changed++
		case syncer.Removed:
			removed++
		}
	}
	fields := []zap.Field{
		zap.Bool(logfield.Full, full),
		zap.Int(logfield.ServicesChanged, servicesChanged),
		zap.Int(logfield.Frontends, len(a.desired.State().Frontends)),
		zap.Int(logfield.FrontendsAdded, added),
		zap.Int(logfield.FrontendsChanged, changed),
		zap.Int(logfield.FrontendsRemoved, removed),
		zap.Int(logfield.Upserts, stats.Upserts),
		zap.Int(logfield.Deletes, stats.Deletes),
		zap.Duration(logfield.Took, took),
	}
	if err == nil {
		if latency, ok := a.programmed(time.Now()); ok {
			fields = append(fields, zap.Duration(logfield.ProgrammingLatency, latency))
		}
		if a.lastFailures != nil {
			a.log.Info("sync failures cleared: every frontend is programmed")
			a.lastFailures = nil
		}
	}
	level := zapcore.DebugLevel
	if stats.Upserts+stats.Deletes > 0 || !a.loggedSync {
		level = zapcore.InfoLevel
		a.loggedSync = true
	}
	a.log.Check(level, "synced").Write(fields...)
}

// namedFailures is how many failures a summary names; the others are
// counted. A full map fails every frontend that does not fit, and naming
// ten thousand of them every retry made lines of 800 KB.
const namedFailures = 3

// logFailures logs one line for a failed sync: how many failures, the
// first few, the rest counted. It is an error when the failures differ
// from the last summary at error level, and debug when a retry failed the
// same way (the condition is known, and the retry runs every 30 s).
func (a *Agent) logFailures(err error, retries int) {
	msgs := failureMessages(err)
	now := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		now[m] = true
	}
	level := zapcore.DebugLevel
	if !maps.Equal(now, a.lastFailures) {
		level = zapcore.ErrorLevel
		a.lastFailures = now
	}
	shown := msgs[:min(namedFailures, len(msgs))]
	a.log.Check(level, "sync left some of the state out; retrying").Write(
		zap.Int(logfield.Failures, len(msgs)),
		zap.Strings(logfield.FirstFailures, shown),
		zap.Int(logfield.MoreFailures, len(msgs)-len(shown)),
		zap.Int(logfield.Retries, retries))
}

// failureMessages flattens the errors joined in err, sorted so that a
// summary names the same first ones from one retry to the next.
func failureMessages(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range multi.Unwrap() {
				walk(inner)
			}
			return
		}
		if e != nil {
			out = append(out, e.Error())
		}
	}
	walk(err)
	slices.Sort(out)
	return slices.Compact(out)
}

// repairDatapath runs the datapath's repair, logging what it did once.
func (a *Agent) repairDatapath() []string {
	if a.cfg.RepairDatapath == nil {
		return nil
	}
	repaired, err := a.cfg.RepairDatapath()
	if err != nil && err.Error() != a.lastRepairErr {
		a.log.Error("repair the datapath", zap.Error(err))
	}
	a.lastRepairErr = ""
	if err != nil {
		a.lastRepairErr = err.Error()
	}
	if len(repaired) > 0 {
		a.log.Info("datapath repaired; syncing everything", zap.Strings(logfield.Repaired, repaired))
	}
	return repaired
}

// fullObjects is what a full build reads from the source: its node and
// its objects one Service at a time when it can stream them, else its
// Snapshot grouped by Service.
func (a *Agent) fullObjects() (*desired.NodeInfo, iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice]) {
	if s, ok := a.source.(source.Streaming); ok {
		return s.Stream()
	}
	snap := a.source.Snapshot()
	return snap.Node, desired.GroupByService(snap.Services, snap.EndpointSlices)
}

// buildAll rebuilds the whole desired state from objects, for the node the
// source describes (sourceNode) or, without one, the node of the config.
func (a *Agent) buildAll(sourceNode *desired.NodeInfo, objects iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice]) {
	node := a.cfg.Node
	if sourceNode != nil {
		node = *sourceNode
	}
	if !a.built || !node.Equal(a.desired.Node()) {
		a.log.Info("build for node", zap.String(logfield.Name, node.Name), zap.String(logfield.Zone, node.Zone),
			zap.Stringers(logfield.Addresses, nodeAddrs(node)))
		if a.cfg.OnNode != nil {
			a.cfg.OnNode(node)
		}
	}
	a.desired.ResetEach(node, objects)
	a.built = true
	problems := a.desired.Errors()
	a.countConflicts(problems, true)
	a.logProblems(problems)
	a.logUnusedSlices()
}

// buildChanged rebuilds the Services in refs and returns the frontends
// whose entry changed.
func (a *Agent) buildChanged(inc source.Incremental, refs []desired.ServiceRef) []desired.Frontend {
	var changed []desired.Frontend
	for _, ref := range refs {
		svc, slices := inc.Objects(ref)
		changed = append(changed, a.desired.Update(ref, svc, slices)...)
		a.logServiceProblems(ref)
	}
	a.recountConflicts(refs, changed)
	a.logUnusedSlices()
	return changed
}

// logUnusedSlices logs, at debug level and once while it lasts, each
// EndpointSlice whose Service does not exist.
func (a *Agent) logUnusedSlices() {
	now := map[desired.UnusedSlice]bool{}
	for _, s := range a.desired.UnusedSlices() {
		now[s] = true
		if !a.loggedUnused[s] {
			a.log.Debug("endpoint slice translates nothing: its service does not exist",
				zap.String(logfield.Object, "EndpointSlice "+s.Namespace+"/"+s.Name), zap.String(logfield.Service, s.Service))
		}
	}
	a.loggedUnused = now
}

// keepTriggers adds the trigger times of changes to those not yet
// programmed, keeping the oldest per Service.
func (a *Agent) keepTriggers(c source.Changes) {
	for ref, t := range c.TriggerTimes {
		if have, ok := a.triggers[ref]; !ok || t.Before(have) {
			a.triggers[ref] = t
		}
	}
	if c.All && (a.allTriggered.IsZero() || c.AllTriggered.Before(a.allTriggered)) {
		a.allTriggered = c.AllTriggered
	}
	for ref, t := range c.EndpointTriggerTimes {
		if have, ok := a.endpointTriggers[ref]; !ok || t.Before(have) {
			a.endpointTriggers[ref] = t
		}
	}
}

// programmed forgets the trigger times after a successful sync and returns
// the network programming latency: from the oldest of them to now; ok is
// false when there were none. The metrics will export it.
func (a *Agent) programmed(now time.Time) (latency time.Duration, ok bool) {
	oldest := a.allTriggered
	for _, t := range a.triggers {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	clear(a.triggers)
	a.allTriggered = time.Time{}
	if oldest.IsZero() {
		return 0, false
	}
	return now.Sub(oldest), true
}

func nodeAddrs(node desired.NodeInfo) []fmt.Stringer {
	out := make([]fmt.Stringer, 0, len(node.Addresses))
	for _, a := range node.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

// logProblems logs the problems not logged before, so that a periodic sync
// does not repeat them.
func (a *Agent) logProblems(problems []error) {
	now := make(map[string]bool, len(problems))
	for _, p := range problems {
		now[p.Error()] = true
		if !a.lastProblems[p.Error()] {
			a.logProblem(p)
		}
	}
	a.lastProblems = now
}

// logServiceProblems logs the new problems of one rebuilt Service.
func (a *Agent) logServiceProblems(ref desired.ServiceRef) {
	for _, p := range a.desired.ErrorsOf(ref) {
		if !a.lastProblems[p.Error()] {
			a.lastProblems[p.Error()] = true
			a.logProblem(p)
		}
	}
}

func (a *Agent) logProblem(p error) {
	var oe *desired.ObjectError
	if errors.As(p, &oe) {
		a.log.Error("bad object", zap.String(logfield.Object, oe.Object()), zap.Error(oe.Err))
		if a.cfg.OnProblem != nil {
			a.cfg.OnProblem(oe)
		}
	} else {
		a.log.Error("bad object", zap.Error(p))
	}
}
