package dir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/socklb/socklb/pkg/logfield"
)

// decoder honours apiVersion and kind through client-go's scheme. Strict
// mode reports unknown and duplicate fields, which would otherwise vanish
// silently: a misspelt "clusterIp" would leave a Service without a frontend
// and nobody told why. The strict decoder still returns the object. It is
// only ever given JSON, so it converts nothing a second time.
var decoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// knownKinds are the kinds most documents are. A document of one of them
// that yamlToJSONStrict wrote skips the serializer's first pass over it,
// which decodes the whole document with encoding/json to find its
// apiVersion and kind (about 0.4 CPU seconds of a cold start at 30,000
// Services), and is decoded as the serializer would: into a new object,
// strictly, with the same errors.
var knownKinds = map[typeMeta]func() runtime.Object{
	{"v1", "Service"}:                        func() runtime.Object { return &corev1.Service{} },
	{"v1", "Endpoints"}:                      func() runtime.Object { return &corev1.Endpoints{} },
	{"discovery.k8s.io/v1", "EndpointSlice"}: func() runtime.Object { return &discoveryv1.EndpointSlice{} },
}

type typeMeta struct{ apiVersion, kind string }

// decodeObject decodes j as decoder does; sorted says j was written by
// yamlToJSONStrict.
func decodeObject(j []byte, sorted bool) (runtime.Object, *schema.GroupVersionKind, error) {
	if sorted {
		if tm, ok := sortedTypeMeta(j); ok {
			if newObject, ok := knownKinds[tm]; ok {
				gv, _ := schema.ParseGroupVersion(tm.apiVersion) // a known one
				gvk := gv.WithKind(tm.kind)
				obj := newObject()
				strictErrs, err := kjson.UnmarshalStrict(j, obj)
				switch {
				case err != nil:
					return nil, &gvk, err
				case len(strictErrs) > 0:
					return obj, &gvk, runtime.NewStrictDecodingError(strictErrs)
				}
				return obj, &gvk, nil
			}
		}
	}
	return decoder.Decode(j, nil, nil)
}

// sortedTypeMeta reads the apiVersion and kind of a JSON object that
// yamlToJSONStrict wrote (well formed, keys sorted, none twice), looking at
// its top-level keys only and skipping their values unread. ok is false
// when either is missing, is not a string without escapes, or when another
// key would also match it as encoding/json matches fields (ignoring case):
// the serializer then decides.
func sortedTypeMeta(j []byte) (tm typeMeta, ok bool) {
	var haveVersion, haveKind bool
	pos := 1 // past the '{'
	if len(j) < 2 || j[0] != '{' {
		return tm, false
	}
	for pos < len(j) && j[pos] != '}' {
		keyEnd, escaped := skipJSONString(j, pos)
		if keyEnd < 0 || keyEnd >= len(j) || j[keyEnd] != ':' {
			return tm, false
		}
		key := j[pos+1 : keyEnd-1]
		valueStart := keyEnd + 1
		valueEnd := skipJSONValue(j, valueStart)
		if valueEnd < 0 {
			return tm, false
		}
		var target *string
		var seen *bool
		switch {
		case !escaped && string(key) == "apiVersion":
			target, seen = &tm.apiVersion, &haveVersion
		case !escaped && string(key) == "kind":
			target, seen = &tm.kind, &haveKind
		case escaped || bytes.EqualFold(key, []byte("apiVersion")) || bytes.EqualFold(key, []byte("kind")):
			return tm, false
		}
		if target != nil {
			value := j[valueStart:valueEnd]
			if len(value) < 2 || value[0] != '"' || bytes.IndexByte(value, '\\') >= 0 {
				return tm, false
			}
			*target, *seen = string(value[1:len(value)-1]), true
		}
		pos = valueEnd
		if pos < len(j) && j[pos] == ',' {
			pos++
		}
	}
	return tm, haveVersion && haveKind
}

