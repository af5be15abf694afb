// Package proxyhealth answers /healthz and /livez the way kube-proxy's
// proxy health server does (k8s.io/kubernetes/pkg/proxy/healthcheck,
// proxy_health.go), so probes and load balancers written for kube-proxy
// work unchanged: 200 with a JSON body while the agent keeps the datapath
// programmed, 503 once a change has waited longer than the timeout for a
// sync that succeeds (the syncs failed or stalled). /healthz also answers
// 503 while the agent's Node is being deleted, as kube-proxy's does, so
// that load balancers drain the node first; /livez does not.
//
// It is not package healthcheck, which serves the per-Service
// healthCheckNodePort of externalTrafficPolicy: Local Services.
package proxyhealth

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultAddress is kube-proxy's healthz address.
const DefaultAddress = "0.0.0.0:10256"

// DefaultTimeout is how long a change may wait for a successful sync
// before the agent reports itself unhealthy: what a default kube-proxy
// allows (twice its 30 s sync period). The agent's retries back off to
// at most 30 s, so a failing sync is retried at least once within it.
const DefaultTimeout = 60 * time.Second

// toBeDeletedTaint is the Cluster Autoscaler's taint on a node it is about
// to delete (kube-proxy's ToBeDeletedTaint).
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// NodeGetter gives the agent's Node, nil while it is not known: the k8s
// source.
type NodeGetter interface {
	Node() *corev1.Node
}

// Health is the state of the agent's sync loop as the probes see it.
type Health struct {
	now     func() time.Time
	timeout time.Duration
	node    NodeGetter // nil in standalone mode: there is no Node
	// Served, when set, hears each answer (for the metrics).
	Served func(path string, code int)

	mu          sync.Mutex
	lastUpdated time.Time
	// oldestPending is when the oldest change not yet programmed was
	// queued (or a sync failed with nothing queued); zero when none waits.
	oldestPending time.Time
}

// New starts healthy, as kube-proxy's sync loop does: the first sync has
// timeout to succeed once a change is queued. node is nil in standalone
// mode; now is the clock (time.Now outside tests).
func New(timeout time.Duration, node NodeGetter, now func() time.Time) *Health {
	return &Health{now: now, timeout: timeout, node: node, lastUpdated: now()}
}

// Queued records that a change waits for a sync (agent.Config.OnQueued).
func (h *Health) Queued() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldestPending.IsZero() {
		h.oldestPending = h.now()
	}
}

// Synced records a sync's outcome: a success programs everything queued
// before it; a failure leaves it waiting, and makes a failed periodic
// sync (nothing queued) wait as well, since the maps now differ from
// the desired state.
func (h *Health) Synced(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.oldestPending.IsZero() {
			h.oldestPending = h.now()
		}
		return
	}
	h.oldestPending = time.Time{}
	h.lastUpdated = h.now()
}

// Status is the JSON body of /healthz and /livez, kube-proxy's ProxyHealth
// without the per-family status (one socklb sync programs both families).
type Status struct {
	LastUpdated  time.Time `json:"lastUpdated"`
	CurrentTime  time.Time `json:"currentTime"`
	NodeEligible *bool     `json:"nodeEligible,omitempty"`
	Healthy      bool      `json:"healthy"`
}

// Status says whether the syncs keep up: unhealthy when a change has
// waited for at least the timeout.
func (h *Health) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	return Status{
		LastUpdated: h.lastUpdated,
		CurrentTime: now,
		Healthy:     h.oldestPending.IsZero() || now.Sub(h.oldestPending) < h.timeout,
	}
}

// nodeEligible is kube-proxy's NodeEligible: the Node is known, not being
// deleted and not tainted for deletion by the Cluster Autoscaler.
func nodeEligible(node *corev1.Node) bool {
	if node == nil || !node.DeletionTimestamp.IsZero() {
		return false
	}
	for _, taint := range node.Spec.Taints {
		if taint.Key == toBeDeletedTaint {
			return false
		}
	}
	return true
}

// Handler serves /healthz and /livez.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := h.Status()
		healthy := st.Healthy
		if h.node != nil {
			eligible := nodeEligible(h.node.Node())
			st.NodeEligible = &eligible
			healthy = healthy && eligible
		}
		h.write(w, "/healthz", st, healthy)
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		st := h.Status()
		h.write(w, "/livez", st, st.Healthy)
	})
	return mux
}

func (h *Health) write(w http.ResponseWriter, path string, st Status, healthy bool) {
	code := http.StatusOK
	if healthy {
		// kube-proxy answers a recent lastUpdated while healthy, as its
		// older releases did after every sync loop, changed or not.
		st.LastUpdated = st.CurrentTime
	} else {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	body, _ := json.Marshal(st)
	w.Write(body)
	if h.Served != nil {
		h.Served(path, code)
	}
}
