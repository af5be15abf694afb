package dir

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	yamlv2 "go.yaml.in/yaml/v2"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/socklb/socklb/pkg/desired"
)

// FuzzDecodeFile gives decodeFile any bytes as a file. It must not panic,
// what it returns must be well-formed objects, and neither its error nor
// its log lines may carry the file's text (seeds: testdata/fuzz and the
// cases below).
func FuzzDecodeFile(f *testing.F) {
	for _, seed := range []string{
		seedExample,
		serviceWithSlice("web", 7),
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [{port: 80}]}}\n",
		"apiVersion: v1\nkind: Endpoints\nmetadata: {name: db}\nsubsets:\n- addresses: [{ip: 192.168.1.20}, {ip: bogus}]\n  ports: [{port: 5432}]\n",
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}}`,
		"root:$6$abcdefgh$x:19000:0:99999:7:::\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
		"kind: Service\nkind: Service\nmetadata: {name: x}\n",
		"---\n# only a comment\n---\n...\n",
		"kind: Service\r\nmetadata:\r\n  name: crlf\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := decodeFile("fuzz.yaml", data)
		var texts []string
		if err != nil {
			text := err.Error()
			var docErr *documentError
			if errors.As(err, &docErr) && docErr.object != "" {
				checkObjectName(t, docErr.object)
				text = strings.Replace(text, docErr.object, "(object)", 1) // validated by describe
			}
			texts = append(texts, text)
		} else {
			checkWellFormed(t, objs)
			texts = append(texts, noteTexts(objs)...)
			checkStored(t, objs)
		}
		checkDecodeStored(t, data, objs, err)
		for _, text := range texts {
			if quoted := quotedFrom(text, data); quoted != "" {
				t.Errorf("output quotes the file (%q): %s", quoted, text)
			}
		}
	})
}

// checkWellFormed fails on an object the desired-state builder could not
// name or place.
func checkWellFormed(t *testing.T, objs *fileObjects) {
	t.Helper()
	checkNames := func(kind, name, namespace string) {
		if len(validation.IsDNS1123Subdomain(name)) > 0 || len(validation.IsDNS1123Label(namespace)) > 0 {
			t.Errorf("%s with name %q in namespace %q", kind, name, namespace)
		}
	}
	for _, svc := range objs.services {
		checkNames("Service", svc.Name, svc.Namespace)
	}
	slices := objs.slices
	for _, ep := range objs.endpoints {
		checkNames("Endpoints", ep.name, ep.namespace)
		for _, s := range ep.slices {
			if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
				t.Errorf("mirrored slice %s has address type %q", s.Name, s.AddressType)
			}
			for _, e := range s.Endpoints {
				if len(e.Addresses) != 1 {
					t.Errorf("mirrored endpoint with %d addresses", len(e.Addresses))
				} else if _, err := desired.ParseAddr(e.Addresses[0]); err != nil {
					t.Errorf("mirrored endpoint: %v", err)
				}
			}
		}
		slices = append(slices, ep.slices...)
	}
	for _, s := range slices {
		checkNames("EndpointSlice", s.Name, s.Namespace)
	}
}

// checkStored fails unless the objects the source keeps between reads
// decode to the decoded ones, but for the fields store leaves out.
func checkStored(t *testing.T, objs *fileObjects) {
	t.Helper()
	stored := store(objs) // trims objs as it stores them
	if len(stored.services) != len(objs.services) || len(stored.slices) != len(objs.slices) || len(stored.endpoints) != len(objs.endpoints) {
		t.Fatalf("stored %d Services, %d EndpointSlices, %d Endpoints; decoded %d, %d, %d", len(stored.services), len(stored.slices),
			len(stored.endpoints), len(objs.services), len(objs.slices), len(objs.endpoints))
	}
	for i, svc := range objs.services {
		got := stored.services[i].service()
		got.TypeMeta, svc.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
		if !apiequality.Semantic.DeepEqual(got, svc) {
			t.Errorf("stored Service %s decodes to\n%+v\nwant\n%+v", svc.Name, got, svc)
		}
	}
	decoded := objs.slices
	var kept []storedSlice
	kept = append(kept, stored.slices...)
	for i, ep := range objs.endpoints {
		decoded = append(decoded, ep.slices...)
		kept = append(kept, stored.endpoints[i].slices...)
	}
	for i, slice := range decoded {
		got := kept[i].slice()
		got.TypeMeta, slice.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
		if !apiequality.Semantic.DeepEqual(got, slice) {
			t.Errorf("stored EndpointSlice %s decodes to\n%+v\nwant\n%+v", slice.Name, got, slice)
		}
		if ref, ok := desired.SliceServiceRef(slice); ok != kept[i].ofService || ref != kept[i].service {
			t.Errorf("stored EndpointSlice %s belongs to %v (%v), want %v (%v)", slice.Name, kept[i].service, kept[i].ofService, ref, ok)
		}
	}
}

// checkDecodeStored fails unless what the source keeps of a file is what
// decodeFile and store make of it, and a second decode that may take every
// document from the first gives the same.
func checkDecodeStored(t *testing.T, data []byte, objs *fileObjects, decodeErr error) {
	t.Helper()
	stored, notes, index, err := decodeStored("fuzz.yaml", data, nil, nil, 1)
	if (err == nil) != (decodeErr == nil) || err != nil && err.Error() != decodeErr.Error() {
		t.Fatalf("decodeStored: error %v; decodeFile: %v", err, decodeErr)
	}
	if err != nil {
		return
	}
	if len(notes) != len(objs.notes) {
		t.Errorf("decodeStored: %d notes; decodeFile: %d", len(notes), len(objs.notes))
	}
	again, _, _, err := decodeStored("fuzz.yaml", data, stored, index, 1)
	if err != nil {
		t.Fatalf("decodeStored again: %v", err)
	}
	want := store(objs)
	for _, st := range []*storedFile{stored, again} {
		if !reflect.DeepEqual(st.keys(), want.keys()) {
			t.Fatalf("decodeStored keeps %v; decodeFile and store %v", st.keys(), want.keys())
		}
		for i, svc := range st.services {
			if !bytes.Equal(svc.raw, want.services[i].raw) {
				t.Errorf("decodeStored keeps Service %s otherwise than store", svc.name)
			}
		}
		wantSlices := want.allSlices()
		for i, slice := range st.allSlices() {
			if !bytes.Equal(slice.raw, wantSlices[i].raw) {
				t.Errorf("decodeStored keeps EndpointSlice %s otherwise than store", slice.name)
			}
		}
	}
}

// checkObjectName fails unless object reads "Kind namespace/name" with
// valid names, as describe makes it.
func checkObjectName(t *testing.T, object string) {
	t.Helper()
	kind, ref, ok := strings.Cut(object, " ")
	ns, name, ok2 := strings.Cut(ref, "/")
	if !ok || !ok2 || !isIdentifier(kind) || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		t.Errorf("object named %q", object)
	}
}

// noteTexts renders a file's log notes as lines, leaving out the fields
// that hold names checked to be identifiers.
func noteTexts(objs *fileObjects) []string {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	for _, n := range objs.notes {
		log.Check(n.level, n.message).Write(n.fields...)
	}
	var texts []string
	for _, e := range logs.All() {
		fields := e.ContextMap()
		delete(fields, "object")           // kind and names, validated by describe
		delete(fields, "api_version_kind") // validated by kindOf
		texts = append(texts, fmt.Sprint(e.Message, " ", fields))
	}
	return texts
}

// quotedField is a field path that a strict decoder names; it names fields,
// and the operator needs it to find a typo.
var quotedField = regexp.MustCompile(`field "[^"]*"`)

