package dir

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/source"
)

// decoder honours apiVersion and kind through client-go's scheme. Strict
// mode reports unknown and duplicate fields, which would otherwise vanish
// silently: a misspelt "clusterIp" would leave a Service without a frontend
// and nobody told why. The strict decoder still returns the object.
var decoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// fileData is one file's name and content as read.
type fileData struct {
	name string // base name inside the directory
	data []byte
}

// readFiles reads every file of dir that may hold objects, in lexical order.
// A file that disappears between listing and reading is skipped: its
// removal is the next event.
func readFiles(dir string, log *zap.Logger) ([]fileData, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var files []fileData
	for _, entry := range entries {
		name := entry.Name()
		if !holdsObjects(name) {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path) // follows symbolic links, as in a mounted ConfigMap
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			log.Error("skip file", zap.String(logfield.File, name), zap.Error(err))
			continue
		}
		if !info.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			log.Error("skip file", zap.String(logfield.File, name), zap.Error(err))
			continue
		}
		files = append(files, fileData{name: name, data: data})
	}
	return files, nil
}

// holdsObjects says whether a file name is one to read: YAML or JSON, and
// neither hidden nor an editor's temporary or backup file (".x.yaml.swp",
// ".#x.yaml", "#x.yaml#", "x.yaml~" and the like).
func holdsObjects(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasPrefix(name, "~") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// digest fingerprints a directory read, so that a read finding what the
// previous one found neither reparses nor reports a change.
func digest(files []fileData) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		binary.Write(h, binary.LittleEndian, uint64(len(f.name)))
		h.Write([]byte(f.name))
		binary.Write(h, binary.LittleEndian, uint64(len(f.data)))
		h.Write(f.data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// fileObjects are the objects one file defines, in the order written.
type fileObjects struct {
	services  []*corev1.Service
	slices    []*discoveryv1.EndpointSlice
	endpoints []*corev1.Endpoints
}

// objectKey identifies an object across files.
type objectKey struct {
	kind, namespace, name string
}

func (k objectKey) String() string { return k.kind + " " + k.namespace + "/" + k.name }

// snapshotOf turns the files of one directory read into a Snapshot,
// logging every problem with the file (and object) it concerns.
func snapshotOf(files []fileData, log *zap.Logger) source.Snapshot {
	var snap source.Snapshot
	definedIn := map[objectKey]string{}
	// keep reports whether an object is the first definition of its key.
	keep := func(file string, key objectKey) bool {
		if first, ok := definedIn[key]; ok {
			log.Error("ignore duplicate object", zap.String(logfield.File, file), zap.String(logfield.Object, key.String()),
				zap.Error(fmt.Errorf("read %s: already defined in %s", key, first)))
			return false
		}
		definedIn[key] = file
		return true
	}
	type mirrorInput struct {
		file      string
		endpoints *corev1.Endpoints
	}
	var toMirror []mirrorInput

	for _, f := range files {
		objs, err := decodeFile(f, log)
		if err != nil {
			// The whole file is dropped: see the package documentation.
			fields := []zap.Field{zap.String(logfield.File, f.name), zap.Error(err)}
			var docErr *documentError
			if errors.As(err, &docErr) && docErr.object != "" {
				fields = append(fields, zap.String(logfield.Object, docErr.object))
			}
			log.Error("ignore file: it cannot be decoded", fields...)
			continue
		}
		for _, svc := range objs.services {
			if keep(f.name, objectKey{"Service", svc.Namespace, svc.Name}) {
				snap.Services = append(snap.Services, svc)
			}
		}
		for _, slice := range objs.slices {
			if keep(f.name, objectKey{"EndpointSlice", slice.Namespace, slice.Name}) {
				snap.EndpointSlices = append(snap.EndpointSlices, slice)
			}
		}
		for _, ep := range objs.endpoints {
			if keep(f.name, objectKey{"Endpoints", ep.Namespace, ep.Name}) {
				toMirror = append(toMirror, mirrorInput{f.name, ep})
			}
		}
	}

	for _, in := range toMirror {
		object := objectKey{"Endpoints", in.endpoints.Namespace, in.endpoints.Name}.String()
		if in.endpoints.Labels[discoveryv1.LabelSkipMirror] == "true" {
			// Set by the endpoints controller on Endpoints it derives from a
			// selector; the EndpointSlices of such a Service come on their own.
			log.Info("skip Endpoints labelled not to be mirrored", zap.String(logfield.File, in.file), zap.String(logfield.Object, object))
			continue
		}
		slices, errs := mirrorEndpoints(in.endpoints)
		for _, err := range errs {
			log.Error("drop Endpoints address", zap.String(logfield.File, in.file), zap.String(logfield.Object, object), zap.Error(err))
		}
		snap.EndpointSlices = append(snap.EndpointSlices, slices...)
	}
	return snap
}

// documentError is a document that cannot be decoded; object names it when
// its kind and name could still be read.
type documentError struct {
	index  int // 1-based, as a reader counts documents
	object string
	err    error
}

func (e *documentError) Error() string {
	if e.object != "" {
		return fmt.Sprintf("decode document %d (%s): %v", e.index, e.object, e.err)
	}
	return fmt.Sprintf("decode document %d: %v", e.index, e.err)
}

func (e *documentError) Unwrap() error { return e.err }

// decodeFile decodes every document of one file. Any document that cannot
// be decoded fails the whole file.
func decodeFile(f fileData, log *zap.Logger) (*fileObjects, error) {
	objs := &fileObjects{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(f.data)))
	for index := 1; ; index++ {
		doc, err := reader.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split documents: %w", err)
		}
		if empty, err := isEmptyDocument(doc); err != nil {
			return nil, &documentError{index: index, err: err}
		} else if empty {
			continue // a leading "---", a trailing one, or only comments
		}
		if err := objs.add(doc, f.name, log); err != nil {
			return nil, &documentError{index: index, object: describe(doc), err: err}
		}
	}
}

