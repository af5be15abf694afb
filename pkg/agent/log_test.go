package agent

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/syncer"
)

func fullMapErrors(names ...string) error {
	var errs []error
	for _, n := range names {
		errs = append(errs, fmt.Errorf("program default/%s:http: the services map is full (16 entries): no room for 2 more", n))
	}
	return errors.Join(errs...)
}

// A failed sync logs one line: the count, the first few failures and how
// many more; at error level only when the failures changed since the last
// summary at error level, so a retry failing the same way is debug.
func TestFailureSummary(t *testing.T) {
	type step struct {
		err       error // nil: the sync succeeded
		wantLevel zapcore.Level
		wantMsg   string
		wantCount int64 // failures in the summary
		wantMore  int64
	}
	const summary = "sync left some of the state out; retrying"
	testCases := []struct {
		name  string
		steps []step
	}{
		{"a retry failing the same way is debug", []step{
			{fullMapErrors("a", "b"), zapcore.ErrorLevel, summary, 2, 0},
			{fullMapErrors("b", "a"), zapcore.DebugLevel, summary, 2, 0},
			{fullMapErrors("a", "b"), zapcore.DebugLevel, summary, 2, 0},
		}},
		{"a change in the failures is an error again", []step{
			{fullMapErrors("a", "b"), zapcore.ErrorLevel, summary, 2, 0},
			{fullMapErrors("a", "b", "c"), zapcore.ErrorLevel, summary, 3, 0},
			{fullMapErrors("a"), zapcore.ErrorLevel, summary, 1, 0},
		}},
		{"three are named, the rest counted", []step{
			{fullMapErrors("a", "b", "c", "d", "e"), zapcore.ErrorLevel, summary, 5, 2},
		}},
		{"after a success the same failures are an error again", []step{
			{fullMapErrors("a"), zapcore.ErrorLevel, summary, 1, 0},
			{nil, zapcore.InfoLevel, "sync failures cleared: every frontend is programmed", 0, 0},
			{fullMapErrors("a"), zapcore.ErrorLevel, summary, 1, 0},
		}},
		{"an error that joins nothing is one failure", []step{
			{errors.New("write backend 10.244.0.2:8080: no space"), zapcore.ErrorLevel, summary, 1, 0},
		}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			a := New(DefaultConfig(), staticSource{}, &recordingSyncer{}, zap.New(core))
			for i, st := range tc.steps {
				logs.TakeAll()
				if st.err != nil {
					a.logFailures(st.err, i)
				} else {
					a.logSync(true, 0, syncer.Result{}, nil, 0)
				}
				got := logs.FilterMessage(st.wantMsg).All()
				if len(got) != 1 {
					t.Fatalf("step %d: %d lines %q, want 1; all: %v", i, len(got), st.wantMsg, logs.All())
				}
				if got[0].Level != st.wantLevel {
					t.Errorf("step %d: %q at %s, want %s", i, st.wantMsg, got[0].Level, st.wantLevel)
				}
				if st.err == nil {
					continue
				}
				fields := got[0].ContextMap()
				named, _ := fields["first_failures"].([]interface{})
				if fields["failures"] != st.wantCount || fields["more_failures"] != st.wantMore || int64(len(named))+st.wantMore != st.wantCount {
					t.Errorf("step %d: fields %v, want %d failures, %d more", i, fields, st.wantCount, st.wantMore)
				}
			}
		})
	}
}

// A sync that wrote something is logged at info, saying what changed and
// how long it took; one that found nothing to do is debug, except the
// first, which says the agent is up.
func TestSyncLine(t *testing.T) {
	wrote := syncer.Result{Upserts: 3, Frontends: []syncer.FrontendChange{{Change: syncer.Added}, {Change: syncer.Changed}}}
	testCases := []struct {
		name   string
		first  bool
		result syncer.Result
		want   zapcore.Level
	}{
		{"the first sync, even with nothing to write", true, syncer.Result{}, zapcore.InfoLevel},
		{"a sync that wrote", false, wrote, zapcore.InfoLevel},
		{"a sync with nothing to write", false, syncer.Result{}, zapcore.DebugLevel},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			a := New(DefaultConfig(), staticSource{}, &recordingSyncer{}, zap.New(core))
			a.loggedSync = !tc.first
			a.logSync(false, 1, tc.result, nil, 0)
			got := logs.FilterMessage("synced").All()
			if len(got) != 1 || got[0].Level != tc.want {
				t.Fatalf("lines %v, want one \"synced\" at %s", logs.All(), tc.want)
			}
			f := got[0].ContextMap()
			if f["frontends_added"] != int64(len(tc.result.Frontends)/2) || f["upserts"] != int64(tc.result.Upserts) || f["took"] == nil {
				t.Errorf("fields %v do not say what changed and how long it took", f)
			}
		})
	}
}

// A repair makes the sync full and is logged once, naming what was
// repaired; a repair that keeps failing the same way is logged once.
func TestRepairBeforeSync(t *testing.T) {
	results := []struct {
		repaired []string
		err      error
	}{
		{nil, nil},
		{[]string{"lb_services"}, nil},
		{nil, errors.New("repair pin lb_nat: permission denied")},
		{nil, errors.New("repair pin lb_nat: permission denied")},
	}
	calls := 0
	cfg := DefaultConfig()
	cfg.RepairDatapath = func() ([]string, error) {
		r := results[calls]
		calls++
		return r.repaired, r.err
	}
	core, logs := observer.New(zapcore.DebugLevel)
	a := New(cfg, staticSource{}, &recordingSyncer{}, zap.New(core))
	a.built = true
	rec := a.syncer.(*recordingSyncer)
	for range results {
		if err := a.syncOnce(false); err != nil {
			t.Fatal(err)
		}
	}
	// staticSource is not incremental, so every sync is full; what counts
	// is what the log says.
	if n := len(rec.records); n != len(results) {
		t.Fatalf("%d syncs, want %d", n, len(results))
	}
	if got := logs.FilterMessage("datapath repaired; syncing everything").All(); len(got) != 1 || fmt.Sprint(got[0].ContextMap()["repaired"]) != "[lb_services]" {
		t.Errorf("repair lines %v, want one naming lb_services", got)
	}
	if got := logs.FilterMessage("repair the datapath").All(); len(got) != 1 || got[0].Level != zapcore.ErrorLevel {
		t.Errorf("repair failure lines %v, want one at error level", got)
	}
}

// The periodic check repairs a quiet node: a repair it makes is followed
// by a full sync, a check that finds nothing is no sync at all.
func TestPeriodicRepair(t *testing.T) {
	var mu sync.Mutex
	checks, broken := 0, false
	cfg := testConfig(desired.NodeInfo{Name: "node-1"})
	cfg.RepairPeriod = 20 * time.Millisecond
	cfg.RepairDatapath = func() ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		checks++
		if broken {
			broken = false
			return []string{"lb_services"}, nil
		}
		return nil, nil
	}
	rec := runTestAgent(t, cfg, staticSource{})
	rec.waitForRecord(t, "at start", func(syncRecord) bool { return true })
	waitChecks := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			c := checks
			mu.Unlock()
			if c >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d checks in 5 s, want %d", c, n)
			}
		}
	}
	count := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.records)
	}
	waitChecks(2) // the start's syncs are done
	quiet := count()
	waitChecks(7)
	if n := count(); n != quiet {
		t.Errorf("%d syncs during 5 checks that found nothing, want none", n-quiet)
	}
	mu.Lock()
	broken = true
	mu.Unlock()
	rec.waitForRecord(t, "after a repair", func(r syncRecord) bool { return r.full && quiet < len(rec.records) })
}
