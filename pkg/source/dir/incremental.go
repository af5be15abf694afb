package dir

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
)

var _ source.Incremental = (*Source)(nil)

// objectIndex is a snapshot's objects by name and by Service, so that a
// sync can rebuild only the Services whose files changed.
type objectIndex struct {
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName]*discoveryv1.EndpointSlice
	byRef    map[source.ServiceRef][]*discoveryv1.EndpointSlice
}

func indexOf(snap source.Snapshot) *objectIndex {
	idx := &objectIndex{
		services: make(map[types.NamespacedName]*corev1.Service, len(snap.Services)),
		slices:   make(map[types.NamespacedName]*discoveryv1.EndpointSlice, len(snap.EndpointSlices)),
		byRef:    make(map[source.ServiceRef][]*discoveryv1.EndpointSlice, len(snap.Services)),
	}
	for _, svc := range snap.Services {
		idx.services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = svc
	}
	for _, slice := range snap.EndpointSlices {
		idx.slices[types.NamespacedName{Namespace: slice.Namespace, Name: slice.Name}] = slice
		if ref, ok := desired.SliceServiceRef(slice); ok {
			idx.byRef[ref] = append(idx.byRef[ref], slice)
		}
	}
	return idx
}

// recordChanges tells the tracker every object that differs between two
// indexes. A file not decoded again keeps its objects' pointers, so
// comparing pointers finds exactly the objects of the files that changed;
// the tracker then drops changes to fields the desired state does not
// read.
func (s *Source) recordChanges(previous, current *objectIndex) {
	for key, svc := range current.services {
		if old := previous.services[key]; old != svc {
			s.tracker.ServiceUpdate(old, svc)
		}
	}
	for key, svc := range previous.services {
		if _, ok := current.services[key]; !ok {
			s.tracker.ServiceUpdate(svc, nil)
		}
	}
	for key, slice := range current.slices {
		if old := previous.slices[key]; old != slice {
			s.tracker.EndpointSliceUpdate(old, slice)
		}
	}
	for key, slice := range previous.slices {
		if _, ok := current.slices[key]; !ok {
			s.tracker.EndpointSliceUpdate(slice, nil)
		}
	}
}

// TakeChanges returns the Services whose objects changed since the last
// call and forgets them.
func (s *Source) TakeChanges() source.Changes { return s.tracker.TakeChanges() }

// Objects returns a Service (nil when it does not exist) and its
// EndpointSlices as the last read found them.
func (s *Source) Objects(ref source.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index.services[types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}], s.index.byRef[ref]
}