func isEmptyDocument(doc []byte) (bool, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return false, err
	}
	return bytes.Equal(bytes.TrimSpace(j), []byte("null")), nil
}

// describe names the object a document is about as well as it can, for an
// error about a document that did not decode.
func describe(doc []byte) string {
	var partial struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal(doc, &partial) != nil || partial.Kind == "" || partial.Metadata.Name == "" {
		return ""
	}
	return objectKey{partial.Kind, defaultNamespace(partial.Metadata.Namespace), partial.Metadata.Name}.String()
}

func defaultNamespace(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}

// add decodes one document (JSON or YAML) into objs.
func (objs *fileObjects) add(doc []byte, file string, log *zap.Logger) error {
	obj, gvk, err := decoder.Decode(doc, nil, nil)
	switch {
	case err == nil:
	case runtime.IsStrictDecodingError(err) && obj != nil:
		log.Warn("ignore unknown or duplicate fields", zap.String(logfield.File, file), zap.String(logfield.Object, describe(doc)), zap.Error(err))
	case runtime.IsNotRegisteredError(err):
		// A custom resource, say: not ours to read, and not an error.
		log.Info("ignore object of a kind socklb does not read", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(doc)), zap.String(logfield.APIVersionKind, kindOf(gvk)))
		return nil
	default:
		return err
	}

	switch o := obj.(type) {
	case *corev1.Service:
		return objs.addService(o)
	case *discoveryv1.EndpointSlice:
		return objs.addEndpointSlice(o)
	case *corev1.Endpoints:
		return objs.addEndpoints(o)
	case *corev1.List:
		for i, item := range o.Items {
			if err := objs.add(item.Raw, file, log); err != nil {
				return fmt.Errorf("decode List item %d: %w", i, err)
			}
		}
	case *corev1.ServiceList:
		for i := range o.Items {
			if err := objs.addService(&o.Items[i]); err != nil {
				return err
			}
		}
	case *corev1.EndpointsList:
		for i := range o.Items {
			if err := objs.addEndpoints(&o.Items[i]); err != nil {
				return err
			}
		}
	case *discoveryv1.EndpointSliceList:
		for i := range o.Items {
			if err := objs.addEndpointSlice(&o.Items[i]); err != nil {
				return err
			}
		}
	default:
		log.Info("ignore object of a kind socklb does not read", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(doc)), zap.String(logfield.APIVersionKind, kindOf(gvk)))
	}
	return nil
}

func kindOf(gvk *schema.GroupVersionKind) string {
	if gvk == nil {
		return ""
	}
	return gvk.GroupVersion().String() + " " + gvk.Kind
}

func (objs *fileObjects) addService(svc *corev1.Service) error {
	if svc.Name == "" {
		return errors.New("read Service: metadata.name is empty")
	}
	svc.Namespace = defaultNamespace(svc.Namespace)
	objs.services = append(objs.services, svc)
	return nil
}

func (objs *fileObjects) addEndpointSlice(slice *discoveryv1.EndpointSlice) error {
	if slice.Name == "" {
		return errors.New("read EndpointSlice: metadata.name is empty")
	}
	slice.Namespace = defaultNamespace(slice.Namespace)
	objs.slices = append(objs.slices, slice)
	return nil
}

func (objs *fileObjects) addEndpoints(ep *corev1.Endpoints) error {
	if ep.Name == "" {
		return errors.New("read Endpoints: metadata.name is empty")
	}
	ep.Namespace = defaultNamespace(ep.Namespace)
	objs.endpoints = append(objs.endpoints, ep)
	return nil
}
