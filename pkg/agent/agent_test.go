package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/pkg/source/k8s"
	"github.com/socklb/socklb/pkg/syncer"
)

// syncRecord is what one call of the syncer was given, copied at the call:
// the Builder keeps changing the state afterwards.
type syncRecord struct {
	full      bool
	node      desired.NodeInfo
	frontends []string // "frontend -> backends"
}

// recordingSyncer is a Syncer that writes no map and remembers each call.
type recordingSyncer struct {
	mu      sync.Mutex
	records []syncRecord
}

func (r *recordingSyncer) record(state *desired.State, full bool) (syncer.Result, error) {
	rec := syncRecord{full: full, node: state.Node}
	for _, fe := range state.Sorted() {
		rec.frontends = append(rec.frontends, fmt.Sprintf("%s -> %v", fe.Frontend, fe.Active))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return syncer.Result{}, nil
}

func (r *recordingSyncer) Sync(state *desired.State) (syncer.Result, error) {
	return r.record(state, true)
}

func (r *recordingSyncer) SyncFrontends(state *desired.State, _ []desired.Frontend) (syncer.Result, error) {
	return r.record(state, false)
}

// waitForRecord waits at most five seconds for a call that match accepts.
func (r *recordingSyncer) waitForRecord(t *testing.T, what string, match func(syncRecord) bool) syncRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		i := slices.IndexFunc(r.records, match)
		var rec syncRecord
		if i >= 0 {
			rec = r.records[i]
		}
		all := slices.Clone(r.records)
		r.mu.Unlock()
		if i >= 0 {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sync %s; the syncer was given:\n%+v", what, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runTestAgent runs an agent on src until the test ends.
func runTestAgent(t *testing.T, cfg Config, src source.Source) *recordingSyncer {
	t.Helper()
	rec := &recordingSyncer{}
	a := New(cfg, src, rec, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return rec
}

func testConfig(node desired.NodeInfo) Config {
	cfg := DefaultConfig()
	cfg.Node = node
	cfg.MinSyncInterval = time.Millisecond
	return cfg
}

// A change of the Node's zone label in the API reaches the desired state
// the agent hands the syncer, through the informers, the change tracker and
// a full build.
func TestNodeLabelChangeReachesDesiredState(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2"}, NodeName: ptr.To("node-1")}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	client := fake.NewClientset(node, svc, slice)
	src, err := k8s.NewSource(client, "node-1", zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	// The config's node is what the agent would use without a Node object.
	rec := runTestAgent(t, testConfig(desired.NodeInfo{Name: "node-1", Zone: "from-flags"}), src)
	wantFrontends := []string{"10.96.0.10:80/TCP -> [10.244.0.2:8080/TCP]"}

	first := rec.waitForRecord(t, "for zone-a", func(r syncRecord) bool { return r.node.Zone == "zone-a" })
	if !first.full || !slices.Equal(first.frontends, wantFrontends) || len(first.node.Addresses) != 1 {
		t.Errorf("first sync = %+v, want a full one of %v on a node with one address", first, wantFrontends)
	}

	n, err := client.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Node: %v", err)
	}
	n.Labels[corev1.LabelTopologyZone] = "zone-b"
	if _, err := client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update Node: %v", err)
	}
	after := rec.waitForRecord(t, "for zone-b", func(r syncRecord) bool { return r.node.Zone == "zone-b" })
	if !after.full || !slices.Equal(after.frontends, wantFrontends) || after.node.Name != "node-1" {
		t.Errorf("sync after the zone change = %+v, want a full one of %v on node-1", after, wantFrontends)
	}
}

// staticSource is a Source of fixed objects and no Node, like the
// directory source.
type staticSource struct{ snap source.Snapshot }

func (s staticSource) Run(ctx context.Context, changed func()) error {
	changed()
	<-ctx.Done()
	return nil
}
func (s staticSource) HasSynced() bool           { return true }
func (s staticSource) Snapshot() source.Snapshot { return s.snap }

// Without a Node object the desired state is built for the node of the
// config (the agent's flags in standalone mode).
func TestNodeFromConfigWithoutNodeObject(t *testing.T) {
	node := desired.NodeInfo{Name: "node-1", Zone: "zone-a"}
	rec := runTestAgent(t, testConfig(node), staticSource{})
	got := rec.waitForRecord(t, "at all", func(syncRecord) bool { return true })
	if !got.node.Equal(node) {
		t.Errorf("state built for %+v, want %+v", got.node, node)
	}
}

// The network programming latency counts from the oldest change not yet
// programmed, across failed syncs, to the sync that succeeds.
func TestProgrammingLatency(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	web, api := desired.ServiceRef{Namespace: "default", Name: "web"}, desired.ServiceRef{Namespace: "default", Name: "api"}
	type step struct {
		changes     source.Changes
		succeedAt   time.Time // zero: the sync fails
		wantLatency time.Duration
		wantOK      bool
	}
	testCases := []struct {
		name  string
		steps []step
	}{
		{"one change", []step{
			{source.Changes{Services: []desired.ServiceRef{web}, TriggerTimes: map[desired.ServiceRef]time.Time{web: at(1)}}, at(3), 2 * time.Second, true},
		}},
		{"nothing triggered, nothing measured", []step{
			{source.Changes{}, at(3), 0, false},
		}},
		{"a failed sync keeps its triggers for the next", []step{
			{source.Changes{Services: []desired.ServiceRef{web}, TriggerTimes: map[desired.ServiceRef]time.Time{web: at(1)}}, time.Time{}, 0, false},
			{source.Changes{Services: []desired.ServiceRef{api}, TriggerTimes: map[desired.ServiceRef]time.Time{api: at(5)}}, at(6), 5 * time.Second, true},
		}},
		{"a success forgets its triggers", []step{
			{source.Changes{Services: []desired.ServiceRef{web}, TriggerTimes: map[desired.ServiceRef]time.Time{web: at(1)}}, at(2), time.Second, true},
			{source.Changes{Services: []desired.ServiceRef{api}, TriggerTimes: map[desired.ServiceRef]time.Time{api: at(5)}}, at(6), time.Second, true},
		}},
		{"a Node change counts from when it was seen", []step{
			{source.Changes{All: true, AllTriggered: at(1), Services: []desired.ServiceRef{web}, TriggerTimes: map[desired.ServiceRef]time.Time{web: at(2)}}, at(4), 3 * time.Second, true},
		}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			a := New(DefaultConfig(), staticSource{}, &recordingSyncer{}, zaptest.NewLogger(t))
			for i, st := range tc.steps {
				a.keepTriggers(st.changes)
				if st.succeedAt.IsZero() {
					continue
				}
				latency, ok := a.programmed(st.succeedAt)
				if latency != st.wantLatency || ok != st.wantOK {
					t.Errorf("step %d: latency %s (ok=%t), want %s (ok=%t)", i, latency, ok, st.wantLatency, st.wantOK)
				}
			}
		})
	}
}

// A slice whose Service does not exist is logged at debug level once
// while it lasts, not at every sync, and again if it comes back.
func TestUnusedSliceLoggedOnce(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	a := New(DefaultConfig(), nil, &recordingSyncer{}, zap.New(core))
	orphan := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gone-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "gone"}}}
	const msg = "endpoint slice translates nothing: its service does not exist"
	for _, step := range []struct {
		desc   string
		slices []*discoveryv1.EndpointSlice
		want   int // lines logged so far
	}{
		{"first sync", []*discoveryv1.EndpointSlice{orphan}, 1},
		{"next sync", []*discoveryv1.EndpointSlice{orphan}, 1},
		{"the slice goes", nil, 1},
		{"the slice is back", []*discoveryv1.EndpointSlice{orphan}, 2},
	} {
		a.buildAll(nil, desired.GroupByService(nil, step.slices))
		lines := logs.FilterMessage(msg).All()
		if len(lines) != step.want {
			t.Fatalf("%s: %d lines %q, want %d", step.desc, len(lines), msg, step.want)
		}
		if l := lines[len(lines)-1]; l.Level != zap.DebugLevel || l.ContextMap()["object"] != "EndpointSlice default/gone-1" || l.ContextMap()["service"] != "gone" {
			t.Errorf("%s: logged %v at %s, want the slice and its Service at debug level", step.desc, l.ContextMap(), l.Level)
		}
	}
}

