// Package agent runs the loop from objects to maps: it waits for its source
// to have a complete view, then on every change (coalesced and rate limited)
// builds the desired state and lets the syncer write the difference.
package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/pkg/syncer"
)

// Config tunes the sync loop.
type Config struct {
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
}

// DefaultConfig is what socklb agent runs with.
func DefaultConfig() Config {
	return Config{
		MinSyncInterval: 10 * time.Millisecond,
		SyncBurst:       2,
		ResyncPeriod:    5 * time.Minute,
		RetryBase:       100 * time.Millisecond,
		RetryMax:        30 * time.Second,
	}
}

// syncKey is the only item in the queue: every sync is a full diff, so the
// queue's de-duplication is exactly the coalescing wanted.
const syncKey = "sync"

// Agent connects a source to the syncer.
type Agent struct {
	cfg     Config
	source  source.Source
	syncer  *syncer.Syncer
	log     *zap.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	limiter flowcontrol.RateLimiter

	// lastProblems holds the object problems already logged, so a periodic
	// sync does not repeat them.
	lastProblems map[string]bool
	// OnSynced, when set, is called after each successful sync (tests, metrics).
	OnSynced func(syncer.Stats)
}

// New makes an agent; Run starts it.
func New(cfg Config, src source.Source, s *syncer.Syncer, log *zap.Logger) *Agent {
	retry := workqueue.NewTypedItemExponentialFailureRateLimiter[string](cfg.RetryBase, cfg.RetryMax)
	return &Agent{
		cfg:    cfg,
		source: src,
		syncer: s,
		log:    log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(retry, workqueue.TypedRateLimitingQueueConfig[string]{
			Name: "socklb-sync",
		}),
		limiter:      flowcontrol.NewTokenBucketRateLimiter(float32(time.Second)/float32(cfg.MinSyncInterval), cfg.SyncBurst),
		lastProblems: map[string]bool{},
	}
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
	a.requestSync()

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

func (a *Agent) requestSync() {
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
	if err := a.syncOnce(); err != nil {
		a.log.Error("sync failed; retrying", zap.Error(err), zap.Int("retries", a.queue.NumRequeues(key)))
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	a.queue.AddAfter(key, a.cfg.ResyncPeriod)
	return true
}

func (a *Agent) syncOnce() error {
	start := time.Now()
	snap := a.source.Snapshot()
	state, problems := desired.Build(snap.Services, snap.EndpointSlices, a.cfg.Node)
	a.logProblems(problems)
	stats, err := a.syncer.Sync(state)
	a.log.Debug("synced",
		zap.Int("frontends", len(state.Services)),
		zap.Int("upserts", stats.Upserts),
		zap.Int("deletes", stats.Deletes),
		zap.Duration("took", time.Since(start)))
	if err != nil {
		return err
	}
	if a.OnSynced != nil {
		a.OnSynced(stats)
	}
	return nil
}

func (a *Agent) logProblems(problems []error) {
	now := make(map[string]bool, len(problems))
	for _, p := range problems {
		msg := p.Error()
		now[msg] = true
		if a.lastProblems[msg] {
			continue
		}
		var oe *desired.ObjectError
		if errors.As(p, &oe) {
			a.log.Error("bad object", zap.String("object", oe.Object()), zap.Error(oe.Err))
		} else {
			a.log.Error("bad object", zap.Error(p))
		}
	}
	a.lastProblems = now
}
