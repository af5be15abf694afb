package dir

import (
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
)

// TestStreamBuildsWhatSnapshotBuilds builds each directory twice, from
// Stream (one Service decoded at a time, as the agent's full sync reads
// this source) and from Snapshot, and wants the same state, problems and
// unused slices from both.
func TestStreamBuildsWhatSnapshotBuilds(t *testing.T) {
	orphan := "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n" +
		"metadata: {name: gone-1, labels: {kubernetes.io/service-name: gone}}\naddressType: IPv4\n" +
		"endpoints: [{addresses: [10.244.9.9]}]\n"
	unlabelled := "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n" +
		"metadata: {name: nobody-1}\naddressType: IPv4\nendpoints: [{addresses: [10.244.9.8]}]\n"
	secondSlice := "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n" +
		"metadata: {name: web-2, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n" +
		"ports: [{name: http, port: 8080, protocol: TCP}]\nendpoints: [{addresses: [10.244.7.7]}]\n"
	endpoints := "apiVersion: v1\nkind: Service\nmetadata: {name: legacy}\nspec:\n  clusterIP: 10.96.5.5\n" +
		"  ports: [{port: 53, protocol: UDP}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy}\n" +
		"subsets: [{addresses: [{ip: 10.244.5.5}], ports: [{port: 53, protocol: UDP}]}]\n"
	conflicting := "apiVersion: v1\nkind: Service\nmetadata: {name: newcomer}\nspec:\n  clusterIP: 10.96.0.2\n" +
		"  ports: [{name: http, port: 80, targetPort: 8080}]\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"one Service per file", map[string]string{"a.yaml": serviceWithSlice("a", 1), "b.yaml": serviceWithSlice("b", 2)}},
		{"many Services in one file", map[string]string{"all.yaml": serviceWithSlice("a", 1) + "---\n" + serviceWithSlice("b", 2) + "---\n" + serviceWithSlice("c", 3)}},
		{"a Service's second slice in another file", map[string]string{"web.yaml": serviceWithSlice("web", 4), "web-extra.yaml": secondSlice}},
		{"a slice whose Service does not exist and one naming none", map[string]string{"a.yaml": serviceWithSlice("a", 1), "orphans.yaml": orphan + "---\n" + unlabelled}},
		{"a Service defined in two files (the first file wins)", map[string]string{"a.yaml": serviceWithSlice("a", 1), "b.yaml": serviceWithSlice("a", 9)}},
		{"Endpoints mirrored into slices", map[string]string{"legacy.yaml": endpoints}},
		{"two Services claiming one frontend", map[string]string{"a.yaml": serviceWithSlice("a", 1), "z.yaml": conflicting}},
		{"an empty directory", map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			src := NewSource(dir, zap.NewNop(), Options{})
			if _, err := src.read(nil, nil, true); err != nil {
				t.Fatal(err)
			}
			node := desired.NodeInfo{Name: "node-a"}
			fromSnapshot := desired.NewBuilder(node)
			snap := src.Snapshot()
			fromSnapshot.Reset(node, snap.Services, snap.EndpointSlices)
			fromStream := desired.NewBuilder(node)
			streamNode, objects := src.Stream()
			if streamNode != nil {
				t.Errorf("Stream gave node %+v; the directory source has none", *streamNode)
			}
			fromStream.ResetEach(node, objects)
			if len(tc.files) > 0 && len(fromSnapshot.State().Frontends) == 0 {
				t.Fatal("the directory built no frontend: the case compares nothing")
			}

			if !reflect.DeepEqual(fromStream.State(), fromSnapshot.State()) {
				t.Errorf("state from Stream:\n%s\nfrom Snapshot:\n%s", frontendsOf(fromStream), frontendsOf(fromSnapshot))
			}
			if got, want := fmt.Sprint(fromStream.Errors()), fmt.Sprint(fromSnapshot.Errors()); got != want {
				t.Errorf("problems from Stream %s, from Snapshot %s", got, want)
			}
			if got, want := fromStream.UnusedSlices(), fromSnapshot.UnusedSlices(); !reflect.DeepEqual(got, want) {
				t.Errorf("unused slices from Stream %+v, from Snapshot %+v", got, want)
			}
		})
	}
}

func frontendsOf(b *desired.Builder) string {
	out := ""
	for fe, e := range b.State().Frontends {
		out += fmt.Sprintf("  %v: %+v\n", fe, *e)
	}
	return out
}

// TestStreamAcrossBatches checks the decoding ahead of the caller: more
// Services than several batches come in Snapshot's order, and a caller
// that stops early leaves no goroutine behind.
func TestStreamAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	services := 2*streamBatch + 7
	var all strings.Builder
	for i := range services {
		all.WriteString(serviceWithSlice(fmt.Sprintf("svc-%04d", i), i) + "---\n")
	}
	writeFile(t, filepath.Join(dir, "all.yaml"), all.String())
	src := NewSource(dir, zap.NewNop(), Options{})
	if _, err := src.read(nil, nil, true); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, svc := range src.Snapshot().Services {
		want = append(want, svc.Name)
	}
	for _, tc := range []struct {
		name      string
		stopAfter int // 0: take every step
	}{
		{"every Service", 0},
		{"stop inside the first batch", 3},
		{"stop at a batch's end", streamBatch},
		{"stop in the last batch", 2*streamBatch + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			_, objects := src.Stream()
			var got []string
			for svc, svcSlices := range objects {
				got = append(got, svc.Name)
				if len(svcSlices) != 1 || svcSlices[0].Name != svc.Name+"-1" {
					t.Fatalf("Service %s came with slices %v", svc.Name, svcSlices)
				}
				if len(got) == tc.stopAfter {
					break
				}
			}
			wantNow := want
			if tc.stopAfter > 0 {
				wantNow = want[:tc.stopAfter]
			}
			if !slices.Equal(got, wantNow) {
				t.Fatalf("Stream gave %d Services, want %d in Snapshot's order", len(got), len(wantNow))
			}
			deadline := time.Now().Add(time.Second)
			for runtime.NumGoroutine() > before {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines after the stream, %d before", runtime.NumGoroutine(), before)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