// holdingSyncer is a recordingSyncer over maps that already hold frontends.
type holdingSyncer struct {
	recordingSyncer
	owners map[desired.Frontend]desired.ServiceRef
}

func (h *holdingSyncer) Owners() map[desired.Frontend]desired.ServiceRef { return h.owners }

// After a restart the first build keeps a frontend with the Service the
// maps hold, though a newcomer claiming it is older and first by name.
func TestRestartKeepsTheFrontendOwner(t *testing.T) {
	svc := func(name string, created time.Time) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(created)},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
	}
	fe := desired.Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: desired.TCP}
	held := &holdingSyncer{owners: map[desired.Frontend]desired.ServiceRef{fe: {Namespace: "default", Name: "web"}}}
	a := New(DefaultConfig(), nil, held, zaptest.NewLogger(t))
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a.buildAll(nil, desired.GroupByService([]*corev1.Service{svc("aaa", now.Add(-time.Hour)), svc("web", now)}, nil))
	if got := a.desired.State().Frontends[fe]; got == nil || got.Name.Name != "web" {
		t.Errorf("after a restart %s is held by %v, want default/web, which the maps hold", fe, got)
	}
}

// OnSync hears every sync: the network programming latencies of the
// EndpointSlice trigger times it completes, kept across a failure.
func TestSyncReports(t *testing.T) {
	web, api := desired.ServiceRef{Namespace: "default", Name: "web"}, desired.ServiceRef{Namespace: "default", Name: "api"}
	type step struct {
		triggered     map[desired.ServiceRef]time.Duration // ago
		err           error
		wantLatencies int
		wantAtLeast   time.Duration // the oldest latency
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a success reports the latency of its change", []step{
			{map[desired.ServiceRef]time.Duration{web: 2 * time.Second}, nil, 1, 2 * time.Second},
		}},
		{"a failure reports none and keeps them for the success", []step{
			{map[desired.ServiceRef]time.Duration{web: 2 * time.Second}, errors.New("the services map is full"), 0, 0},
			{map[desired.ServiceRef]time.Duration{api: time.Second}, nil, 2, 2 * time.Second},
			{nil, nil, 0, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var reports []SyncReport
			cfg := DefaultConfig()
			cfg.OnSync = func(r SyncReport) { reports = append(reports, r) }
			a := New(cfg, staticSource{}, &recordingSyncer{}, zaptest.NewLogger(t))
			for i, st := range tc.steps {
				c := source.Changes{EndpointTriggerTimes: map[desired.ServiceRef]time.Time{}}
				for ref, ago := range st.triggered {
					c.EndpointTriggerTimes[ref] = time.Now().Add(-ago)
				}
				a.keepTriggers(c)
				a.report(SyncReport{Err: st.err})
				r := reports[len(reports)-1]
				if len(r.ProgrammingLatencies) != st.wantLatencies {
					t.Errorf("step %d: latencies %v, want %d", i, r.ProgrammingLatencies, st.wantLatencies)
				}
				if st.wantLatencies > 0 && slices.Max(r.ProgrammingLatencies) < st.wantAtLeast {
					t.Errorf("step %d: latencies %v, want the oldest at least %s", i, r.ProgrammingLatencies, st.wantAtLeast)
				}
			}
		})
	}
}