// skipJSONString returns the end of the string starting at pos (past its
// closing quote) and whether it holds an escape; -1 if it is not one.
func skipJSONString(j []byte, pos int) (end int, escaped bool) {
	if pos >= len(j) || j[pos] != '"' {
		return -1, false
	}
	for i := pos + 1; i < len(j); i++ {
		switch j[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return -1, false
}

// skipJSONValue returns the end of the value starting at pos in
// well-formed JSON without spaces; -1 if it has none.
func skipJSONValue(j []byte, pos int) int {
	depth := 0
	for i := pos; i < len(j); {
		switch j[i] {
		case '"':
			end, _ := skipJSONString(j, i)
			if end < 0 {
				return -1
			}
			i = end
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i
			}
			i++
		default:
			i++
		}
		if depth == 0 && i > pos && (j[i-1] == '"' || j[i-1] == '}' || j[i-1] == ']') {
			return i
		}
	}
	if depth == 0 && len(j) > pos {
		return len(j)
	}
	return -1
}

// fileObjects are the objects one version of a file defines, in the order
// written, and what decoding them had to say.
type fileObjects struct {
	services  []*corev1.Service
	slices    []*discoveryv1.EndpointSlice
	endpoints []mirroredEndpoints
	// notes are logged once per version, after decoding (which may run on
	// several files at once), so the log reads in file order.
	notes []note
}

// mirroredEndpoints is an Endpoints object and the slices it mirrors to.
type mirroredEndpoints struct {
	namespace, name string
	slices          []*discoveryv1.EndpointSlice
}

// note is a log entry about one file, kept until it can be written.
type note struct {
	level   zapcore.Level
	message string
	fields  []zap.Field
}

func (objs *fileObjects) note(level zapcore.Level, message string, fields ...zap.Field) {
	objs.notes = append(objs.notes, note{level, message, fields})
}

// objectKey identifies an object across files.
type objectKey struct {
	kind, namespace, name string
}

func (k objectKey) String() string { return k.kind + " " + k.namespace + "/" + k.name }

// document is one YAML document of a file.
type document struct {
	index int // 1-based, as a reader counts documents
	line  int // the file line it starts on, 1-based
	data  []byte
}

// documentError is a document that cannot be decoded; object names it when
// its kind and name could still be read. Its text never quotes the file.
type documentError struct {
	index, line int
	object      string
	err         error
}

func (e *documentError) Error() string {
	if e.object != "" {
		return fmt.Sprintf("decode document %d at line %d (%s): %v", e.index, e.line, e.object, e.err)
	}
	return fmt.Sprintf("decode document %d at line %d: %v", e.index, e.line, e.err)
}

func (e *documentError) Unwrap() error { return e.err }

// splitDocuments cuts a file at its "---" lines, as Kubernetes' YAML reader
// does, but over the bytes in memory: that reader loses a last line which
// ends exactly where its 4,096-byte buffer fills (its line reader returns
// the line together with io.EOF, and the document reader drops a line that
// comes with io.EOF), so a one-line file of 4,096 or 8,192 bytes read as
// nothing.
func splitDocuments(data []byte) ([]document, error) {
	var docs []document
	start, startLine := 0, 1
	for pos, line := 0, 1; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		text := bytes.TrimRight(data[pos:next], "\r\n")
		if bytes.HasPrefix(text, []byte("---")) {
			rest := bytes.TrimSpace(text[3:])
			// Only a comment may follow the separator (what the
			// Kubernetes reader allows).
			if len(rest) > 0 && rest[0] != '#' {
				return nil, fmt.Errorf("split documents: line %d: text after the document separator \"---\"", line)
			}
			docs = append(docs, document{index: len(docs) + 1, line: startLine, data: data[start:pos]})
			start, startLine = next, line+1
		}
		pos = next
	}
	docs = append(docs, document{index: len(docs) + 1, line: startLine, data: data[start:]})
	return docs, nil
}

