package dir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
)

// seedExample is what the demo and the documentation show users.
const seedExample = `apiVersion: v1
kind: Service
metadata: {name: nginx-service, namespace: default}
spec:
  clusterIP: 10.96.0.50
  selector: {app: nginx}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: nginx-service-abc, namespace: default, labels: {kubernetes.io/service-name: nginx-service}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.244.0.2"]
  conditions: {ready: true}
`

func service(name, clusterIP string) string {
	return `apiVersion: v1
kind: Service
metadata: {name: ` + name + `}
spec:
  clusterIP: ` + clusterIP + `
  ports: [{name: http, port: 80}]
`
}

// wantLog is a log entry expected from reading a directory.
type wantLog struct {
	level    zapcore.Level
	message  string
	file     string
	object   string
	contains string // in the error field, or in the message when there is none
}

func TestReadDirectory(t *testing.T) {
	testCases := []struct {
		name        string
		files       map[string]string
		wantObjects []string
		wantLogs    []wantLog
	}{
		{
			name:  "seed example: a Service and its EndpointSlice in one file",
			files: map[string]string{"nginx.yaml": seedExample},
			wantObjects: []string{
				"Service default/nginx-service",
				"EndpointSlice default/nginx-service-abc",
			},
		},
		{
			name: "multi-document YAML with empty documents and comments",
			files: map[string]string{"all.yaml": "---\n# the first\n" + service("a", "10.96.0.1") +
				"---\n---\n# nothing here\n---\n" + service("b", "10.96.0.2") + "...\n---\n"},
			wantObjects: []string{"Service default/a", "Service default/b"},
		},
		{
			name: "JSON, .yml and a namespace other than default",
			files: map[string]string{
				"a.json": `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"web"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}`,
				"b.yml":  service("b", "10.96.0.2"),
			},
			wantObjects: []string{"Service web/a", "Service default/b"},
		},
		{
			name: "a List as kubectl get -o yaml writes it, and a typed list",
			files: map[string]string{
				"list.yaml": "apiVersion: v1\nkind: List\nitems:\n" +
					"- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}}\n" +
					"- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
				"services.yaml": "apiVersion: v1\nkind: ServiceList\nitems:\n" +
					"- {metadata: {name: b, namespace: web}, spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}}\n",
			},
			wantObjects: []string{"Service default/a", "Service web/b"},
			wantLogs: []wantLog{
				{zapcore.InfoLevel, "ignore object of a kind socklb does not read", "list.yaml", "ConfigMap default/c", "ignore object"},
			},
		},
		{
			name: "other kinds and versions are logged and ignored",
			files: map[string]string{"mixed.yaml": service("a", "10.96.0.1") +
				"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nginx}\n" +
				"---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"},
			wantObjects: []string{"Service default/a"},
			wantLogs: []wantLog{
				{zapcore.InfoLevel, "ignore object of a kind socklb does not read", "mixed.yaml", "Deployment default/nginx", "ignore object"},
				{zapcore.InfoLevel, "ignore object of a kind socklb does not read", "mixed.yaml", "Widget default/w", "ignore object"},
			},
		},
		{
			name: "hidden files, editor leftovers, other extensions and subdirectories are not read",
			files: map[string]string{
				"a.yaml":             service("a", "10.96.0.1"),
				".hidden.yaml":       service("hidden", "10.96.0.2"),
				".a.yaml.swp":        "binary junk",
				".#a.yaml":           "lock",
				"#a.yaml#":           service("autosave", "10.96.0.3"),
				"a.yaml~":            service("backup", "10.96.0.4"),
				"notes.txt":          "not objects",
				"sub/in-subdir.yaml": service("nested", "10.96.0.5"),
			},
			wantObjects: []string{"Service default/a"},
		},
		{
			name: "a malformed file does not lose other files' objects",
			files: map[string]string{
				"a.yaml":      service("a", "10.96.0.1"),
				"broken.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: broken\n",
				"c.yaml":      service("c", "10.96.0.3"),
			},
			wantObjects: []string{"Service default/a", "Service default/c"},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "broken.yaml", "", "decode document 1"},
			},
		},
		{
			name: "one bad document drops the whole file, naming the object",
			files: map[string]string{
				"a.yaml": service("a", "10.96.0.1") + "---\n" +
					"apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: eighty}]}\n",
				"c.yaml": service("c", "10.96.0.3"),
			},
			wantObjects: []string{"Service default/c"},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "a.yaml", "Service default/b", "decode document 2 at line 8 (Service default/b)"},
			},
		},
		{
			name: "a document without kind drops the file",
			files: map[string]string{
				"a.yaml": "metadata: {name: a}\nspec: {clusterIP: 10.96.0.1}\n",
			},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "a.yaml", "", "Object 'Kind' is missing"},
			},
		},
		{
			name: "an object without a name drops the file",
			files: map[string]string{
				"a.yaml": "apiVersion: v1\nkind: Service\nmetadata: {namespace: web}\nspec: {clusterIP: 10.96.0.1}\n",
			},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "a.yaml", "", "metadata.name is empty"},
			},
		},
		{
			name: "unknown fields are warned about and the object kept",
			files: map[string]string{
				"a.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: 10.96.0.1, ports: [{port: 80}]}\n",
			},
			wantObjects: []string{"Service default/a"},
			wantLogs: []wantLog{
				{zapcore.WarnLevel, "ignore unknown or duplicate fields", "a.yaml", "Service default/a", `unknown field "spec.clusterIp"`},
			},
		},
		{
			name: "the same object in two files: the first file in lexical order wins",
			files: map[string]string{
				"b.yaml": service("web", "10.96.0.2"),
				"a.yaml": service("web", "10.96.0.1"),
			},
			wantObjects: []string{"Service default/web 10.96.0.1"},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore duplicate object", "b.yaml", "Service default/web", "already defined in a.yaml"},
			},
		},
		{
			name: "Endpoints are mirrored into EndpointSlices",
			files: map[string]string{
				"db.yaml": service("db", "10.96.0.7") + "---\n" +
					"apiVersion: v1\nkind: Endpoints\nmetadata: {name: db}\n" +
					"subsets:\n- addresses: [{ip: 192.168.1.20}, {ip: bogus}]\n  ports: [{name: http, port: 5432}]\n",
			},
			wantObjects: []string{"Service default/db", "EndpointSlice default/db-mirror-0-ipv4"},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "drop Endpoints address", "db.yaml", "Endpoints default/db", "mirror subset 0: ParseAddr((text))"},
			},
		},
		{
			name: "Endpoints labelled skip-mirror are not mirrored",
			files: map[string]string{
				"db.yaml": "apiVersion: v1\nkind: Endpoints\n" +
					"metadata: {name: db, labels: {endpointslice.kubernetes.io/skip-mirror: \"true\"}}\n" +
					"subsets:\n- addresses: [{ip: 192.168.1.20}]\n  ports: [{port: 5432}]\n",
			},
			wantLogs: []wantLog{
				{zapcore.InfoLevel, "skip Endpoints labelled not to be mirrored", "db.yaml", "Endpoints default/db", "skip Endpoints"},
			},
		},
	}

	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			core, logs := observer.New(zapcore.InfoLevel)
			log := zap.New(core)

			snap := readOnce(t, dir, log, Options{})

			if got := describeSnapshot(snap); !slices.Equal(got, tc.wantObjects) {
				t.Errorf("objects:\ngot  %q\nwant %q", got, tc.wantObjects)
			}
			checkLogs(t, logs.All(), tc.wantLogs)
		})
	}
}

