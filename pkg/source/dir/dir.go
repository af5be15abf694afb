package dir

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/source"
)

const (
	// defaultDebounce lets an editor finish a save (write a temporary file,
	// rename it over the old one) before the directory is read once.
	defaultDebounce = 100 * time.Millisecond
	// defaultResync rereads the directory even without events, in case the
	// watch missed some (an overflowing event queue, a network filesystem).
	defaultResync = 30 * time.Second
)

// Source is a source.Source reading a directory of YAML and JSON files;
// the package documentation says what counts.
type Source struct {
	dir      string
	log      *zap.Logger
	debounce time.Duration
	resync   time.Duration

	synced atomic.Bool

	mu       sync.Mutex
	snapshot source.Snapshot

	// lastRead fingerprints the files of the last successful read; only Run
	// touches it.
	lastRead [sha256.Size]byte
}

var _ source.Source = (*Source)(nil)

// NewSource returns a source of the objects in dir. Nothing is read until
// Run.
func NewSource(dir string, log *zap.Logger) *Source {
	dir = filepath.Clean(dir) // as fsnotify names the directory in its events
	return &Source{
		dir:      dir,
		log:      log.With(zap.String(logfield.Dir, dir)),
		debounce: defaultDebounce,
		resync:   defaultResync,
	}
}

// HasSynced reports whether Run has read the whole directory once.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// Snapshot returns the objects of the last read; the caller must not modify
// them. Before the first read it is empty.
func (s *Source) Snapshot() source.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot
}

// Run reads the directory, calls changed, and then rereads it after every
// change in it (and every resync period), calling changed whenever the files
// differ from the previous read. It returns nil when ctx is done, or an
// error if the directory cannot be watched or first read. Call it once.
//
// A later read that fails as a whole (the directory vanished or became
// unreadable) is logged and keeps the previous objects: a missing mount must
// not withdraw every Service from the node.
func (s *Source) Run(ctx context.Context, changed func()) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch directory %s: %w", s.dir, err)
	}
	defer watcher.Close()
	// Watch the directory, not the files: editors replace a file by
	// renaming a new one over it, which ends a watch on the file itself.
	// Watching before the first read means no change slips in between.
	if err := watcher.Add(s.dir); err != nil {
		return fmt.Errorf("watch directory %s: %w", s.dir, err)
	}
	watching := true

	if _, err := s.read(); err != nil {
		return fmt.Errorf("read directory %s: %w", s.dir, err)
	}
	s.synced.Store(true)
	changed()

	reread := func() {
		differs, err := s.read()
		if err != nil {
			s.log.Error("keep the previous objects: the directory cannot be read", zap.Error(err))
			return
		}
		if differs {
			changed()
		}
	}

	// The debounce timer starts at the first event and is not pushed back by
	// later ones, so a file written to continuously still gets read within
	// one debounce period.
	debounce := time.NewTimer(s.debounce)
	debounce.Stop()
	pending := false
	resync := time.NewTicker(s.resync)
	defer resync.Stop()

	for {
		select {
		case <-ctx.Done():
			debounce.Stop()
			return nil

		case event, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("watch directory %s: event channel closed", s.dir)
			}
			if event.Name == s.dir && event.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the kernel dropped the watch with the directory
			}
			if !pending {
				pending = true
				debounce.Reset(s.debounce)
			}

		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("watch directory %s: error channel closed", s.dir)
			}
			// Most likely the event queue overflowed: events were lost, so
			// read the whole directory again.
			s.log.Warn("reread the directory: watching it failed", zap.Error(err))
			if !pending {
				pending = true
				debounce.Reset(s.debounce)
			}

		case <-debounce.C:
			pending = false
			reread()

		case <-resync.C:
			if !watching {
				if err := watcher.Add(s.dir); err == nil {
					watching = true
				} else if !errors.Is(err, fsnotify.ErrClosed) {
					s.log.Debug("directory still cannot be watched", zap.Error(err))
				}
			}
			reread()
		}
	}
}

// read reads the directory and, when its files differ from the last read,
// decodes them and replaces the snapshot. It reports whether they differed.
func (s *Source) read() (differs bool, err error) {
	files, err := readFiles(s.dir, s.log)
	if err != nil {
		return false, err
	}
	sum := digest(files)
	if s.HasSynced() && sum == s.lastRead {
		return false, nil
	}
	snap := snapshotOf(files, s.log)
	s.mu.Lock()
	s.snapshot = snap
	s.mu.Unlock()
	s.lastRead = sum
	s.log.Info("read directory", zap.Int(logfield.Files, len(files)), zap.Int(logfield.Services, len(snap.Services)),
		zap.Int(logfield.EndpointSlices, len(snap.EndpointSlices)))
	return true, nil
}
