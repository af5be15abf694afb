package dir

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"

	"github.com/socklb/socklb/pkg/source"
)

// The tests here are issue 12's findings about the directory source, one
// named case each; every case also holds a healthy Service in the same
// directory and checks that its objects stay in the Snapshot.

const healthyFile = "healthy.yaml"

var healthyObjects = []string{"Service default/healthy", "EndpointSlice default/healthy-1"}

// serviceWithSlice is a Service and its EndpointSlice of three endpoints.
func serviceWithSlice(name string, n int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  clusterIP: 10.96.%[2]d.%[3]d
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-1
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.244.%[2]d.%[3]d"]
  conditions: {ready: true}
- addresses: ["10.245.%[2]d.%[3]d"]
  conditions: {ready: true}
- addresses: ["10.246.%[2]d.%[3]d"]
  conditions: {ready: true}
`, name, n/250, n%250+1)
}

// secret is text that must never reach the log.
const secret = "SECRETHASH"

func TestFinding4ReadOnlyWhatBelongsToTheDirectory(t *testing.T) {
	testCases := []struct {
		name        string
		setup       func(t *testing.T, dir, outside string)
		opts        Options
		wantObjects []string
		wantLogs    []wantLog
	}{
		{
			name: "a link out of the directory is refused, naming the link and never its target's content",
			setup: func(t *testing.T, dir, outside string) {
				writeFile(t, filepath.Join(outside, "shadow"), "root:$6$"+secret+"$x:19000:0:99999:7:::\n")
				symlink(t, filepath.Join(outside, "shadow"), filepath.Join(dir, "evil.yaml"))
				writeFile(t, filepath.Join(outside, "svc.yaml"), service("outside", "10.96.9.9"))
				symlink(t, "../outside/svc.yaml", filepath.Join(dir, "relative.yaml"))
			},
			wantObjects: healthyObjects,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "refuse file", "evil.yaml", "", "the link points out of the directory"},
				{zapcore.ErrorLevel, "refuse file", "relative.yaml", "", "the link points out of the directory"},
			},
		},
		{
			name: "a link within the directory is followed, as in a mounted ConfigMap",
			setup: func(t *testing.T, dir, _ string) {
				writeFile(t, filepath.Join(dir, "..2026_12_01", "cm.yaml"), service("cm", "10.96.0.9"))
				symlink(t, "..2026_12_01", filepath.Join(dir, "..data"))
				symlink(t, "..data/cm.yaml", filepath.Join(dir, "cm.yaml"))
			},
			wantObjects: []string{"Service default/cm", "Service default/healthy", "EndpointSlice default/healthy-1"},
		},
		{
			name: "a directory, a FIFO and a dangling link are refused, and reading does not block",
			setup: func(t *testing.T, dir, _ string) {
				if err := os.Mkdir(filepath.Join(dir, "adir.yaml"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
					t.Fatal(err)
				}
				symlink(t, "missing.yaml", filepath.Join(dir, "gone.yaml"))
			},
			wantObjects: healthyObjects,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "refuse file", "adir.yaml", "", "not a regular file"},
				{zapcore.ErrorLevel, "refuse file", "fifo.yaml", "", "not a regular file"},
				{zapcore.ErrorLevel, "skip file: it cannot be read", "gone.yaml", "", "resolve link"},
			},
		},
		{
			name: "a file over the size limit is refused with a clear line",
			setup: func(t *testing.T, dir, _ string) {
				writeFile(t, filepath.Join(dir, "big.yaml"), service("big", "10.96.0.8")+"# "+strings.Repeat(secret, 300)+"\n")
			},
			opts:        Options{MaxFileSize: 2048},
			wantObjects: healthyObjects,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "refuse file", "big.yaml", "", "bytes is more than the limit of 2048 (--max-file-size)"},
			},
		},
		{
			name: "decoder messages say what is wrong and where, never what the file holds",
			setup: func(t *testing.T, dir, _ string) {
				files := map[string]string{
					"a-shadow.yaml":   "root:$6$" + secret + "$x:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
					"b-value.yaml":    "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: " + secret + "}]}\n",
					"c-nokind.json":   `{"metadata": {"name": "` + secret + `"}, "data": "` + secret + `"}`,
					"d-mapkey.yaml":   "? [" + secret + ", x]\n: 1\n",
					"e-badjson.json":  `{"kind": "Service", "x": ` + secret + `}`,
					"f-tab.yaml":      "kind: Service\nmetadata:\n\tname: " + secret + "\n",
					"g-unknown.yaml":  "apiVersion: v1\nkind: Service\nmetadata: {name: g}\nspec: {clusterIP: 10.96.0.7, ports: [{port: 80}], x: " + secret + "}\n",
					"h-number.json":   `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"}, "spec": {"ports": [{"port": 1.5e3` + "7" + `}]}}`,
					"i-badname.yaml":  "apiVersion: v1\nkind: Service\nmetadata: {name: " + secret + "}\n",
					"j-separator.yml": "kind: Service\n--- " + secret + "\n",
				}
				for name, content := range files {
					writeFile(t, filepath.Join(dir, name), content)
				}
			},
			wantObjects: []string{"Service default/g", "Service default/healthy", "EndpointSlice default/healthy-1"},
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "a-shadow.yaml", "", "decode document 1 at line 1"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "b-value.yaml", "Service default/b", "cannot unmarshal string into Go struct field ServicePort.spec.ports.port"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "c-nokind.json", "", "Object 'Kind' is missing"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "d-mapkey.yaml", "", "invalid map key"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "e-badjson.json", "", "decode document 1 at line 1"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "f-tab.yaml", "", "line 3"},
				{zapcore.WarnLevel, "ignore unknown or duplicate fields", "g-unknown.yaml", "Service default/g", `unknown field "spec.x"`},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "h-number.json", "Service default/h", "cannot unmarshal number into Go struct field"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "i-badname.yaml", "", "metadata.name is not a valid name"},
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "j-separator.yml", "", "line 2: text after the document separator"},
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, outside := filepath.Join(base, "dir"), filepath.Join(base, "outside")
			writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir, outside)
			core, logs := observer.New(zapcore.DebugLevel)

			done := make(chan struct{})
			go func() {
				defer close(done)
				if got := describeSnapshot(readOnce(t, dir, zap.New(core), tc.opts)); !slices.Equal(got, tc.wantObjects) {
					t.Errorf("objects:\ngot  %q\nwant %q", got, tc.wantObjects)
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("reading the directory blocked")
			}
			checkLogs(t, logs.All(), tc.wantLogs)
			checkNoContent(t, logs.All(), secret)
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// checkNoContent fails if any log entry carries text from a file.
func checkNoContent(t *testing.T, entries []observer.LoggedEntry, text string) {
	t.Helper()
	for _, e := range entries {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(strings.ToLower(line), strings.ToLower(text)) {
			t.Errorf("a log line quotes a file: %s", line)
		}
	}
}

// boundaryService is a Service of exactly size bytes with no trailing
// newline, padded in an annotation, in the given format.
func boundaryService(t *testing.T, format string, size int) string {
	t.Helper()
	var head, tail string
	switch format {
	case "json":
		head = `{"apiVersion":"v1","kind":"Service","spec":{"clusterIP":"10.96.1.1","ports":[{"port":80}]},"metadata":{"name":"boundary","annotations":{"pad":"`
		tail = `"}}}`
	case "one-line yaml":
		head = `{apiVersion: v1, kind: Service, spec: {clusterIP: 10.96.1.1, ports: [{port: 80}]}, metadata: {name: boundary, annotations: {pad: `
		tail = `}}}`
	case "yaml":
		head = "apiVersion: v1\nkind: Service\nspec: {clusterIP: 10.96.1.1, ports: [{port: 80}]}\nmetadata:\n  name: boundary\n  annotations:\n    pad: "
	}
	content := head + strings.Repeat("x", size-len(head)-len(tail)) + tail
	if len(content) != size {
		t.Fatalf("built %d bytes, want %d", len(content), size)
	}
	return content
}

func TestFinding6FilesEndingOnTheReadBufferBoundary(t *testing.T) {
	testCases := []struct {
		name   string
		file   string
		format string
		size   int
	}{
		{"one-line JSON of 4,096 bytes without a trailing newline", "boundary.json", "json", 4096},
		{"one-line JSON of 8,192 bytes without a trailing newline", "boundary.json", "json", 8192},
		{"one-line YAML of 4,096 bytes without a trailing newline", "boundary.yaml", "one-line yaml", 4096},
		{"one-line YAML of 8,192 bytes without a trailing newline", "boundary.yaml", "one-line yaml", 8192},
		{"YAML of 4,096 bytes whose last line has no newline", "boundary.yaml", "yaml", 4096},
		{"YAML of 8,192 bytes whose last line has no newline", "boundary.yaml", "yaml", 8192},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
			content := boundaryService(t, tc.format, tc.size)
			writeFile(t, filepath.Join(dir, tc.file), content)
			core, logs := observer.New(zapcore.InfoLevel)

			snap := readOnce(t, dir, zap.New(core), Options{})
			want := []string{"Service default/boundary", "Service default/healthy", "EndpointSlice default/healthy-1"}
			if got := describeSnapshot(snap); !slices.Equal(got, want) {
				t.Fatalf("objects:\ngot  %q\nwant %q", got, want)
			}
			pad := snap.Services[0].Annotations["pad"]
			if wantPad := strings.Count(content, "x"); len(pad) != wantPad {
				t.Errorf("annotation pad has %d bytes, want %d: the file's end was lost", len(pad), wantPad)
			}
			checkLogs(t, logs.All(), nil)
		})
	}
}

