package dir

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/source"
)

// TestIncrementalChanges takes one directory through the steps in order and
// checks after each which Services TakeChanges reports and what Objects
// returns for them.
func TestIncrementalChanges(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, healthyFile), serviceWithSlice("healthy", 1))
	writeFile(t, filepath.Join(dir, "web.yaml"), serviceWithSlice("web", 2))
	src := NewSource(dir, zap.NewNop(), Options{})
	web := source.ServiceRef{Namespace: "default", Name: "web"}

	steps := []struct {
		name       string
		do         func(t *testing.T)
		wantRefs   []string
		wantSlices int // Objects(web): how many slices; -1 for no Service
	}{
		{"the first read reports nothing: the first sync is a full one", func(t *testing.T) {}, nil, 1},
		{"a read with no change reports none", func(t *testing.T) {}, nil, 1},
		{
			name:       "a new endpoint in one file reports that file's Service only",
			do:         func(t *testing.T) { writeFile(t, filepath.Join(dir, "web.yaml"), serviceWithSlice("web", 3)) },
			wantRefs:   []string{"default/web"},
			wantSlices: 1,
		},
		{
			name: "a second slice in another file reports the Service it labels",
			do: func(t *testing.T) {
				writeFile(t, filepath.Join(dir, "web-extra.yaml"), "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"+
					"metadata: {name: web-2, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n"+
					"endpoints: [{addresses: [10.244.9.9]}]\n")
			},
			wantRefs:   []string{"default/web"},
			wantSlices: 2,
		},
		{
			name: "removing a file reports its Service gone",
			do: func(t *testing.T) {
				for _, name := range []string{"web.yaml", "web-extra.yaml"} {
					if err := os.Remove(filepath.Join(dir, name)); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantRefs:   []string{"default/web"},
			wantSlices: -1,
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			if _, err := src.read(nil, nil, false); err != nil {
				t.Fatal(err)
			}
			src.synced.Store(true) // as Run does after the first read
			var got []string
			for _, ref := range src.TakeChanges().Services {
				got = append(got, ref.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, step.wantRefs) {
				t.Errorf("changed Services: got %q, want %q", got, step.wantRefs)
			}
			svc, eps := src.Objects(web)
			gotSlices := len(eps)
			if svc == nil {
				gotSlices = -1
			}
			if gotSlices != step.wantSlices {
				t.Errorf("Objects(%s): %d slices (-1: no Service), want %d", web, gotSlices, step.wantSlices)
			}
		})
	}
}
