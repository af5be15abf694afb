// Package source defines where the agent's Kubernetes objects come from: a
// directory of YAML in standalone mode (package dir) or the API
// server through client-go informers in a cluster. Both hand the same
// Snapshot to the desired-state builder, so nothing downstream knows which
// one runs.
package source

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/socklb/socklb/pkg/desired"
)

// Snapshot is every object the desired state is built from.
type Snapshot struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Node is the node the agent runs on; nil when the source has none
	// (standalone mode reads no Node objects).
	Node *corev1.Node
}

// Source is a producer of Snapshots.
type Source interface {
	// Run watches until ctx is done, calling changed() after objects
	// changed. changed must not block: the caller coalesces bursts of calls
	// into one sync.
	Run(ctx context.Context, changed func()) error
	// HasSynced reports whether the first complete view was read. Leftovers
	// in the datapath are pruned only after that, so that a restart does not
	// drop Services the source simply has not listed yet.
	HasSynced() bool
	// Snapshot returns the current objects; the caller must not modify them.
	Snapshot() Snapshot
}

// ServiceRef names a Service.
type ServiceRef = desired.ServiceRef

// Incremental is a Source that knows which Services changed, so that a sync
// rebuilds and diffs only those instead of everything.
type Incremental interface {
	Source
	// TakeChanges returns the Services whose Service object or
	// EndpointSlices changed since the last call, and forgets them. all is
	// true when something that concerns every Service changed (the Node).
	TakeChanges() (changed []ServiceRef, all bool)
	// Objects returns a Service (nil when it does not exist) and its
	// EndpointSlices as they are now.
	Objects(ref ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice)
}