// decodeFile decodes every document of one file. Any document that cannot
// be decoded fails the whole file.
func decodeFile(name string, data []byte) (*fileObjects, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	parts := 1
	if len(docs) >= parallelDocuments {
		parts = goruntime.GOMAXPROCS(0)
	}
	results := make([]*fileObjects, parts)
	errs := make([]error, parts)
	per := (len(docs) + parts - 1) / parts
	var wg sync.WaitGroup
	for p := range parts {
		part := docs[min(p*per, len(docs)):min((p+1)*per, len(docs))]
		wg.Go(func() { results[p], errs[p] = decodeDocuments(name, part) })
	}
	wg.Wait()
	objs := &fileObjects{}
	for p := range parts {
		if errs[p] != nil {
			return nil, errs[p] // the first failing document, as read in order
		}
		objs.services = append(objs.services, results[p].services...)
		objs.slices = append(objs.slices, results[p].slices...)
		objs.endpoints = append(objs.endpoints, results[p].endpoints...)
		objs.notes = append(objs.notes, results[p].notes...)
	}
	return objs, nil
}

// parallelDocuments is how many documents a file needs for them to be
// decoded on every CPU: one large file is otherwise all of a change's time.
const parallelDocuments = 256

func decodeDocuments(name string, docs []document) (*fileObjects, error) {
	objs := &fileObjects{}
	for _, doc := range docs {
		if err := objs.addDocument(name, doc); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// addDocument converts a document to JSON once and decodes that.
func (objs *fileObjects) addDocument(file string, doc document) error {
	j, converted, err := toJSON(doc.data)
	if errors.Is(err, errDuplicateKey) {
		objs.note(zapcore.WarnLevel, "ignore duplicate fields: the last one counts", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(j)), zap.Error(fmt.Errorf("document %d at line %d: %w", doc.index, doc.line, err)))
	} else if err != nil {
		return &documentError{index: doc.index, line: doc.line, err: relineYAML(err, doc.line)}
	}
	if j == nil {
		return nil // a leading "---", a trailing one, or only comments
	}
	if err := objs.add(j, converted && err == nil, file); err != nil {
		return &documentError{index: doc.index, line: doc.line, object: describe(j), err: err}
	}
	return nil
}

// errDuplicateKey marks a document whose YAML repeats a key: the last value
// counts, as the API server's decoder has it, and a warning says so.
var errDuplicateKey = errors.New("a key is repeated")

// toJSON converts one document to JSON; nil when it holds nothing.
// converted says the JSON was written from YAML, keys sorted.
func toJSON(doc []byte) (j []byte, converted bool, err error) {
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return trimmed, false, nil // JSON already; the decoder's strict mode finds duplicates
	}
	j, err = yamlToJSONStrict(doc)
	if err != nil {
		// Strict conversion refuses repeated keys; a second, lenient one
		// tells that apart from a document that is not YAML at all.
		lenient, lerr := yaml.YAMLToJSON(doc)
		if lerr != nil {
			return nil, false, sanitize(lerr)
		}
		j, err = lenient, fmt.Errorf("%w: %v", errDuplicateKey, sanitize(err))
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, false, err
	}
	return j, true, err
}

// describe names the object a JSON document is about as well as it can,
// for an error about a document that did not decode. Only a kind and names
// that are valid Kubernetes names are used: nothing else of the file.
func describe(j []byte) string {
	var partial struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if json.Unmarshal(j, &partial) != nil || partial.Kind == "" || partial.Metadata.Name == "" {
		return ""
	}
	ns := defaultNamespace(partial.Metadata.Namespace)
	if !isIdentifier(partial.Kind) || len(validation.IsDNS1123Subdomain(partial.Metadata.Name)) > 0 ||
		len(validation.IsDNS1123Label(ns)) > 0 {
		return ""
	}
	return objectKey{partial.Kind, ns, partial.Metadata.Name}.String()
}

var identifierPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,62}$`)

func isIdentifier(s string) bool { return identifierPattern.MatchString(s) }

func defaultNamespace(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}

// add decodes one JSON document into objs.
func (objs *fileObjects) add(j []byte, sorted bool, file string) error {
	obj, gvk, err := decodeObject(j, sorted)
	switch {
	case err == nil:
	case runtime.IsStrictDecodingError(err) && obj != nil:
		objs.note(zapcore.WarnLevel, "ignore unknown or duplicate fields", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(j)), zap.Error(sanitize(err)))
	case runtime.IsNotRegisteredError(err):
		// A custom resource, say: not ours to read, and not an error.
		objs.note(zapcore.InfoLevel, "ignore object of a kind socklb does not read", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(j)), zap.String(logfield.APIVersionKind, kindOf(gvk)))
		return nil
	case runtime.IsMissingKind(err):
		return errors.New("Object 'Kind' is missing")
	case runtime.IsMissingVersion(err):
		return errors.New("Object 'apiVersion' is missing")
	default:
		return sanitize(err)
	}
	return objs.addObject(obj, gvk, j, file)
}

func (objs *fileObjects) addObject(obj runtime.Object, gvk *schema.GroupVersionKind, j []byte, file string) error {
	switch o := obj.(type) {
	case *corev1.Service:
		return objs.addService(o)
	case *discoveryv1.EndpointSlice:
		return objs.addEndpointSlice(o)
	case *corev1.Endpoints:
		return objs.addEndpoints(o, file)
	case *corev1.List:
		for i, item := range o.Items {
			if err := objs.add(item.Raw, false, file); err != nil {
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
			if err := objs.addEndpoints(&o.Items[i], file); err != nil {
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
		objs.note(zapcore.InfoLevel, "ignore object of a kind socklb does not read", zap.String(logfield.File, file),
			zap.String(logfield.Object, describe(j)), zap.String(logfield.APIVersionKind, kindOf(gvk)))
	}
	return nil
}

var groupVersionPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[a-z0-9]{1,63}$`)

// kindOf names a kind socklb does not read, when it is a valid name.
func kindOf(gvk *schema.GroupVersionKind) string {
	if gvk == nil {
		return ""
	}
	gv := gvk.GroupVersion().String()
	if !groupVersionPattern.MatchString(gv) || !isIdentifier(gvk.Kind) {
		return "(not a valid kind)"
	}
	return gv + " " + gvk.Kind
}

func (objs *fileObjects) addService(svc *corev1.Service) error {
	if err := checkName("Service", svc.Name, svc.Namespace); err != nil {
		return err
	}
	svc.Namespace = defaultNamespace(svc.Namespace)
	objs.services = append(objs.services, svc)
	return nil
}

func (objs *fileObjects) addEndpointSlice(slice *discoveryv1.EndpointSlice) error {
	if err := checkName("EndpointSlice", slice.Name, slice.Namespace); err != nil {
		return err
	}
	slice.Namespace = defaultNamespace(slice.Namespace)
	objs.slices = append(objs.slices, slice)
	return nil
}

// addEndpoints mirrors an Endpoints object now, once per version of the
// file, rather than on every read of the directory.
func (objs *fileObjects) addEndpoints(ep *corev1.Endpoints, file string) error {
	if err := checkName("Endpoints", ep.Name, ep.Namespace); err != nil {
		return err
	}
	ep.Namespace = defaultNamespace(ep.Namespace)
	mirrored := mirroredEndpoints{namespace: ep.Namespace, name: ep.Name}
	object := zap.String(logfield.Object, objectKey{"Endpoints", ep.Namespace, ep.Name}.String())
	if ep.Labels[discoveryv1.LabelSkipMirror] == "true" {
		// Set by the endpoints controller on Endpoints it derives from a
		// selector; the EndpointSlices of such a Service come on their own.
		objs.note(zapcore.InfoLevel, "skip Endpoints labelled not to be mirrored", zap.String(logfield.File, file), object)
	} else {
		var errs []error
		mirrored.slices, errs = mirrorEndpoints(ep)
		for _, err := range errs {
			objs.note(zapcore.ErrorLevel, "drop Endpoints address", zap.String(logfield.File, file), object, zap.Error(sanitize(err)))
		}
	}
	objs.endpoints = append(objs.endpoints, mirrored)
	return nil
}