// TestFinding7FileThatFailsKeepsItsLastGoodVersion takes one directory
// through the steps in order, reading it after each as a resync would.
func TestFinding7FileThatFailsKeepsItsLastGoodVersion(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
	edited := filepath.Join(dir, "edited.yaml")
	good := serviceWithSlice("edited", 2)
	withEdited := []string{"Service default/edited", "Service default/healthy", "EndpointSlice default/edited-1", "EndpointSlice default/healthy-1"}

	steps := []struct {
		name        string
		do          func(t *testing.T)
		wantObjects []string
		wantLogs    []wantLog
	}{
		{
			name:        "a good version counts",
			do:          func(t *testing.T) { writeFile(t, edited, good) },
			wantObjects: withEdited,
		},
		{
			name:        "half-written, it keeps the last good version, logged once",
			do:          func(t *testing.T) { writeFile(t, edited, good[:len(good)/3]) },
			wantObjects: withEdited,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "keep the last good version of the file: this one cannot be decoded", "edited.yaml", "", "decode document 2 at line 8: Object 'Kind' is missing"},
			},
		},
		{
			name:        "resyncs while it stays broken log nothing more",
			do:          func(t *testing.T) {},
			wantObjects: withEdited,
		},
		{
			name:        "emptied, as by a truncate before a rewrite, it keeps the last good version",
			do:          func(t *testing.T) { writeFile(t, edited, "") },
			wantObjects: withEdited,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "keep the last good version of the file: this one is empty", "edited.yaml", "", "the file is empty; remove it to withdraw its objects"},
			},
		},
		{
			name:        "a new good version replaces it and says so",
			do:          func(t *testing.T) { writeFile(t, edited, serviceWithSlice("edited2", 3)) },
			wantObjects: []string{"Service default/edited2", "Service default/healthy", "EndpointSlice default/edited2-1", "EndpointSlice default/healthy-1"},
			wantLogs:    []wantLog{{zapcore.InfoLevel, "file is read again", "edited.yaml", "", "file is read again"}},
		},
		{
			name: "a file that never decoded counts for nothing, logged once",
			do: func(t *testing.T) {
				if err := os.Remove(edited); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "new.yaml"), "kind: Service\nmetadata: {name: new\n")
			},
			wantObjects: healthyObjects,
			wantLogs: []wantLog{
				{zapcore.ErrorLevel, "ignore file: it cannot be decoded", "new.yaml", "", "decode document 1 at line 1"},
			},
		},
		{
			name:        "and stays logged once",
			do:          func(t *testing.T) {},
			wantObjects: healthyObjects,
		},
	}

	core, logs := observer.New(zapcore.InfoLevel)
	src := NewSource(dir, zap.New(core), Options{})
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			logs.TakeAll()
			for range 3 { // as many resyncs
				if _, err := src.read(nil, nil, false); err != nil {
					t.Fatal(err)
				}
			}
			if got := describeSnapshot(src.Snapshot()); !slices.Equal(got, step.wantObjects) {
				t.Errorf("objects:\ngot  %q\nwant %q", got, step.wantObjects)
			}
			checkLogs(t, logs.TakeAll(), step.wantLogs)
		})
	}
}

