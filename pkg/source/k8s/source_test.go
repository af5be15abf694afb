package k8s

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// waitFor polls cond for at most five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runTestSource runs a Source on client until the test ends; calls counts
// its calls of changed.
func runTestSource(t *testing.T, client *fake.Clientset, nodeName string) (src *Source, calls *atomic.Int32) {
	t.Helper()
	src, err := NewSource(client, nodeName, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	calls = new(atomic.Int32)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		// Run returns ctx's error when it ends before it saw the sync.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the informers to sync", src.HasSynced)
	return src, calls
}

// A change of the Node's zone label or addresses, through the API, reaches
// the snapshot the agent builds from and marks every Service changed; a
// change of a label socklb does not read, or of another Node, does neither.
func TestSourceNodeChange(t *testing.T) {
	node := makeTestNode("node-1", map[string]string{corev1.LabelTopologyZone: "zone-a"},
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.10"})
	other := makeTestNode("node-2", map[string]string{corev1.LabelTopologyZone: "zone-c"})
	client := fake.NewClientset(node, other)
	src, calls := runTestSource(t, client, "node-1")
	ctx := context.Background()

	// One call for the Node's add, one for the end of the first sync.
	waitFor(t, "the first changes", func() bool { return calls.Load() == 2 })
	snap := src.Snapshot()
	if snap.Node == nil || snap.Node.Name != "node-1" || snap.Node.Zone != "zone-a" || len(snap.Node.Addresses) != 1 {
		t.Fatalf("first snapshot's Node = %+v, want node-1 in zone-a with one address", snap.Node)
	}
	if c := src.TakeChanges(); !c.All {
		t.Errorf("the first sight of the Node did not mark everything: %+v", c)
	}

	update := func(name string, f func(*corev1.Node)) {
		t.Helper()
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get Node %s: %v", name, err)
		}
		f(n)
		if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update Node %s: %v", name, err)
		}
	}
	// The informer hands events to the handler in order, so when the
	// handler has reported the last change, it has seen the ones before it.
	steps := []struct {
		desc        string
		node        string
		change      func(*corev1.Node)
		wantChanged bool
	}{
		{"an unrelated label", "node-1", func(n *corev1.Node) { n.Labels["team"] = "storage" }, false},
		{"another Node's zone", "node-2", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-d" }, false},
		{"the status conditions", "node-1", func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		}, false},
		{"the zone", "node-1", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-b" }, true},
		{"an address", "node-1", func(n *corev1.Node) {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.10"})
		}, true},
	}
	want := calls.Load()
	for _, st := range steps {
		update(st.node, st.change)
		if st.wantChanged {
			want++
			waitFor(t, st.desc+" to be reported", func() bool { return calls.Load() >= want })
			if got := calls.Load(); got != want {
				t.Errorf("after %s: changed was called %d times, want %d: a change socklb does not read was reported", st.desc, got, want)
				want = got
			}
			if c := src.TakeChanges(); !c.All {
				t.Errorf("after %s: TakeChanges() = %+v, want everything marked", st.desc, c)
			}
		}
	}
	got := src.Snapshot().Node
	if got == nil || got.Name != "node-1" || got.Zone != "zone-b" || len(got.Addresses) != 2 {
		t.Errorf("last snapshot's Node = %+v, want node-1 in zone-b with two addresses", got)
	}
}
