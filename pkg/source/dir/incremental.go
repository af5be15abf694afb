package dir

import (
	"bytes"
	"iter"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/socklb/socklb/pkg/source"
)

var (
	_ source.Incremental = (*Source)(nil)
	_ source.Streaming   = (*Source)(nil)
)

// assembly is the directory's objects that count, as the last read found
// them, still encoded; it is not modified once made.
type assembly struct {
	services []*storedObject
	slices   []*storedSlice
	index    objectIndex
}

// objectIndex is an assembly's objects by Service, for Objects.
type objectIndex map[source.ServiceRef]*serviceObjects

type serviceObjects struct {
	service *storedObject
	slices  []*storedSlice
}

func indexOf(a *assembly) objectIndex {
	idx := make(objectIndex, len(a.services))
	entry := func(ref source.ServiceRef) *serviceObjects {
		e := idx[ref]
		if e == nil {
			e = &serviceObjects{}
			idx[ref] = e
		}
		return e
	}
	for _, svc := range a.services {
		entry(source.ServiceRef{Namespace: svc.namespace, Name: svc.name}).service = svc
	}
	for _, slice := range a.slices {
		if slice.ofService {
			e := entry(slice.service)
			e.slices = append(e.slices, slice)
		}
	}
	return idx
}

// snapshot decodes every object of the assembly.
func (a *assembly) snapshot() source.Snapshot {
	snap := source.Snapshot{
		Services:       make([]*corev1.Service, 0, len(a.services)),
		EndpointSlices: make([]*discoveryv1.EndpointSlice, 0, len(a.slices)),
	}
	for _, svc := range a.services {
		snap.Services = append(snap.Services, svc.service())
	}
	for _, slice := range a.slices {
		snap.EndpointSlices = append(snap.EndpointSlices, slice.slice())
	}
	return snap
}

// stream decodes the assembly one Service at a time (source.Streaming):
// each Service with its slices, then the slices of Services that do not
// exist, in the order Snapshot lists them. A goroutine decodes a batch
// ahead of the caller: decoding was half of a full build at 30,000
// Services, and the build runs on one core while the other was idle.
func (a *assembly) stream() iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice] {
	return func(yield func(*corev1.Service, []*discoveryv1.EndpointSlice) bool) {
		batches := make(chan []streamStep, 2)
		stop := make(chan struct{})
		defer close(stop)
		go a.decodeAhead(batches, stop)
		for batch := range batches {
			for _, d := range batch {
				if !yield(d.svc, d.slices) {
					return
				}
			}
		}
		var orphans []*discoveryv1.EndpointSlice
		for _, slice := range a.slices {
			if !slice.ofService || a.index[slice.service].service == nil {
				orphans = append(orphans, slice.slice())
			}
		}
		if len(orphans) > 0 {
			yield(nil, orphans)
		}
	}
}

// streamStep is one step of stream.
type streamStep struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
}

// streamBatch is how many Services decodeAhead hands over at a time: a
// channel operation per Service would cost more than it saves.
const streamBatch = 256

// decodeAhead decodes the assembly's Services with their slices, in order,
// into batches, until all are sent or stop is closed; it closes batches.
func (a *assembly) decodeAhead(batches chan<- []streamStep, stop <-chan struct{}) {
	defer close(batches)
	for chunk := range slices.Chunk(a.services, streamBatch) {
		batch := make([]streamStep, 0, len(chunk))
		for _, stored := range chunk {
			e := a.index[source.ServiceRef{Namespace: stored.namespace, Name: stored.name}]
			batch = append(batch, streamStep{stored.service(), decodedSlices(e.slices)})
		}
		select {
		case batches <- batch:
		case <-stop:
			return
		}
	}
}

func decodedSlices(stored []*storedSlice) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, 0, len(stored))
	for _, slice := range stored {
		out = append(out, slice.slice())
	}
	return out
}

// fileChange is one file's objects before and after a read.
type fileChange struct{ previous, current *storedFile }

// recordFileChange tells the tracker how one file's objects changed (nil:
// the file had or has none). Only the files decoded again come here, so a
// change costs what the file holds, and of it only the objects whose
// encoding changed are decoded. A file's object that another file
// overrides is reported too: the sync then rebuilds it from Objects, which
// gives the definition that counts, and finds nothing to do.
func (s *Source) recordFileChange(previous, current *storedFile) {
	oldServices := map[types.NamespacedName]*storedObject{}
	oldSlices := map[types.NamespacedName]*storedSlice{}
	if previous != nil {
		for i := range previous.services {
			svc := &previous.services[i]
			oldServices[types.NamespacedName{Namespace: svc.namespace, Name: svc.name}] = svc
		}
		for _, slice := range previous.allSlices() {
			oldSlices[types.NamespacedName{Namespace: slice.namespace, Name: slice.name}] = slice
		}
	}
	if current != nil {
		for i := range current.services {
			svc := &current.services[i]
			name := types.NamespacedName{Namespace: svc.namespace, Name: svc.name}
			if old := oldServices[name]; old == nil || !bytes.Equal(old.raw, svc.raw) {
				s.tracker.ServiceUpdate(decodedService(old), svc.service())
			}
			delete(oldServices, name)
		}
		for _, slice := range current.allSlices() {
			name := types.NamespacedName{Namespace: slice.namespace, Name: slice.name}
			if old := oldSlices[name]; old == nil || !bytes.Equal(old.raw, slice.raw) {
				s.tracker.EndpointSliceUpdate(decodedSlice(old), slice.slice())
			}
			delete(oldSlices, name)
		}
	}
	for _, svc := range oldServices {
		s.tracker.ServiceUpdate(svc.service(), nil)
	}
	for _, slice := range oldSlices {
		s.tracker.EndpointSliceUpdate(slice.slice(), nil)
	}
}

func decodedService(o *storedObject) *corev1.Service {
	if o == nil {
		return nil
	}
	return o.service()
}

func decodedSlice(o *storedSlice) *discoveryv1.EndpointSlice {
	if o == nil {
		return nil
	}
	return o.slice()
}

// TakeChanges returns the Services whose objects changed since the last
// call and forgets them.
func (s *Source) TakeChanges() source.Changes { return s.tracker.TakeChanges() }

// ChangeCounts returns the change tracker's figures (source.ChangeCounter).
func (s *Source) ChangeCounts() source.ChangeCounts { return s.tracker.ChangeCounts() }

// Objects returns a Service (nil when it does not exist) and its
// EndpointSlices as the last read found them, decoded for the caller.
func (s *Source) Objects(ref source.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	s.mu.Lock()
	e := s.assembled.index[ref]
	s.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	var svc *corev1.Service
	if e.service != nil {
		svc = e.service.service()
	}
	return svc, decodedSlices(e.slices)
}
