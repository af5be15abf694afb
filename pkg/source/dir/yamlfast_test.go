package dir

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// kubectlService is a Service as kubectl get -o yaml writes it: block
// style throughout.
const kubectlService = `apiVersion: v1
kind: Service
metadata:
  annotations:
    example.com/owner: team-a
  creationTimestamp: "2026-11-01T10:00:00Z"
  labels:
    app.kubernetes.io/name: web
  name: web
  namespace: default
  resourceVersion: "4711"
  uid: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
spec:
  clusterIP: 10.96.0.10
  clusterIPs:
  - 10.96.0.10
  - fd00::10
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  - IPv6
  ipFamilyPolicy: PreferDualStack
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
  - name: metrics
    port: -1
    protocol: UDP
    targetPort: metrics
  publishNotReadyAddresses: false
  selector:
    app: web
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
`

// The fast path reads the documents socklb's files are made of, and gives
// what go-yaml's path gives.
func TestFastYAMLToJSONReadsTheUsualDocuments(t *testing.T) {
	slice := strings.SplitN(serviceWithSlice("web", 7), "---\n", 2)[1]
	testCases := []struct{ name, doc string }{
		{"the documentation's Service", strings.Split(seedExample, "---\n")[0]},
		{"the documentation's EndpointSlice", strings.Split(seedExample, "---\n")[1]},
		{"an EndpointSlice of three endpoints in block and flow style", slice},
		{"kubectl's block style, leading comment lines and blank lines", "# web\n\n" + kubectlService},
		{"a sequence at its key's indentation and one indented", "a:\n- 1\n- x\nb:\n  - z\n"},
		{"compact mappings in a sequence, nested", "items:\n-   name: a\n    ports:\n    - port: 1\n-\n  name: b\n- c\n"},
		{"empty values and collections", "a:\nb: {}\nc: []\nd: {e: [], f: {}}\n"},
		{"an empty document", ""},
		{"comments and blank lines only", "# nothing\n\n   \n# here: 1\n"},
		{"quoted strings with JSON's escapes", "a: \"<&>\"\nb: 'it \"is\"'\nc: \"\"\n"},
		{"words, numbers and addresses", "a: [0, -12, 123456789012345678, 10.0.0.1, /healthz, _x, a.b/c-d]\nb: http://x:80\nc: fd00::10\n"},
		{"flow nesting to the limit", "a: " + strings.Repeat("[", maxYAMLDepth) + strings.Repeat("]", maxYAMLDepth) + "\n"},
		{"block nesting to the limit", blockNesting(maxYAMLDepth)},
		{"UUIDs, as the uid of a Service", "a: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\nb: 12345678-1234-1234-1234-123456789012\n"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := fastYAMLToJSON([]byte(tc.doc))
			if !ok {
				t.Fatalf("the fast path left it to go-yaml:\n%s", tc.doc)
			}
			want, err := yaml.YAMLToJSONStrict([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// What the fast path cannot be sure of is go-yaml's to read.
func TestFastYAMLToJSONLeavesTheRestToGoYAML(t *testing.T) {
	testCases := []struct{ name, doc string }{
		{"YAML 1.1 booleans", "a: yes\n"},
		{"a key longer than go-yaml's 1,024 characters", strings.Repeat("k", 1025) + ":\n"},
		{"a flow key longer than that", "a: {" + strings.Repeat("k", 1025) + ": 1}\n"},
		{"null words", "a: ~\n"},
		{"floats", "a: 1.5\n"},
		{"a leading zero (octal)", "a: 0755\n"},
		{"a plus sign", "a: +1\n"},
		{"an integer past 18 digits", "a: 1234567890123456789\n"},
		{"a timestamp", "a: 2026-12-01\n"},
		{"a comment after content", "a: 1 # one\n"},
		{"a block scalar", "a: |\n  text\n"},
		{"anchors and aliases", "a: &x 1\nb: *x\n"},
		{"a tag", "a: !!str 1\n"},
		{"a duplicate key", "a: 1\na: 2\n"},
		{"a key that is a number", "1: a\n"},
		{"a quoted key", "\"a\": 1\n"},
		{"an escape", "a: \"x\\ty\"\n"},
		{"an escaped single quote", "a: 'it''s'\n"},
		{"a tab", "a:\t1\n"},
		{"non-ASCII", "a: café\n"},
		{"a flow collection over two lines", "a: [1,\n  2]\n"},
		{"a trailing comma", "a: [1, ]\n"},
		{"a colon in a flow scalar", "a: [fd00::1]\n"},
		{"a plain scalar with spaces", "a: hello world\n"},
		{"a continuation line", "a: b\n  c\n"},
		{"a scalar document", "hello\n"},
		{"a nested compact sequence", "- - a\n"},
		{"a mapping in a mapping's value", "a: b: c\n"},
		{"flow nesting past the limit", "a: " + strings.Repeat("[", maxYAMLDepth+1) + strings.Repeat("]", maxYAMLDepth+1) + "\n"},
		{"block nesting past the limit", blockNesting(maxYAMLDepth + 1)},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := fastYAMLToJSON([]byte(tc.doc)); ok {
				t.Errorf("the fast path read %q as %s", tc.doc, got)
			}
		})
	}
}

// blockNesting is a document of depth block mappings, one in another.
func blockNesting(depth int) string {
	var b strings.Builder
	for i := range depth {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	return b.String()
}
