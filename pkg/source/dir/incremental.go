package dir

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
)

var _ source.Incremental = (*Source)(nil)

// objectIndex is a snapshot's objects by Service, for Objects.
type objectIndex map[source.ServiceRef]*serviceObjects

type serviceObjects struct {
	service *corev1.Service
	slices  []*discoveryv1.EndpointSlice
}

func indexOf(snap source.Snapshot) objectIndex {
	idx := make(objectIndex, len(snap.Services))
	entry := func(ref source.ServiceRef) *serviceObjects {
		e := idx[ref]
		if e == nil {
			e = &serviceObjects{}
			idx[ref] = e
		}
		return e
	}
	for _, svc := range snap.Services {
		entry(source.ServiceRef{Namespace: svc.Namespace, Name: svc.Name}).service = svc
	}
	for _, slice := range snap.EndpointSlices {
		if ref, ok := desired.SliceServiceRef(slice); ok {
			e := entry(ref)
			e.slices = append(e.slices, slice)
		}
	}
	return idx
}

// fileChange is one file's objects before and after a read.
type fileChange struct{ previous, current *fileObjects }

// recordFileChange tells the tracker how one file's objects changed (nil:
// the file had or has none). Only the files decoded again come here, so a
// change costs what the file holds. A file's object that another file
// overrides is reported too: the sync then rebuilds it from Objects, which
// gives the definition that counts, and finds nothing to do.
func (s *Source) recordFileChange(previous, current *fileObjects) {
	oldServices := map[types.NamespacedName]*corev1.Service{}
	oldSlices := map[types.NamespacedName]*discoveryv1.EndpointSlice{}
	if previous != nil {
		for _, svc := range previous.services {
			oldServices[nameOf(svc)] = svc
		}
		for _, slice := range previous.allSlices() {
			oldSlices[nameOf(slice)] = slice
		}
	}
	if current != nil {
		for _, svc := range current.services {
			s.tracker.ServiceUpdate(oldServices[nameOf(svc)], svc)
			delete(oldServices, nameOf(svc))
		}
		for _, slice := range current.allSlices() {
			s.tracker.EndpointSliceUpdate(oldSlices[nameOf(slice)], slice)
			delete(oldSlices, nameOf(slice))
		}
	}
	for _, svc := range oldServices {
		s.tracker.ServiceUpdate(svc, nil)
	}
	for _, slice := range oldSlices {
		s.tracker.EndpointSliceUpdate(slice, nil)
	}
}

func nameOf(obj interface {
	GetNamespace() string
	GetName() string
}) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// allSlices are a file's EndpointSlices, its own and those mirrored from
// its Endpoints.
func (objs *fileObjects) allSlices() []*discoveryv1.EndpointSlice {
	all := objs.slices
	for _, ep := range objs.endpoints {
		all = append(all[:len(all):len(all)], ep.slices...)
	}
	return all
}

// TakeChanges returns the Services whose objects changed since the last
// call and forgets them.
func (s *Source) TakeChanges() source.Changes { return s.tracker.TakeChanges() }

// ChangeCounts returns the change tracker's figures (source.ChangeCounter).
func (s *Source) ChangeCounts() source.ChangeCounts { return s.tracker.ChangeCounts() }

// Objects returns a Service (nil when it does not exist) and its
// EndpointSlices as the last read found them.
func (s *Source) Objects(ref source.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[ref]
	if e == nil {
		return nil, nil
	}
	return e.service, e.slices
}