// objectsSource is an Incremental source whose Objects are a fixed set.
type objectsSource struct {
	staticSource
	services map[desired.ServiceRef]*corev1.Service
}

func (s objectsSource) TakeChanges() source.Changes { return source.Changes{} }
func (s objectsSource) Objects(ref desired.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	return s.services[ref], nil
}

// The conflicts a sync reports follow the claims left out, through full
// builds and through rebuilds of a few Services: a newcomer left out gets
// the frontend when its holder goes, though only the holder changed.
func TestConflictsReported(t *testing.T) {
	clusterIP := func(name string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
	}
	ref := func(name string) desired.ServiceRef { return desired.ServiceRef{Namespace: "default", Name: name} }
	type step struct {
		full     bool     // a full build of services; else a rebuild of changed
		services []string // the Services that exist
		changed  []string
		want     int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"two Services on one frontend: one claim left out", []step{{true, []string{"api", "web"}, nil, 1}}},
		{"three on one frontend: two", []step{{true, []string{"api", "web", "zzz"}, nil, 2}}},
		{"the holder goes: the one left out gets the frontend", []step{
			{true, []string{"api", "web"}, nil, 1},
			{false, []string{"web"}, []string{"api"}, 0},
		}},
		{"a newcomer on a held frontend is left out", []step{
			{true, []string{"api"}, nil, 0},
			{false, []string{"api", "web"}, []string{"web"}, 1},
		}},
		{"the newcomer goes again", []step{
			{true, []string{"api", "web"}, nil, 1},
			{false, []string{"api"}, []string{"web"}, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			cfg := DefaultConfig()
			cfg.OnSync = func(r SyncReport) { got = append(got, r.Conflicts) }
			a := New(cfg, staticSource{}, &recordingSyncer{}, zaptest.NewLogger(t))
			for i, st := range tc.steps {
				src := objectsSource{services: map[desired.ServiceRef]*corev1.Service{}}
				var all []*corev1.Service
				for _, name := range st.services {
					src.services[ref(name)] = clusterIP(name)
					all = append(all, clusterIP(name))
				}
				if st.full {
					a.buildAll(nil, desired.GroupByService(all, nil))
				} else {
					var refs []desired.ServiceRef
					for _, name := range st.changed {
						refs = append(refs, ref(name))
					}
					a.buildChanged(src, refs)
				}
				a.report(SyncReport{})
				if got[i] != st.want {
					t.Errorf("step %d (Services %v): %d conflicts reported, want %d", i, st.services, got[i], st.want)
				}
			}
		})
	}
}