// quotedFrom returns a run of quoteWindow bytes of text that is also in
// data, or "".
func quotedFrom(text string, data []byte) string {
	const quoteWindow = 16
	text = quotedField.ReplaceAllString(text, "field")
	input := string(data)
	for i := 0; i+quoteWindow <= len(text); i++ {
		if w := text[i : i+quoteWindow]; strings.TrimSpace(w) != "" && strings.Contains(input, w) {
			return w
		}
	}
	return ""
}

// FuzzYAMLToJSON checks that the source's YAML to JSON conversion writes
// what sigs.k8s.io/yaml does, byte for byte, error for error, and that
// decodeObject's short way for the known kinds decodes that JSON as the
// serializer does.
func FuzzYAMLToJSON(f *testing.F) {
	for _, seed := range []string{
		seedExample,
		serviceWithSlice("web", 7),
		"a: 1\nb: [1, 2.5, -3, 0x1F, 1e3, .inf, ~, null, yes, off, \"<&>\", 'x\\ty']\n",
		"1: a\n\"1\": b\ntrue: c\n",
		"s: \"caf\\u00e9 \\u2028 \\x01\"\nt: 2024-01-01T00:00:00Z\n",
		"a: &a {x: [1, 2]}\nb: *a\n",
		"? [1, 2]\n: 3\n",
		"a: 1\na: 2\n",
		"big: 18446744073709551615\nneg: -9223372036854775808\n",
		"",
		// What the fast path reads (fastYAMLToJSON).
		kubectlService,
		"items:\n-   name: a\n    ports:\n    - port: 1\n-\n  name: b\n- c\nd: {e: [], f: {}}\ng:\n",
		"a: [0, -12, 10.0.0.1, /healthz, 'q\"', \"<>\"]\nb: http://x:80\nc: fd00::10\nd: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\n",
		// What decodeObject reads the short way, and its errors.
		strings.Split(seedExample, "---\n")[1],
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: 10.96.0.1, ports: [{port: 80, bogus: 1}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: http}]}\n",
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: a}\nendpoints: [{addresses: [1.2.3.4], conditions: {ready: 1}}]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := yamlToJSONStrict(data)
		want, wantErr := yaml.YAMLToJSONStrict(data)
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("error %v, want %v", gotErr, wantErr)
		}
		if !bytes.Equal(got, want) && !collidingKeys(data) {
			t.Fatalf("JSON\n%s\nwant\n%s", got, want)
		}
		if gotErr != nil {
			return
		}
		obj, gvk, err := decodeObject(got, true)
		wantObj, wantGVK, wantErr := decoder.Decode(got, nil, nil)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("decode error %v, want %v", err, wantErr)
		}
		if !apiequality.Semantic.DeepEqual(obj, wantObj) || (wantErr == nil && *gvk != *wantGVK) {
			t.Fatalf("decoded %v %#v, want %v %#v", gvk, obj, wantGVK, wantObj)
		}
	})
}

// collidingKeys says whether a mapping of the document has two keys that
// become the same string (1 and "1"): sigs.k8s.io/yaml keeps either of the
// two values, as Go's map iteration has it, so no output is the one.
func collidingKeys(data []byte) bool {
	var obj any
	if yamlv2.Unmarshal(data, &obj) != nil {
		return false
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case map[any]any:
			seen := map[string]bool{}
			for k, item := range v {
				s := fmt.Sprint(k)
				if seen[s] || walk(item) {
					return true
				}
				seen[s] = true
			}
		case []any:
			return slices.ContainsFunc(v, walk)
		}
		return false
	}
	return walk(obj)
}