// TestSeedExampleTranslates checks the seed example end to end through the
// desired-state builder: what a user writes is what the datapath gets.
func TestSeedExampleTranslates(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "nginx.yaml"), seedExample)
	snap := readOnce(t, dir, zap.NewNop(), Options{})
	state, errs := desired.Build(snap.Services, snap.EndpointSlices, desired.NodeInfo{})
	if len(errs) > 0 {
		t.Errorf("build desired state: %v", errs)
	}
	var got []string
	for _, svc := range state.Sorted() {
		row := svc.Frontend.String() + " " + svc.Name.String() + " ->"
		for _, be := range svc.Active {
			row += " " + be.String()
		}
		got = append(got, row)
	}
	want := []string{"10.96.0.50:80/TCP default/nginx-service:http -> 10.244.0.2:8080/TCP"}
	if !slices.Equal(got, want) {
		t.Errorf("flows:\ngot  %q\nwant %q", got, want)
	}
}

// readOnce reads dir as a Source's first read does and returns what it
// found.
func readOnce(t *testing.T, dir string, log *zap.Logger, opts Options) source.Snapshot {
	t.Helper()
	src := NewSource(dir, log, opts)
	if _, err := src.read(nil, nil, true); err != nil {
		t.Fatalf("read directory: %v", err)
	}
	return src.Snapshot()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// describeSnapshot lists a snapshot's objects as "Kind namespace/name", a
// Service followed by its clusterIP when it has one, so that a test can
// tell which of two definitions won.
func describeSnapshot(snap source.Snapshot) []string {
	var out []string
	for _, svc := range snap.Services {
		s := objectKey{"Service", svc.Namespace, svc.Name}.String()
		if svc.Spec.ClusterIP != "" && strings.Contains(svc.Name, "web") {
			s += " " + svc.Spec.ClusterIP
		}
		out = append(out, s)
	}
	for _, slice := range snap.EndpointSlices {
		out = append(out, objectKey{"EndpointSlice", slice.Namespace, slice.Name}.String())
	}
	return out
}

func checkLogs(t *testing.T, entries []observer.LoggedEntry, want []wantLog) {
	t.Helper()
	var got []observer.LoggedEntry
	for _, e := range entries {
		if e.Message != "read directory" { // the summary of every read
			got = append(got, e)
		}
	}
	for i, e := range got {
		fields := e.ContextMap()
		if i >= len(want) {
			t.Errorf("unexpected log: %s %q %v", e.Level, e.Message, fields)
			continue
		}
		w := want[i]
		text, _ := fields["error"].(string)
		if text == "" {
			text = e.Message
		}
		if e.Level != w.level || e.Message != w.message || fields["file"] != w.file ||
			!(w.object == "" && fields["object"] == nil || fields["object"] == w.object) ||
			!strings.Contains(text, w.contains) {
			t.Errorf("log %d:\ngot  %s %q %v\nwant %s %q file=%s object=%q saying %q", i, e.Level, e.Message, fields, w.level, w.message, w.file, w.object, w.contains)
		}
	}
	for _, w := range want[min(len(got), len(want)):] {
		t.Errorf("missing log: %s %q file=%s object=%q saying %q", w.level, w.message, w.file, w.object, w.contains)
	}
}