// checkName refuses an object without a name or with a name Kubernetes
// would refuse, so that every name socklb logs is an identifier and never
// arbitrary text from the file.
func checkName(kind, name, namespace string) error {
	if name == "" {
		return fmt.Errorf("read %s: metadata.name is empty", kind)
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		return fmt.Errorf("read %s: metadata.name is not a valid name (lower case letters, digits, '-' and '.')", kind)
	}
	if namespace != "" && len(validation.IsDNS1123Label(namespace)) > 0 {
		return fmt.Errorf("read %s: metadata.namespace is not a valid name (lower case letters, digits and '-')", kind)
	}
	return nil
}

var (
	// Quoted text in a decoder's message is usually the file's own text:
	// a value (`eighty`), a character ('x') or a key.
	backquoted   = regexp.MustCompile("`[^`]*`")
	singleQuoted = regexp.MustCompile(`'[^']*'`)
	doubleQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// A field path ("spec.ports[0].port") is what an operator needs to
	// find a typo; it names fields, it quotes no value.
	fieldPath = regexp.MustCompile(`^"[A-Za-z_$][A-Za-z0-9_$.\[\]-]{0,127}"$`)
	// "number 1e999", "string \"x\"": encoding/json quotes the value.
	jsonValue = regexp.MustCompile(`\b(number|string|bool) [^ ]+ into`)
	lineNum   = regexp.MustCompile(`\bline (\d+)`)
)

// maxMessage caps a decoder's message in the log.
const maxMessage = 300

// sanitize keeps what a decoder's error says but none of the file's text it
// may quote: sigs.k8s.io/yaml and the strict decoder put values, keys,
// characters and even whole documents (as Go values) into their messages.
func sanitize(err error) error {
	msg := err.Error()
	// "invalid map key: map[interface {}]interface {}{...}" and the like
	// print a decoded value with %#v: cut it off.
	for _, cut := range []string{"map[", "[]interface", "interface {}{"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i] + "(value left out)"
		}
	}
	// Messages that end with the offending value, unquoted.
	for _, prefix := range []string{"unexpected GroupVersion string: "} {
		if i := strings.Index(msg, prefix); i >= 0 {
			msg = msg[:i+len(prefix)] + "(value left out)"
		}
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.Join(strings.Fields(msg), " ") // multi-line yaml errors on one line
	msg = backquoted.ReplaceAllString(msg, "(value)")
	msg = jsonValue.ReplaceAllString(msg, "$1 into")
	msg = keepFieldPaths(msg)
	msg = singleQuoted.ReplaceAllStringFunc(msg, func(q string) string {
		if q == "'Kind'" || q == "'apiVersion'" {
			return q
		}
		return "(character)"
	})
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return errors.New(msg)
}

// keepFieldPaths replaces double-quoted text but a field path after
// "field " (`unknown field "spec.clusterIp"`).
func keepFieldPaths(msg string) string {
	var b strings.Builder
	last := 0
	for _, loc := range doubleQuoted.FindAllStringIndex(msg, -1) {
		q := msg[loc[0]:loc[1]]
		b.WriteString(msg[last:loc[0]])
		if strings.HasSuffix(msg[:loc[0]], "field ") && fieldPath.MatchString(q) {
			b.WriteString(q)
		} else {
			b.WriteString("(text)")
		}
		last = loc[1]
	}
	b.WriteString(msg[last:])
	return b.String()
}

// relineYAML turns the line numbers in a YAML error, counted from the
// document's start, into the file's.
func relineYAML(err error, docLine int) error {
	msg := lineNum.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, convErr := strconv.Atoi(m[len("line "):])
		if convErr != nil {
			return m
		}
		return "line " + strconv.Itoa(n+docLine-1)
	})
	return errors.New(msg)
}
