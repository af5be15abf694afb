package dir

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/socklb/socklb/pkg/desired"
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
	// defaultRewatch is how often a directory that vanished is looked for:
	// when it comes back it is watched and read again within that time.
	defaultRewatch = 250 * time.Millisecond
	// maxSettle bounds how long a file written to without a pause waits to
	// be read: a change applies within it even then.
	maxSettle = 700 * time.Millisecond
	// DefaultMaxFileSize is the largest file read unless Options says
	// otherwise: far more than any hand-written file, and a bound on the
	// memory one mistaken copy (a log, a dump) can take.
	DefaultMaxFileSize = 16 << 20
	// releaseAfter is how many bytes a read decodes before the memory its
	// garbage took is given back to the system at once.
	releaseAfter = 8 << 20
)

// Options tunes a Source; the zero value gives the defaults.
type Options struct {
	// MaxFileSize is the largest file, in bytes, that is read; a larger one
	// is refused with a log line. 0 means DefaultMaxFileSize.
	MaxFileSize int64
}

// Source is a source.Source reading a directory of YAML and JSON files;
// the package documentation says what counts.
type Source struct {
	dir      string
	log      *zap.Logger
	debounce time.Duration
	resync   time.Duration
	rewatch  time.Duration

	synced atomic.Bool

	mu        sync.Mutex
	assembled *assembly

	// tracker records which Services changed between syncs.
	tracker *source.ChangeTracker
	// fileChanges wait for the new snapshot to be in place before the
	// tracker hears of them: a sync taking a change must find it in Objects.
	fileChanges []fileChange

	// files is what the last reads found; only Run (and the first read it
	// takes from Prefetch) touches it.
	files *files

	prefetch sync.Once
	first    chan firstRead // the first read's result, once started
}

// firstRead is the directory watched and read for the first time.
type firstRead struct {
	watcher *fsnotify.Watcher
	err     error
}

var _ source.Source = (*Source)(nil)

// NewSource returns a source of the objects in dir. Nothing is read until
// Run or Prefetch.
func NewSource(dir string, log *zap.Logger, opts Options) *Source {
	dir = filepath.Clean(dir) // as fsnotify names the directory in its events
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	log = log.With(zap.String(logfield.Dir, dir))
	s := &Source{
		dir:       dir,
		log:       log,
		debounce:  defaultDebounce,
		resync:    defaultResync,
		rewatch:   defaultRewatch,
		assembled: &assembly{index: objectIndex{}},
		tracker:   source.NewChangeTracker(time.Now),
	}
	s.files = newFiles(dir, opts.MaxFileSize, log, func(previous, current *storedFile) {
		s.fileChanges = append(s.fileChanges, fileChange{previous, current})
	})
	return s
}

// HasSynced reports whether Run has read the whole directory once.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// Snapshot returns the objects of the last read, decoded anew for the
// caller (a full sync), which may keep them. Before the first read it is
// empty.
func (s *Source) Snapshot() source.Snapshot {
	s.mu.Lock()
	a := s.assembled
	s.mu.Unlock()
	return a.snapshot()
}

// Stream returns the objects of the last read as Snapshot does, decoded
// one Service at a time as the caller goes through them
// (source.Streaming). The directory source has no Node.
func (s *Source) Stream() (*desired.NodeInfo, iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice]) {
	s.mu.Lock()
	a := s.assembled
	s.mu.Unlock()
	return nil, a.stream()
}

// Run reads the directory (or takes the read Prefetch started), calls
// changed, and then rereads it after every change in it (and every resync
// period), calling changed whenever the objects differ from the previous
// read. It returns nil when ctx is done, or an error if the directory
// cannot be watched or first read. Call it once.
//
// A later read that fails as a whole (the directory vanished or became
// unreadable) is logged and keeps the previous objects: a missing mount must
// not withdraw every Service from the node. A directory that comes back is
// watched and read again within the rewatch period.
func (s *Source) Run(ctx context.Context, changed func()) error {
	s.Prefetch()
	var first firstRead
	select {
	case first = <-s.first:
	case <-ctx.Done():
		go func() { // the read ends on its own; its watcher is closed then
			if first := <-s.first; first.watcher != nil {
				first.watcher.Close()
			}
		}()
		return nil
	}
	if first.watcher != nil {
		defer first.watcher.Close()
	}
	if first.err != nil {
		return first.err
	}
	s.files.waitForWriters = true
	s.synced.Store(true)
	changed()
	return s.watch(ctx, first.watcher, changed)
}

// Prefetch starts watching and reading the directory for the first time
// (source.Prefetching); Run waits for that read.
func (s *Source) Prefetch() {
	s.prefetch.Do(func() {
		s.first = make(chan firstRead, 1)
		go func() { s.first <- s.watchAndRead() }()
	})
}

// watchAndRead watches the directory, then reads all of it.
func (s *Source) watchAndRead() firstRead {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return firstRead{err: fmt.Errorf("watch directory %s: %w", s.dir, err)}
	}
	// Watch the directory, not the files: editors replace a file by
	// renaming a new one over it, which ends a watch on the file itself.
	// Watching before the first read means no change slips in between.
	if err := watcher.Add(s.dir); err != nil {
		return firstRead{watcher, fmt.Errorf("watch directory %s: %w", s.dir, err)}
	}
	if _, err := s.read(nil, nil, true); err != nil {
		return firstRead{watcher, fmt.Errorf("read directory %s: %w", s.dir, err)}
	}
	return firstRead{watcher: watcher}
}

// watchLoop is the state of Run after the first read.
type watchLoop struct {
	watching bool // false while the directory is gone
	all      bool // whether to read every file: events were lost
	pending  bool // whether the debounce timer runs
	// firstEvent and lastEvent are, for each file named by events since it
	// was last read, when the first and the last of them came.
	firstEvent, lastEvent map[string]time.Time
}

