package source

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/socklb/socklb/pkg/desired"
)

// change is what the desired state reads of one object at the last sync
// (previous) and now (current), nil meaning absent, and when the change was
// triggered.
type change[T any] struct {
	previous, current *T
	triggered         time.Time
	// annotated is the oldest EndpointSlice controller trigger time of the
	// change (zero: none), the only start kube-proxy's network programming
	// latency counts from.
	annotated time.Time
}

// ChangeTracker records changes between syncs. Informer handlers call it and
// nothing else. Like kube-proxy's trackers it converts each object into what
// the desired state reads before comparing, so a change that ends where it
// began (an update of a field socklb does not read, or an add undone by a
// delete) is dropped.
type ChangeTracker struct {
	// now is the clock; start is when the tracker was made: a trigger time
	// from before it belongs to a change the agent was not running for.
	now   func() time.Time
	start time.Time

	mu           sync.Mutex
	services     map[types.NamespacedName]*change[desired.ServiceView]
	slices       map[types.NamespacedName]*change[discoveryv1.EndpointSlice]
	all          bool
	allTriggered time.Time
	// serviceEvents and sliceEvents count every update recorded, no-ops
	// included, as kube-proxy's sync_proxy_rules_*_changes_total do.
	serviceEvents, sliceEvents uint64
}

// ChangeCounts are the tracker's figures for metrics.
type ChangeCounts struct {
	// ServiceEvents and EndpointSliceEvents count the updates recorded
	// since the tracker started, no-ops included.
	ServiceEvents, EndpointSliceEvents uint64
	// ServicesPending and EndpointSlicesPending are the objects whose
	// change is recorded and not yet taken.
	ServicesPending, EndpointSlicesPending int
}

// ChangeCounter is a Source that reports its tracker's figures.
type ChangeCounter interface {
	ChangeCounts() ChangeCounts
}

// NewChangeTracker starts with nothing recorded; now is the clock (time.Now
// outside tests).
func NewChangeTracker(now func() time.Time) *ChangeTracker {
	return &ChangeTracker{
		now:      now,
		start:    now(),
		services: map[types.NamespacedName]*change[desired.ServiceView]{},
		slices:   map[types.NamespacedName]*change[discoveryv1.EndpointSlice]{},
	}
}

// ServiceUpdate records a Service going from previous to current (either may
// be nil) and reports whether a change is pending for it afterwards.
func (t *ChangeTracker) ServiceUpdate(previous, current *corev1.Service) bool {
	key, ok := keyOf(previous, current)
	if !ok {
		return false
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.serviceEvents++
	return record(t.services, key, serviceView(previous), serviceView(current), desired.ServiceView.Equal, now, time.Time{})
}

// EndpointSliceUpdate records an EndpointSlice going from previous to current.
func (t *ChangeTracker) EndpointSliceUpdate(previous, current *discoveryv1.EndpointSlice) bool {
	key, ok := keyOf(previous, current)
	if !ok {
		return false
	}
	triggered, annotated := t.sliceTriggerTime(previous, current)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sliceEvents++
	return record(t.slices, key, previous, current, endpointSliceEqual, triggered, annotated)
}

// NodeUpdate records the agent's Node going from previous to current, as
// NodeInfoFromNode reads it, and reports whether that changed anything.
// Every Service reads the node, so a change marks everything.
func (t *ChangeTracker) NodeUpdate(previous, current *desired.NodeInfo) bool {
	if previous == nil || current == nil {
		if previous == current {
			return false
		}
	} else if previous.Equal(*current) {
		return false
	}
	t.MarkAll()
	return true
}

// MarkAll asks for every Service to be rebuilt.
func (t *ChangeTracker) MarkAll() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.all {
		t.all, t.allTriggered = true, now
	}
}

