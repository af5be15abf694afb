package dir

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
)

// storedFile is one version of a file's objects as the source keeps them
// between reads: each object as its protobuf encoding (the API server's
// own storage format, which keeps every field), not as a decoded object.
// A decoded Service and its EndpointSlice of three endpoints take about
// 2 KB of heap in some forty allocations the collector scans at every
// cycle; their encoding takes about 300 bytes in two, without pointers.
// Objects are decoded again when a sync asks for them.
type storedFile struct {
	services  []storedObject
	slices    []storedSlice
	endpoints []storedEndpoints
}

// storedObject is one encoded object and the names that identify it.
type storedObject struct {
	namespace, name string
	raw             []byte
}

// storedSlice is an encoded EndpointSlice and the Service it belongs to,
// so that slices are grouped by Service without decoding them.
type storedSlice struct {
	storedObject
	service   source.ServiceRef
	ofService bool // whether it names a Service
}

// storedEndpoints is an Endpoints object and the slices mirrored from it.
type storedEndpoints struct {
	namespace, name string
	slices          []storedSlice
}

// store encodes what decoding a file found, leaving out the fields no part
// of socklb reads and that can be large: managedFields, the copy of the
// whole object kubectl apply keeps in an annotation, and a Service's
// status conditions. Every spec field and every endpoint field stays.
func store(objs *fileObjects) *storedFile {
	st := &storedFile{
		services:  make([]storedObject, 0, len(objs.services)),
		slices:    make([]storedSlice, 0, len(objs.slices)),
		endpoints: make([]storedEndpoints, 0, len(objs.endpoints)),
	}
	names := interned{}
	for _, svc := range objs.services {
		trimMeta(&svc.ObjectMeta.ManagedFields, svc.Annotations)
		svc.Status.Conditions = nil
		st.services = append(st.services, storedObject{names.of(svc.Namespace), svc.Name, mustMarshal(svc)})
	}
	for _, slice := range objs.slices {
		st.slices = append(st.slices, storeSlice(slice, names))
	}
	for _, ep := range objs.endpoints {
		stored := storedEndpoints{namespace: names.of(ep.namespace), name: ep.name}
		for _, slice := range ep.slices {
			stored.slices = append(stored.slices, storeSlice(slice, names))
		}
		st.endpoints = append(st.endpoints, stored)
	}
	return st
}

func storeSlice(slice *discoveryv1.EndpointSlice, names interned) storedSlice {
	trimMeta(&slice.ObjectMeta.ManagedFields, slice.Annotations)
	ref, ok := desired.SliceServiceRef(slice)
	ref.Namespace = names.of(ref.Namespace)
	return storedSlice{storedObject: storedObject{names.of(slice.Namespace), slice.Name, mustMarshal(slice)}, service: ref, ofService: ok}
}

func trimMeta[T any](managedFields *[]T, annotations map[string]string) {
	*managedFields = nil
	delete(annotations, corev1.LastAppliedConfigAnnotation)
}

// interned shares one string among the objects of a file that repeat it
// (the namespace, mostly).
type interned map[string]string

func (in interned) of(s string) string {
	if have, ok := in[s]; ok {
		return have
	}
	in[s] = s
	return s
}

func mustMarshal(obj interface{ Marshal() ([]byte, error) }) []byte {
	raw, err := obj.Marshal()
	if err != nil {
		// Encoding a decoded object fails only on a bug in the generated code.
		panic(fmt.Sprintf("encode %T: %v", obj, err))
	}
	return raw
}

// service decodes a stored Service.
func (o *storedObject) service() *corev1.Service {
	svc := &corev1.Service{TypeMeta: serviceType}
	mustUnmarshal(svc, o.raw)
	return svc
}

// slice decodes a stored EndpointSlice.
func (o *storedSlice) slice() *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{TypeMeta: sliceType}
	mustUnmarshal(slice, o.raw)
	return slice
}

// The encoding leaves out apiVersion and kind, which say what was decoded.
var (
	serviceType = metav1.TypeMeta{APIVersion: corev1.SchemeGroupVersion.String(), Kind: "Service"}
	sliceType   = metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"}
)

func mustUnmarshal(obj interface{ Unmarshal([]byte) error }, raw []byte) {
	if err := obj.Unmarshal(raw); err != nil {
		// The bytes are what mustMarshal made in this process.
		panic(fmt.Sprintf("decode stored %T: %v", obj, err))
	}
}

// allSlices are a file's EndpointSlices, its own and those mirrored from
// its Endpoints.
func (st *storedFile) allSlices() []*storedSlice {
	all := make([]*storedSlice, 0, len(st.slices))
	for i := range st.slices {
		all = append(all, &st.slices[i])
	}
	for i := range st.endpoints {
		for j := range st.endpoints[i].slices {
			all = append(all, &st.endpoints[i].slices[j])
		}
	}
	return all
}

func (st *storedFile) isEmpty() bool {
	return len(st.services) == 0 && len(st.slices) == 0 && len(st.endpoints) == 0
}

// keys names the objects of a file version.
func (st *storedFile) keys() []objectKey {
	keys := make([]objectKey, 0, len(st.services)+len(st.slices)+len(st.endpoints))
	for _, svc := range st.services {
		keys = append(keys, objectKey{"Service", svc.namespace, svc.name})
	}
	for _, slice := range st.slices {
		keys = append(keys, objectKey{"EndpointSlice", slice.namespace, slice.name})
	}
	for _, ep := range st.endpoints {
		keys = append(keys, objectKey{"Endpoints", ep.namespace, ep.name})
	}
	return keys
}