// TestFinding7SlowInPlaceWrite rewrites a file in place (truncate, then
// chunks) while the source runs, and checks all along that the healthy
// Service and the rewritten file's own Services keep their objects.
func TestFinding7SlowInPlaceWrite(t *testing.T) {
	var oldContent, newContent, oldList, newList strings.Builder
	for i := range 3 {
		oldContent.WriteString(serviceWithSlice(fmt.Sprintf("slow-%d", i), 10+i) + "---\n")
		newContent.WriteString(serviceWithSlice(fmt.Sprintf("slow-%d", i), 20+i) + "---\n")
	}
	list := func(b *strings.Builder, n int) {
		fmt.Fprintf(b, `{"apiVersion": "v1", "kind": "List", "items": [`)
		for i := range 3 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(b, `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "slow-%d"}, "spec": {"clusterIP": "10.96.%d.1", "ports": [{"port": 80}]}},`, i, n+i)
			fmt.Fprintf(b, `{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "slow-%d-1", "labels": {"kubernetes.io/service-name": "slow-%d"}}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.%[3]d.1"]}, {"addresses": ["10.245.%[3]d.1"]}, {"addresses": ["10.246.%[3]d.1"]}]}`, i, i, n+i)
		}
		b.WriteString("]}\n")
	}
	list(&oldList, 10)
	list(&newList, 20)

	testCases := []struct {
		name       string
		file       string
		old, new   string
		chunks     []string
		pause      time.Duration
		reopen     bool   // whether each chunk is appended by a new open, as `>>` does
		wantNewSvc string // a clusterIP only the new version has
	}{
		{"YAML rewritten in chunks with short pauses is read once it is quiet", "slow.yaml", oldContent.String(), newContent.String(),
			inChunks(newContent.String(), 64), 10 * time.Millisecond, false, "10.96.0.21"},
		{"a JSON List rewritten with pauses longer than the debounce keeps its last good version", "slow.json", oldList.String(), newList.String(),
			inChunks(newList.String(), 200), 150 * time.Millisecond, false, "10.96.21.1"},
		// Each pause leaves a valid, shorter file: the first documents.
		{"multi-document YAML rewritten one document at a time, with pauses longer than the debounce, withdraws nothing", "slow.yaml", oldContent.String(), newContent.String(),
			inDocuments(newContent.String()), 250 * time.Millisecond, false, "10.96.0.21"},
		{"multi-document YAML rewritten by one append per document, closed between them, withdraws nothing", "slow.yaml", oldContent.String(), newContent.String(),
			inDocuments(newContent.String()), 150 * time.Millisecond, true, "10.96.0.21"},
	}
	want := []string{"EndpointSlice default/healthy-1", "EndpointSlice default/slow-0-1", "EndpointSlice default/slow-1-1", "EndpointSlice default/slow-2-1",
		"Service default/healthy", "Service default/slow-0", "Service default/slow-1", "Service default/slow-2"}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
			writeFile(t, filepath.Join(dir, tc.file), tc.old)
			src := runSource(t, dir)

			written := make(chan error, 1)
			go func() { written <- writeSlowly(filepath.Join(dir, tc.file), tc.chunks, tc.pause, tc.reopen) }()
			deadline := time.Time{}
			for {
				if got := sortedObjects(src); !slices.Equal(got, want) {
					t.Fatalf("objects while the file is written:\ngot  %q\nwant %q", got, want)
				}
				if problem := halfWritten(src.Snapshot()); problem != "" {
					t.Fatalf("a half-written version counts: %s", problem)
				}
				if hasClusterIP(src, tc.wantNewSvc) {
					break
				}
				select {
				case err := <-written:
					if err != nil {
						t.Fatal(err)
					}
					deadline = time.Now().Add(changeDeadline)
				default:
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					t.Fatalf("the new version did not show within %v of the last write", changeDeadline)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
}

// halfWritten says what in snap shows a version of the file cut short: a
// Service without its clusterIP or a slice that lost endpoints.
func halfWritten(snap source.Snapshot) string {
	for _, svc := range snap.Services {
		if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || ip.To4() == nil {
			return fmt.Sprintf("Service %s has clusterIP %q", svc.Name, svc.Spec.ClusterIP)
		}
	}
	for _, slice := range snap.EndpointSlices {
		if len(slice.Endpoints) != 3 {
			return fmt.Sprintf("EndpointSlice %s has %d endpoints", slice.Name, len(slice.Endpoints))
		}
	}
	return ""
}

// writeSlowly rewrites path in place: truncate, then chunks with pauses,
// through one open file or, with reopen, appending each chunk by a new open
// and closing the file for each pause, as a script's `>>` lines do.
func writeSlowly(path string, chunks []string, pause time.Duration, reopen bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	for _, chunk := range chunks {
		if reopen {
			if err := f.Close(); err != nil {
				return err
			}
		}
		time.Sleep(pause)
		if reopen {
			if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
				return err
			}
		}
		if _, err := f.WriteString(chunk); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// inChunks cuts content into pieces of size bytes.
func inChunks(content string, size int) []string {
	var chunks []string
	for len(content) > 0 {
		n := min(size, len(content))
		chunks = append(chunks, content[:n])
		content = content[n:]
	}
	return chunks
}

// inDocuments cuts content after each "---" line: every prefix of the
// chunks is a valid file of fewer documents.
func inDocuments(content string) []string {
	var chunks []string
	for len(content) > 0 {
		n := len(content)
		if i := strings.Index(content, "\n---\n"); i >= 0 {
			n = i + len("\n---\n")
		}
		chunks = append(chunks, content[:n])
		content = content[n:]
	}
	return chunks
}

// runSource runs a Source on dir until the test ends, after its first read.
func runSource(t *testing.T, dir string) *Source {
	t.Helper()
	src := NewSource(dir, zaptest.NewLogger(t), Options{})
	src.resync = time.Hour // only events and the rewatch may cause rereads here
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() {}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for start := time.Now(); !src.HasSynced(); time.Sleep(time.Millisecond) {
		if time.Since(start) > changeDeadline {
			t.Fatal("no first read")
		}
	}
	return src
}

func sortedObjects(src *Source) []string {
	got := describeSnapshot(src.Snapshot())
	slices.Sort(got)
	return got
}

func hasClusterIP(src *Source, ip string) bool {
	return slices.ContainsFunc(src.Snapshot().Services, func(svc *corev1.Service) bool { return svc.Spec.ClusterIP == ip })
}

func TestFinding8DirectoryRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "services")
	writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
	src := runSource(t, dir)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * src.debounce)
	if got := sortedObjects(src); !slices.Equal(got, []string{"EndpointSlice default/healthy-1", "Service default/healthy"}) {
		t.Fatalf("objects while the directory is gone: got %q, want the previous ones", got)
	}

	start := time.Now()
	writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
	writeFile(t, filepath.Join(dir, "new.yaml"), service("new", "10.96.0.2"))
	want := []string{"EndpointSlice default/healthy-1", "Service default/healthy", "Service default/new"}
	for !slices.Equal(sortedObjects(src), want) {
		if time.Since(start) > changeDeadline {
			t.Fatalf("the recreated directory was not read within %v: got %q", changeDeadline, sortedObjects(src))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("recreated directory read after %v", time.Since(start).Round(time.Millisecond))

	// And it is watched again: a later change shows without a resync.
	start = time.Now()
	writeFile(t, filepath.Join(dir, "later.yaml"), service("later", "10.96.0.3"))
	for !slices.Contains(sortedObjects(src), "Service default/later") {
		if time.Since(start) > changeDeadline {
			t.Fatalf("a change in the recreated directory did not show within %v", changeDeadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFinding8OneChangedFileIsDecodedAlone(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("svc-%03d.yaml", i)), serviceWithSlice(fmt.Sprintf("svc-%03d", i), i))
	}
	writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
	// The same object in two files: logged once, not at every read.
	writeFile(t, filepath.Join(dir, "zz-dup.yaml"), service("healthy", "10.96.0.3"))
	core, logs := observer.New(zapcore.InfoLevel)
	src := NewSource(dir, zap.New(core), Options{})

	steps := []struct {
		name        string
		do          func(t *testing.T)
		dirty       map[string]bool
		wantDiffers bool
		wantDecoded int
		wantLogs    []wantLog
	}{
		{
			name:        "the first read decodes every file",
			do:          func(t *testing.T) {},
			wantDiffers: true,
			wantDecoded: n + 2,
			wantLogs:    []wantLog{{zapcore.ErrorLevel, "ignore duplicate object", "zz-dup.yaml", "Service default/healthy", "already defined in healthy.yaml"}},
		},
		{
			name: "a read with no change decodes nothing",
			do:   func(t *testing.T) {},
		},
		{
			name:        "a file changed in place is the only one decoded, found by its signature",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "svc-007.yaml"), serviceWithSlice("svc-007", 500)) },
			wantDiffers: true,
			wantDecoded: 1,
		},
		{
			name:        "a file named by an event is the only one decoded",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "svc-008.yaml"), serviceWithSlice("svc-008", 501)) },
			dirty:       map[string]bool{"svc-008.yaml": true},
			wantDiffers: true,
			wantDecoded: 1,
		},
		{
			name:        "a file rewritten with the same content is read but not decoded",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "svc-009.yaml"), serviceWithSlice("svc-009", 9)) },
			dirty:       map[string]bool{"svc-009.yaml": true},
			wantDecoded: 0,
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			differs, stats, err := src.files.update(step.dirty, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if differs {
				src.assembled = src.files.assemble()
			}
			if differs != step.wantDiffers || stats.decoded != step.wantDecoded {
				t.Errorf("update: differs %v, decoded %d files; want %v, %d", differs, stats.decoded, step.wantDiffers, step.wantDecoded)
			}
			if got := len(src.Snapshot().Services); got != n+1 {
				t.Errorf("%d Services, want %d", got, n+1)
			}
			checkLogs(t, logs.TakeAll(), step.wantLogs)
		})
	}
}
