// Package source defines where the agent's Kubernetes objects come from: a
// directory of YAML in standalone mode (package dir) or the API
// server through client-go informers in a cluster. Both hand the same
// Snapshot to the desired-state builder, so nothing downstream knows which
// one runs.
package source

import (
	"context"
	"iter"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/socklb/socklb/pkg/desired"
)

// Snapshot is every object the desired state is built from.
type Snapshot struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Node is what the source read of the node the agent runs on; nil when
	// it has none (standalone mode reads no Node objects: the agent's flags
	// describe the node) or has not seen it.
	Node *desired.NodeInfo
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

// Streaming is a Source that can hand a full build its objects one Service
// at a time, decoded for that Service alone: the directory source keeps its
// objects encoded, and decoding all of them at once for a Snapshot made
// every full sync's peak memory that of every object decoded.
type Streaming interface {
	Source
	// Stream returns what Snapshot would, as the node and a sequence of each
	// Service with the EndpointSlices that name it, then, with a nil
	// Service, the slices of Services that do not exist. The objects of one
	// step may be kept by the caller.
	Stream() (node *desired.NodeInfo, objects iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice])
}

// Prefetching is a Source whose first read can start before Run: the agent
// starts it before it loads the datapath, so that the two overlap (at
// 30,000 Services in a directory the read is most of a cold start).
type Prefetching interface {
	Source
	// Prefetch starts the first read in the background; Run takes its
	// result. Calling it more than once, or not at all, is fine.
	Prefetch()
}

// ServiceRef names a Service.
type ServiceRef = desired.ServiceRef

// Changes is what changed since the last TakeChanges.
type Changes struct {
	// Services are the Services whose Service object or EndpointSlices
	// changed in a way the desired state reads.
	Services []ServiceRef
	// TriggerTimes holds, for each of Services, when the oldest change now
	// taken was triggered (kube-proxy's LastChangeTriggerTimes): the time of
	// the change that caused it where the object says (an EndpointSlice's
	// endpoints.kubernetes.io/last-change-trigger-time), else the time the
	// source saw it. The time from it to the maps being written is the
	// network programming latency.
	TriggerTimes map[ServiceRef]time.Time
	// EndpointTriggerTimes holds, for the Services of Services whose
	// EndpointSlices carry it, the oldest last-change-trigger-time of the
	// changes taken: kube-proxy's network_programming_duration_seconds
	// counts from these alone (cluster mode; the annotation's clock is the
	// control plane's).
	EndpointTriggerTimes map[ServiceRef]time.Time
	// All is true when something every Service reads changed (the Node);
	// AllTriggered is when that change was first seen.
	All          bool
	AllTriggered time.Time
}

// Incremental is a Source that knows which Services changed, so that a sync
// rebuilds and diffs only those instead of everything.
type Incremental interface {
	Source
	// TakeChanges returns what changed since the last call and forgets it.
	TakeChanges() Changes
	// Objects returns a Service (nil when it does not exist) and its
	// EndpointSlices as they are now.
	Objects(ref ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice)
}
