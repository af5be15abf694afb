package dir

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// changeDeadline is how soon a change to the directory must show in the
// Snapshot.
const changeDeadline = time.Second

// TestDirSourceRun applies the steps in order to one watched directory and
// checks after each that Run saw it (or, for a no-op, that it did not
// report a change).
func TestDirSourceRun(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), service("a", "10.96.0.1"))

	steps := []struct {
		name        string
		do          func(t *testing.T)
		wantChanged bool
		wantObjects []string
	}{
		{
			name:        "a new file is read",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "b.yaml"), service("b", "10.96.0.2")) },
			wantChanged: true,
			wantObjects: []string{"Service default/a", "Service default/b"},
		},
		{
			name: "a file changed in place is reread",
			do: func(t *testing.T) {
				writeFile(t, filepath.Join(dir, "b.yaml"), service("b", "10.96.0.2")+"---\n"+service("b2", "10.96.0.3"))
			},
			wantChanged: true,
			wantObjects: []string{"Service default/a", "Service default/b", "Service default/b2"},
		},
		{
			name: "a file replaced by rename, as editors save, is reread",
			do: func(t *testing.T) {
				tmp := filepath.Join(dir, ".a.yaml.tmp")
				writeFile(t, tmp, service("a-renamed", "10.96.0.1"))
				if err := os.Rename(tmp, filepath.Join(dir, "a.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: true,
			wantObjects: []string{"Service default/a-renamed", "Service default/b", "Service default/b2"},
		},
		{
			name:        "an editor's swap file changes nothing",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, ".b.yaml.swp"), "junk") },
			wantChanged: false,
			wantObjects: []string{"Service default/a-renamed", "Service default/b", "Service default/b2"},
		},
		{
			name:        "rewriting a file with the same content changes nothing",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "a.yaml"), service("a-renamed", "10.96.0.1")) },
			wantChanged: false,
			wantObjects: []string{"Service default/a-renamed", "Service default/b", "Service default/b2"},
		},
		{
			name:        "finding 7: a file broken mid-edit keeps its last good objects, the others stay",
			do:          func(t *testing.T) { writeFile(t, filepath.Join(dir, "b.yaml"), "kind: Service\nmetadata: {name: b\n") },
			wantChanged: false,
			wantObjects: []string{"Service default/a-renamed", "Service default/b", "Service default/b2"},
		},
		{
			name: "deleting a file removes its objects",
			do: func(t *testing.T) {
				if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: true,
			wantObjects: []string{"Service default/b", "Service default/b2"},
		},
	}

	src := NewSource(dir, zaptest.NewLogger(t), Options{})
	src.resync = time.Hour // only events may cause the rereads checked here
	if src.HasSynced() {
		t.Fatal("HasSynced before Run")
	}

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	select {
	case <-changed:
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(changeDeadline):
		t.Fatal("no changed() after the first read")
	}
	if !src.HasSynced() {
		t.Fatal("not HasSynced after the first changed()")
	}
	if got, want := describeSnapshot(src.Snapshot()), []string{"Service default/a"}; !slices.Equal(got, want) {
		t.Fatalf("first read: got %q, want %q", got, want)
	}

	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			start := time.Now()
			if step.wantChanged {
				select {
				case <-changed:
					t.Logf("changed() after %v", time.Since(start).Round(time.Millisecond))
				case <-time.After(changeDeadline):
					t.Fatalf("no changed() within %v", changeDeadline)
				}
			} else {
				// Give Run several debounce periods to misreport.
				select {
				case <-changed:
					t.Fatal("changed() for a change that changes no object")
				case <-time.After(5 * src.debounce):
				}
			}
			if got := describeSnapshot(src.Snapshot()); !slices.Equal(got, step.wantObjects) {
				t.Errorf("objects:\ngot  %q\nwant %q", got, step.wantObjects)
			}
		})
	}
}

func TestDirSourceRunEnds(t *testing.T) {
	testCases := []struct {
		name    string
		dir     func(t *testing.T) string
		cancel  bool
		wantErr bool
	}{
		{
			name:    "a missing directory is an error",
			dir:     func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") },
			wantErr: true,
		},
		{
			name:   "cancelling the context ends Run without error",
			dir:    func(t *testing.T) string { return t.TempDir() },
			cancel: true,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			src := NewSource(tc.dir(t), zaptest.NewLogger(t), Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, func() {}) }()
			if tc.cancel {
				time.Sleep(50 * time.Millisecond)
				cancel()
			}
			select {
			case err := <-done:
				if (err != nil) != tc.wantErr {
					t.Errorf("Run() = %v, want error: %v", err, tc.wantErr)
				}
			case <-time.After(changeDeadline):
				t.Fatal("Run did not end")
			}
		})
	}
}

// TestPrefetchReadsBeforeRun checks that Prefetch reads the directory
// without Run (the agent loads the datapath meanwhile), that Run takes that
// read instead of reading again, and that a file written between the two
// is not missed: the watch starts before the first read.
func TestPrefetchReadsBeforeRun(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), service("a", "10.96.0.1"))
	src := NewSource(dir, zaptest.NewLogger(t), Options{})
	src.resync = time.Hour // only the event may bring b in
	src.Prefetch()
	src.Prefetch() // a second call starts nothing more

	deadline := time.Now().Add(changeDeadline)
	for !slices.Equal(describeSnapshot(src.Snapshot()), []string{"Service default/a"}) {
		if time.Now().After(deadline) {
			t.Fatalf("Prefetch did not read the directory: %q", describeSnapshot(src.Snapshot()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if src.HasSynced() {
		t.Fatal("HasSynced before Run: the agent must not prune on a prefetch")
	}
	writeFile(t, filepath.Join(dir, "b.yaml"), service("b", "10.96.0.2"))

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() { changed <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	want := []string{"Service default/a", "Service default/b"}
	deadline = time.Now().Add(changeDeadline)
	for !slices.Equal(describeSnapshot(src.Snapshot()), want) {
		select {
		case <-changed:
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("the file written between Prefetch and Run was missed: %q", describeSnapshot(src.Snapshot()))
		}
	}
	if !src.HasSynced() {
		t.Fatal("not HasSynced after Run's first changed()")
	}
}
