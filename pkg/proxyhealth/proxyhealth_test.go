package proxyhealth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

const timeout = time.Minute

// step is one thing that happens to the sync loop, after the clock moved.
type step struct {
	after time.Duration
	do    string // "queue", "sync", "fail" or "" (only time passes)
}

func TestHealthStateMachine(t *testing.T) {
	cases := []struct {
		name        string
		steps       []step
		wantHealthy bool
		// wantLastUpdated is how long after the start the last successful
		// sync was (the start itself counts as one).
		wantLastUpdated time.Duration
	}{
		{"fresh start", nil, true, 0},
		{"fresh start, long quiet: nothing waits", []step{{10 * time.Minute, ""}}, true, 0},
		{"synced", []step{{time.Second, "queue"}, {time.Second, "sync"}}, true, 2 * time.Second},
		{"queued change, no sync yet, within the timeout", []step{{0, "queue"}, {timeout - time.Second, ""}}, true, 0},
		{"queued change without a sync past the timeout", []step{{0, "queue"}, {timeout, ""}}, false, 0},
		{"the oldest queued change counts, not the latest", []step{{0, "queue"}, {timeout / 2, "queue"}, {timeout / 2, ""}}, false, 0},
		{"queued change whose syncs fail past the timeout", []step{{0, "queue"}, {time.Second, "fail"}, {timeout, "fail"}}, false, 0},
		{"a failed periodic sync with nothing queued, past the timeout", []step{{time.Second, "fail"}, {timeout, ""}}, false, 0},
		{"recovered: a sync succeeds after the timeout", []step{{0, "queue"}, {timeout, "fail"}, {time.Second, "sync"}}, true, timeout + time.Second},
		{"recovered, then a new change waits within the timeout", []step{{0, "queue"}, {2 * timeout, "sync"}, {time.Second, "queue"}, {timeout - 2*time.Second, ""}}, true, 2 * timeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
			start := c.t
			h := New(timeout, nil, c.now)
			for _, s := range tc.steps {
				c.t = c.t.Add(s.after)
				switch s.do {
				case "queue":
					h.Queued()
				case "sync":
					h.Synced(nil)
				case "fail":
					h.Synced(errors.New("the services map is full"))
				}
			}
			st := h.Status()
			if st.Healthy != tc.wantHealthy {
				t.Errorf("healthy = %v after %v, want %v", st.Healthy, tc.steps, tc.wantHealthy)
			}
			if got := st.LastUpdated.Sub(start); got != tc.wantLastUpdated {
				t.Errorf("last updated %v after the start, want %v", got, tc.wantLastUpdated)
			}
			if !st.CurrentTime.Equal(c.t) {
				t.Errorf("current time %v, want %v", st.CurrentTime, c.t)
			}
		})
	}
}

type nodeGetter struct{ node *corev1.Node }

func (n nodeGetter) Node() *corev1.Node { return n.node }

// The endpoints answer as kube-proxy's: status code, JSON body, and
// nodeEligible on /healthz only, in a cluster only.
func TestHandler(t *testing.T) {
	now := metav1.Now()
	eligible, notEligible := true, false
	cases := []struct {
		name         string
		node         NodeGetter // nil: standalone
		stalled      bool
		path         string
		wantCode     int
		wantEligible *bool
	}{
		{"standalone healthz", nil, false, "/healthz", 200, nil},
		{"standalone livez", nil, false, "/livez", 200, nil},
		{"standalone healthz, stalled", nil, true, "/healthz", 503, nil},
		{"standalone livez, stalled", nil, true, "/livez", 503, nil},
		{"cluster healthz", nodeGetter{&corev1.Node{}}, false, "/healthz", 200, &eligible},
		{"cluster healthz, Node not known yet", nodeGetter{nil}, false, "/healthz", 503, &notEligible},
		{"cluster healthz, Node being deleted", nodeGetter{&corev1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}}, false, "/healthz", 503, &notEligible},
		{"cluster healthz, Node tainted by the autoscaler", nodeGetter{&corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: toBeDeletedTaint}}}}}, false, "/healthz", 503, &notEligible},
		{"cluster livez, Node being deleted: alive all the same", nodeGetter{&corev1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}}, false, "/livez", 200, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
			h := New(timeout, tc.node, c.now)
			var served []string
			h.Served = func(path string, code int) { served = append(served, path+" "+http.StatusText(code)) }
			h.Queued()
			if tc.stalled {
				c.t = c.t.Add(timeout)
			} else {
				c.t = c.t.Add(time.Second)
				h.Synced(nil)
				c.t = c.t.Add(time.Second)
			}
			rec := httptest.NewRecorder()
			h.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.wantCode {
				t.Errorf("GET %s = %d, want %d", tc.path, rec.Code, tc.wantCode)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			for _, key := range []string{"lastUpdated", "currentTime", "healthy"} {
				if _, ok := body[key]; !ok {
					t.Errorf("body %s lacks %q", rec.Body, key)
				}
			}
			got, ok := body["nodeEligible"]
			switch {
			case tc.wantEligible == nil && ok:
				t.Errorf("body %s has nodeEligible, want none", rec.Body)
			case tc.wantEligible != nil && got != *tc.wantEligible:
				t.Errorf("body %s: nodeEligible %v, want %v", rec.Body, got, *tc.wantEligible)
			}
			if tc.wantCode == 200 && body["lastUpdated"] != body["currentTime"] {
				t.Errorf("healthy body %s: lastUpdated is not the current time, as kube-proxy answers", rec.Body)
			}
			if want := tc.path + " " + http.StatusText(tc.wantCode); len(served) != 1 || served[0] != want {
				t.Errorf("served %v, want [%s]", served, want)
			}
		})
	}
}
