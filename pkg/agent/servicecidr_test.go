package agent

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source/k8s"
	"github.com/socklb/socklb/pkg/syncer"
)

// cidrSyncer remembers the Service CIDRs of each state it is given.
type cidrSyncer struct {
	mu   sync.Mutex
	seen []string
}

func (c *cidrSyncer) note(state *desired.State) (syncer.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, fmt.Sprint(state.ServiceCIDRs))
	return syncer.Result{}, nil
}

func (c *cidrSyncer) Sync(state *desired.State) (syncer.Result, error) { return c.note(state) }
func (c *cidrSyncer) SyncFrontends(state *desired.State, _ []desired.Frontend) (syncer.Result, error) {
	return c.note(state)
}

func (c *cidrSyncer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		seen := append([]string(nil), c.seen...)
		c.mu.Unlock()
		for _, s := range seen {
			if s == want {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no sync with Service CIDRs %s; the syncer saw %v", want, c.seen)
}

// The Service CIDRs of the flags and of the ServiceCIDR objects both reach
// the state every sync writes the refuse trie from, and a new ServiceCIDR
// object makes a sync with it.
func TestServiceCIDRsReachTheState(t *testing.T) {
	client := fake.NewClientset(&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}})
	src, err := k8s.NewSource(client, "node-1", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(desired.NodeInfo{Name: "node-1"})
	cfg.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.200.0.0/24")}
	rec := &cidrSyncer{}
	a := New(cfg, src, rec, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	rec.waitFor(t, "[10.96.0.0/16 10.200.0.0/24]")
	if _, err := client.NetworkingV1().ServiceCIDRs().Create(ctx, &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"fd00:10:96::/108"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "[10.96.0.0/16 10.200.0.0/24 fd00:10:96::/108]")
}
