package k8s

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/socklb/socklb/pkg/desired"
)

// change is an object's state at the last sync (previous) and now (current);
// nil means absent.
type change[T any] struct {
	previous, current T
}

// ChangeTracker records changes between syncs. Informer handlers call it and
// nothing else; a change that ends where it began (an update that touched
// nothing socklb reads, or an add undone by a delete) is dropped.
type ChangeTracker struct {
	mu       sync.Mutex
	services map[types.NamespacedName]*change[*corev1.Service]
	slices   map[types.NamespacedName]*change[*discoveryv1.EndpointSlice]
	all      bool
}

// NewChangeTracker starts with nothing recorded.
func NewChangeTracker() *ChangeTracker {
	return &ChangeTracker{
		services: map[types.NamespacedName]*change[*corev1.Service]{},
		slices:   map[types.NamespacedName]*change[*discoveryv1.EndpointSlice]{},
	}
}

// ServiceUpdate records a Service going from previous to current (either may
// be nil) and reports whether a change is pending for it afterwards.
func (t *ChangeTracker) ServiceUpdate(previous, current *corev1.Service) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return record(t.services, previous, current, serviceEqual)
}

// EndpointSliceUpdate records an EndpointSlice going from previous to current.
func (t *ChangeTracker) EndpointSliceUpdate(previous, current *discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return record(t.slices, previous, current, endpointSliceEqual)
}

// MarkAll asks for every Service to be rebuilt (the Node changed).
func (t *ChangeTracker) MarkAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all = true
}

// TakeChanges returns the Services concerned by the recorded changes and
// forgets them.
func (t *ChangeTracker) TakeChanges() (refs []desired.ServiceRef, all bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[desired.ServiceRef]bool{}
	add := func(ref desired.ServiceRef) {
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	for name := range t.services {
		add(desired.ServiceRef{Namespace: name.Namespace, Name: name.Name})
	}
	for _, c := range t.slices {
		// A slice moved from one Service to another concerns both.
		for _, s := range []*discoveryv1.EndpointSlice{c.previous, c.current} {
			if s == nil {
				continue
			}
			if ref, ok := desired.SliceServiceRef(s); ok {
				add(ref)
			}
		}
	}
	all = t.all
	clear(t.services)
	clear(t.slices)
	t.all = false
	return refs, all
}

type object interface {
	comparable
	GetNamespace() string
	GetName() string
}

func record[T object](pending map[types.NamespacedName]*change[T], previous, current T, equal func(a, b T) bool) bool {
	var zero T
	obj := current
	if obj == zero {
		obj = previous
	}
	if obj == zero {
		return false
	}
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
	c, ok := pending[key]
	if !ok {
		c = &change[T]{previous: previous}
		pending[key] = c
	}
	c.current = current
	if equal(c.previous, c.current) {
		delete(pending, key)
		return false
	}
	return true
}

// serviceEqual compares what the desired state reads of a Service.
func serviceEqual(a, b *corev1.Service) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equality.Semantic.DeepEqual(a.Spec, b.Spec)
}

// endpointSliceEqual compares what the desired state reads of a slice.
func endpointSliceEqual(a, b *discoveryv1.EndpointSlice) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AddressType == b.AddressType &&
		a.Labels[discoveryv1.LabelServiceName] == b.Labels[discoveryv1.LabelServiceName] &&
		equality.Semantic.DeepEqual(a.Endpoints, b.Endpoints) &&
		equality.Semantic.DeepEqual(a.Ports, b.Ports)
}