// TakeChanges returns the Services concerned by the recorded changes, with
// their trigger times, and forgets them.
func (t *ChangeTracker) TakeChanges() Changes {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Changes{TriggerTimes: map[desired.ServiceRef]time.Time{}, EndpointTriggerTimes: map[desired.ServiceRef]time.Time{},
		All: t.all, AllTriggered: t.allTriggered}
	add := func(ref desired.ServiceRef, triggered time.Time) {
		have, seen := c.TriggerTimes[ref]
		if !seen {
			c.Services = append(c.Services, ref)
		}
		if !seen || triggered.Before(have) {
			c.TriggerTimes[ref] = triggered
		}
	}
	for name, ch := range t.services {
		add(desired.ServiceRef{Namespace: name.Namespace, Name: name.Name}, ch.triggered)
	}
	for _, ch := range t.slices {
		// A slice moved from one Service to another concerns both.
		for _, s := range []*discoveryv1.EndpointSlice{ch.previous, ch.current} {
			if s == nil {
				continue
			}
			if ref, ok := desired.SliceServiceRef(s); ok {
				add(ref, ch.triggered)
				if have, seen := c.EndpointTriggerTimes[ref]; !ch.annotated.IsZero() && (!seen || ch.annotated.Before(have)) {
					c.EndpointTriggerTimes[ref] = ch.annotated
				}
			}
		}
	}
	clear(t.services)
	clear(t.slices)
	t.all, t.allTriggered = false, time.Time{}
	return c
}

// sliceTriggerTime is when the change to a slice was triggered: the
// EndpointSlice controller's last-change-trigger-time when the slice has one
// from since the tracker started (kube-proxy ignores older ones the same
// way), else now. annotated is that annotation's time, zero when it was
// not used or the slice was deleted (whose annotation dates the last update,
// not the deletion, so kube-proxy ignores it too).
func (t *ChangeTracker) sliceTriggerTime(previous, current *discoveryv1.EndpointSlice) (triggered, annotated time.Time) {
	now := t.now()
	s := current
	if s == nil {
		s = previous
	}
	value, ok := s.Annotations[corev1.EndpointsLastChangeTriggerTime]
	if !ok {
		return now, time.Time{}
	}
	at, err := time.Parse(time.RFC3339Nano, value)
	if err != nil || at.Before(t.start) || at.After(now) {
		return now, time.Time{}
	}
	if current == nil {
		return at, time.Time{}
	}
	return at, at
}

// ChangeCounts returns the figures of the changes recorded.
func (t *ChangeTracker) ChangeCounts() ChangeCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return ChangeCounts{
		ServiceEvents:         t.serviceEvents,
		EndpointSliceEvents:   t.sliceEvents,
		ServicesPending:       len(t.services),
		EndpointSlicesPending: len(t.slices),
	}
}

type object interface {
	comparable
	GetNamespace() string
	GetName() string
}

// keyOf names the object of an update; ok is false when both are nil.
func keyOf[T object](previous, current T) (key types.NamespacedName, ok bool) {
	var zero T
	obj := current
	if obj == zero {
		obj = previous
	}
	if obj == zero {
		return key, false
	}
	return types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}, true
}

// record updates the pending change of key. A change keeps the trigger time
// of its first event: the latency counts from the oldest change not yet
// programmed.
func record[T any](pending map[types.NamespacedName]*change[T], key types.NamespacedName, previous, current *T, equal func(a, b T) bool, triggered, annotated time.Time) bool {
	c, ok := pending[key]
	if !ok {
		c = &change[T]{previous: previous, triggered: triggered}
		pending[key] = c
	} else if triggered.Before(c.triggered) {
		c.triggered = triggered
	}
	if !annotated.IsZero() && (c.annotated.IsZero() || annotated.Before(c.annotated)) {
		c.annotated = annotated
	}
	c.current = current
	if bothAbsentOrEqual(c.previous, c.current, equal) {
		delete(pending, key)
		return false
	}
	return true
}

func bothAbsentOrEqual[T any](a, b *T, equal func(a, b T) bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equal(*a, *b)
}

func serviceView(svc *corev1.Service) *desired.ServiceView {
	if svc == nil {
		return nil
	}
	v := desired.ServiceViewOf(svc)
	return &v
}

// endpointSliceEqual compares what the desired state reads of a slice.
func endpointSliceEqual(a, b discoveryv1.EndpointSlice) bool {
	return desired.EndpointSliceReadsEqual(&a, &b)
}