// takeDirty returns the files to read now and those still being written
// (an event less than settle ago, for less than maxSettle): a file written
// in place in several steps is read once it is quiet, not half-written.
// wait is how soon the first of those settling is quiet.
func (loop *watchLoop) takeDirty(now time.Time, settle, maxSettle time.Duration) (dirty, settling map[string]bool, wait time.Duration) {
	dirty, settling = map[string]bool{}, map[string]bool{}
	for name, last := range loop.lastEvent {
		if quiet := now.Sub(last); quiet < settle && now.Sub(loop.firstEvent[name]) < maxSettle {
			settling[name] = true
			if len(settling) == 1 || settle-quiet < wait {
				wait = settle - quiet
			}
			continue
		}
		dirty[name] = true
		delete(loop.lastEvent, name)
		delete(loop.firstEvent, name)
	}
	return dirty, settling, wait
}

func (loop *watchLoop) noteFile(name string, now time.Time) {
	if _, ok := loop.firstEvent[name]; !ok {
		loop.firstEvent[name] = now
	}
	loop.lastEvent[name] = now
}

// watch rereads the directory on events, on resyncs and when it comes back.
func (s *Source) watch(ctx context.Context, watcher *fsnotify.Watcher, changed func()) error {
	loop := watchLoop{watching: true, firstEvent: map[string]time.Time{}, lastEvent: map[string]time.Time{}}
	// The debounce timer starts at the first event and is not pushed back by
	// later ones; only a file still being written waits (see takeDirty).
	debounce := time.NewTimer(s.debounce)
	debounce.Stop()
	defer debounce.Stop()
	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	rewatch := time.NewTicker(s.rewatch)
	defer rewatch.Stop()
	schedule := func(after time.Duration) {
		if !loop.pending {
			loop.pending = true
			debounce.Reset(after)
		}
	}
	reread := func() {
		dirty, settling, wait := loop.takeDirty(time.Now(), s.debounce, maxSettle)
		if len(settling) > 0 {
			schedule(wait)
		}
		all := loop.all
		loop.all = false
		differs, err := s.read(dirty, settling, all)
		if err != nil {
			s.log.Error("keep the previous objects: the directory cannot be read", zap.Error(err))
			return
		}
		if len(s.files.held) > 0 { // being written: look again soon
			schedule(s.debounce)
		}
		if differs {
			changed()
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case event, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("watch directory %s: event channel closed", s.dir)
			}
			s.noteEvent(watcher, &loop, event)
			schedule(s.debounce)
		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("watch directory %s: error channel closed", s.dir)
			}
			// Most likely the event queue overflowed: events were lost, so
			// read every file again.
			s.log.Warn("reread the directory: watching it failed", zap.Error(err))
			loop.all = true
			schedule(s.debounce)
		case <-debounce.C:
			loop.pending = false
			reread()
		case <-rewatch.C:
			if !loop.watching && s.addWatch(watcher) {
				loop.watching, loop.all = true, true
				reread()
			}
		case <-resync.C:
			if loop.watching { // else the rewatch reads it when it is back
				reread()
			}
		}
	}
}

// noteEvent records which file an event is about, and notices the
// directory itself going away (the kernel drops the watch with it).
func (s *Source) noteEvent(watcher *fsnotify.Watcher, loop *watchLoop, event fsnotify.Event) {
	if event.Name != s.dir {
		loop.noteFile(filepath.Base(event.Name), time.Now())
		return
	}
	if event.Has(fsnotify.Remove | fsnotify.Rename) {
		// A renamed directory is still watched under its new name: drop
		// that watch, the path is what counts.
		_ = watcher.Remove(s.dir)
		loop.watching = false
		s.log.Warn("directory is gone: keep the previous objects and watch for it to come back")
	}
}

// addWatch watches the directory again, reporting whether it could.
func (s *Source) addWatch(watcher *fsnotify.Watcher) bool {
	if err := watcher.Add(s.dir); err != nil {
		if !errors.Is(err, fsnotify.ErrClosed) {
			s.log.Debug("directory still cannot be watched", zap.Error(err))
		}
		return false
	}
	s.log.Info("directory is back: watch and read it again")
	return true
}

// read rereads the directory (the dirty files, those whose signature
// changed, or all of them; none of those settling) and replaces the snapshot when the objects
// differ. It reports whether they did.
func (s *Source) read(dirty, settling map[string]bool, all bool) (differs bool, err error) {
	start := time.Now()
	differs, stats, err := s.files.update(dirty, settling, all)
	if err != nil {
		return false, err
	}
	if !differs && s.HasSynced() {
		return false, nil
	}
	a := s.files.assemble()
	s.mu.Lock()
	s.assembled = a
	s.mu.Unlock()
	if s.HasSynced() { // the first sync is a full one: it needs no changes
		for _, c := range s.fileChanges {
			s.recordFileChange(c.previous, c.current)
		}
	}
	s.fileChanges = nil
	if stats.decodedBytes >= releaseAfter {
		// Decoding makes several times its input in short-lived garbage,
		// which would otherwise stay resident long after a cold start. The
		// collection runs beside the sync that follows, not before it.
		go debug.FreeOSMemory()
	}
	s.log.Info("read directory", zap.Int(logfield.Files, stats.files), zap.Int(logfield.Decoded, stats.decoded),
		zap.Int(logfield.Services, len(a.services)), zap.Int(logfield.EndpointSlices, len(a.slices)),
		zap.Duration(logfield.Took, time.Since(start)))
	return true, nil
}
