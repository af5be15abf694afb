package dir

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/logfield"
)

// fileState is what the source knows of one file across reads of the
// directory, so that a change to one file reads and decodes that file only.
type fileState struct {
	sig     fileSig
	readAt  int64   // Unix nanoseconds, as sig's times
	sum     textSum // of the content last read, good or not
	handled bool    // whether sum's content was decoded (or refused)
	failed  bool    // whether sum's content did not decode
	// objs is the last version of the file that decoded; it stays while a
	// later version cannot be read or decoded. nil until one decodes.
	objs *storedFile
	docs docIndex // of objs
	// problem is the problem last logged for the file, so that each is
	// logged once and not at every resync; "" when there is none.
	problem string
	// writingSince is when the file was first found open for writing by
	// another process, zero while it is not.
	writingSince time.Time
}

// files keeps the state of every file of the directory; only Run (or a
// test) uses it, from one goroutine.
type files struct {
	dir     string
	maxSize int64
	log     *zap.Logger
	state   map[string]*fileState
	order   []string        // the names of the last read, in lexical order
	dups    map[string]bool // duplicate definitions logged by the last assembly
	// waitForWriters holds back a file being written (see hold); the
	// first read of the directory reads every file as it is.
	waitForWriters bool
	// held are the files the last update held back: they are read again
	// soon, whether or not an event names them.
	held    map[string]bool
	counted counts
	// changed is told how a file's objects changed: from its previous good
	// version (nil: none) to the new one (nil: the file is gone).
	changed func(previous, current *storedFile)
}

func newFiles(dir string, maxSize int64, log *zap.Logger, changed func(previous, current *storedFile)) *files {
	return &files{dir: dir, maxSize: maxSize, log: log, state: map[string]*fileState{}, dups: map[string]bool{}, held: map[string]bool{}, changed: changed}
}

// readStats says what one read did, for its log line.
type readStats struct {
	files, read, decoded int
	decodedBytes         int64
}

// job is a file whose content must be read (and maybe decoded).
type job struct {
	c            candidate
	st           *fileState
	checkWriters bool // whether a file open for writing is left unread
	// filled in by run:
	data    []byte
	sig     fileSig
	sum     textSum
	err     error
	decoded bool // whether err is the decoder's
	emptied bool // see keepsWhileEmpty
	objs    *storedFile
	docs    docIndex
	notes   []note // what decoding had to say, logged in file order
}

const (
	// maxWriting bounds how long a file open for writing is waited for:
	// a process may hold it open for good, and its changes must apply.
	maxWriting = 10 * time.Second
	// withdrawQuiet is how long a file must have been left unmodified for
	// a version that withdraws objects to count: a file appended to by
	// several writes, closed between them, is not open for writing in the
	// pauses, and each pause can leave its first documents only.
	withdrawQuiet = time.Second
)

// update reads the directory and reports whether the objects differ from
// the previous update. Files named in dirty, or all files when all is set,
// are read whatever their signature says; files named in settling are not
// read at all (they keep what they had). An error means the directory
// itself could not be read; nothing was changed then.
func (r *files) update(dirty, settling map[string]bool, all bool) (bool, readStats, error) {
	root, err := filepath.EvalSymlinks(r.dir)
	if err != nil {
		return false, readStats{}, err
	}
	d, err := os.Open(r.dir)
	if err != nil {
		return false, readStats{}, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return false, readStats{}, err
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) }) // as os.ReadDir
	dirFD := int(d.Fd())
	var jobs []*job
	order := make([]string, 0, len(entries))
	now := time.Now()
	held := map[string]bool{}
	for _, entry := range entries {
		name := entry.Name()
		if !holdsObjects(name) {
			continue
		}
		if settling[name] {
			if r.state[name] != nil {
				order = append(order, name)
			}
			held[name] = r.held[name]
			continue
		}
		c, err := checkEntry(dirFD, root, r.dir, name, r.maxSize)
		if errors.Is(err, errVanished) {
			continue
		}
		st := r.state[name]
		if st == nil {
			st = &fileState{}
			r.state[name] = st
		}
		order = append(order, name)
		switch {
		case err != nil:
			r.refuse(name, st, err, false)
		case all || dirty[name] || r.held[name] || !st.handled || c.sig != st.sig || time.Duration(st.readAt-c.sig.mtime) < racyWindow:
			if c.path == "" {
				c.path = filepath.Join(r.dir, name)
			}
			jobs = append(jobs, &job{c: c, st: st, checkWriters: r.checkWriters(name, st, now)})
		}
	}
	stats := readStats{files: len(order), read: len(jobs)}
	runJobs(jobs, r.maxSize)

	differs := r.forget(order)
	for _, j := range jobs {
		if r.hold(j, now) {
			held[j.c.name] = true
			continue
		}
		j.st.readAt = now.UnixNano()
		if r.apply(j, &stats) {
			differs = true
		}
	}
	r.order = order
	maps.DeleteFunc(held, func(_ string, h bool) bool { return !h })
	r.held = held
	return differs, stats, nil
}

// checkWriters says whether a file is read only when no process has it
// open for writing: not at the first read, and not once it has been open
// for longer than maxWriting (it is read as it is then, and waited for
// again at its next change).
func (r *files) checkWriters(name string, st *fileState, now time.Time) bool {
	if !r.waitForWriters {
		return false
	}
	if !st.writingSince.IsZero() && now.Sub(st.writingSince) >= maxWriting {
		r.log.Warn("read a file that has been open for writing too long to wait for", zap.String(logfield.File, name),
			zap.Duration(logfield.Took, now.Sub(st.writingSince)))
		st.writingSince = time.Time{}
		return false
	}
	return true
}

// hold says whether a job's file is left as it was, to be read again
// soon, because it is being written: another process has it open for
// writing, or it was written in place less than withdrawQuiet ago and its
// new version withdraws objects of the last good one. Either way what it holds
// may be its first documents only, each valid, and taking that version
// would withdraw the Services of the rest until the write ends.
func (r *files) hold(j *job, now time.Time) bool {
	if errors.Is(j.err, errBeingWritten) {
		if j.st.writingSince.IsZero() {
			j.st.writingSince = now
			r.log.Debug("wait for the file to be written: another process has it open for writing", zap.String(logfield.File, j.c.name))
		}
		return true
	}
	j.st.writingSince = time.Time{}
	// A file replaced by a rename (a new inode) was written whole.
	inPlace := j.sig.dev == j.st.sig.dev && j.sig.inode == j.st.sig.inode
	age := now.Sub(j.sig.modTime()) // a file dated in the future is not waited for
	return r.waitForWriters && j.err == nil && j.objs != nil && inPlace && age >= 0 && age < withdrawQuiet && withdraws(j.st.objs, j.objs)
}

// withdraws says whether current lacks an object that previous defines.
func withdraws(previous, current *storedFile) bool {
	if previous == nil {
		return false
	}
	defined := map[objectKey]bool{}
	for _, key := range current.keys() {
		defined[key] = true
	}
	for _, key := range previous.keys() {
		if !defined[key] {
			return true
		}
	}
	return false
}

// forget drops the state of files no longer in the directory and reports
// whether any of them had objects.
func (r *files) forget(order []string) bool {
	present := make(map[string]bool, len(order))
	for _, name := range order {
		present[name] = true
	}
	differs := false
	for name, st := range r.state {
		if !present[name] {
			if st.objs != nil {
				differs = true
				r.changed(st.objs, nil)
			}
			delete(r.state, name)
		}
	}
	return differs || len(order) != len(r.order)
}

// runJobs reads and decodes files on every CPU: decoding is almost all the
// work of a cold start.
func runJobs(jobs []*job, maxSize int64) {
	next := make(chan *job)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				j.run(maxSize)
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}

func (j *job) run(maxSize int64) {
	j.data, j.sig, j.sum, j.err = readCandidate(j.c, maxSize, j.checkWriters)
	defer func() { j.data = nil }() // only the objects stay in memory, not every file read at once
	if j.err != nil || (j.st.handled && j.sum == j.st.sum) {
		return
	}
	if j.emptied = j.keepsWhileEmpty(); j.emptied {
		return
	}
	j.objs, j.notes, j.docs, j.err = decodeStored(j.c.name, j.data, j.st.objs, j.st.docs, indexedDocuments)
	j.decoded = true
}

// keepsWhileEmpty says whether the file is empty while its last good
// version has objects: most likely it is being rewritten in place (a
// truncate, then writes), and withdrawing its Services for that moment
// would fail their clients. Removing the file withdraws them.
func (j *job) keepsWhileEmpty() bool {
	return len(bytes.TrimSpace(j.data)) == 0 && j.st.objs != nil && !j.st.objs.isEmpty()
}

// apply records what a job found and reports whether the file's objects
// changed.
func (r *files) apply(j *job, stats *readStats) bool {
	st, name := j.st, j.c.name
	if j.err != nil && !j.decoded {
		r.refuse(name, st, j.err, false)
		return false
	}
	unchanged := st.handled && j.sum == st.sum
	st.sig, st.sum, st.handled = j.sig, j.sum, true
	switch {
	case unchanged:
		if st.problem != "" && !st.failed { // a refusal (too large, say) undone
			r.log.Info("file is read again", zap.String(logfield.File, name))
			st.problem = ""
		}
		return false
	case j.emptied:
		st.failed = true
		r.refuse(name, st, errEmpty, true)
		return false
	case j.err != nil:
		st.failed = true
		r.refuse(name, st, j.err, true)
		return false
	}
	stats.decoded++
	stats.decodedBytes += j.sig.size
	for _, n := range j.notes {
		if ce := r.log.Check(n.level, n.message); ce != nil {
			ce.Write(n.fields...)
		}
	}
	if st.problem != "" {
		r.log.Info("file is read again", zap.String(logfield.File, name))
		st.problem = ""
	}
	r.changed(st.objs, j.objs)
	st.objs, st.docs, st.failed = j.objs, j.docs, false
	return true
}

var errEmpty = errors.New("the file is empty; remove it to withdraw its objects")

// refuse logs, once until it changes, why a file is not read now; its last
// good version stays. decoding says whether it was read but did not decode.
func (r *files) refuse(name string, st *fileState, err error, decoding bool) {
	var message string
	switch {
	case errors.Is(err, errEmpty):
		message = "keep the last good version of the file: this one is empty"
	case decoding && st.objs != nil:
		message = "keep the last good version of the file: this one cannot be decoded"
	case decoding:
		message = "ignore file: it cannot be decoded"
	case st.objs != nil:
		message = "keep the last good version of the file: this one cannot be read"
	case errors.Is(err, errRefused):
		message = "refuse file"
	default:
		message = "skip file: it cannot be read"
	}
	if key := message + "\x00" + err.Error(); key != st.problem {
		st.problem = key
		fields := []zap.Field{zap.String(logfield.File, name), zap.Error(err)}
		var docErr *documentError
		if errors.As(err, &docErr) && docErr.object != "" {
			fields = append(fields, zap.String(logfield.Object, docErr.object))
		}
		r.log.Error(message, fields...)
	}
}

// assemble puts the objects of every file together, in lexical file
// order. When two files define the same object, the first wins and the
// other is logged, once while it lasts.
func (r *files) assemble() *assembly {
	a := &assembly{services: make([]*storedObject, 0, r.counted.services), slices: make([]*storedSlice, 0, r.counted.slices)}
	definedIn := make(map[objectKey]string, r.counted.services+r.counted.slices)
	dups := map[string]bool{}
	keep := func(file string, key objectKey) bool {
		first, ok := definedIn[key]
		if !ok {
			definedIn[key] = file
			return true
		}
		id := file + "\x00" + key.String()
		if dups[id] = true; !r.dups[id] {
			r.log.Error("ignore duplicate object", zap.String(logfield.File, file), zap.String(logfield.Object, key.String()),
				zap.Error(fmt.Errorf("read %s: already defined in %s", key, first)))
		}
		return false
	}
	for _, name := range r.order {
		objs := r.state[name].objs
		if objs == nil {
			continue
		}
		for i := range objs.services {
			if svc := &objs.services[i]; keep(name, objectKey{"Service", svc.namespace, svc.name}) {
				a.services = append(a.services, svc)
			}
		}
		for i := range objs.slices {
			if slice := &objs.slices[i]; keep(name, objectKey{"EndpointSlice", slice.namespace, slice.name}) {
				a.slices = append(a.slices, slice)
			}
		}
		for i := range objs.endpoints {
			if ep := &objs.endpoints[i]; keep(name, objectKey{"Endpoints", ep.namespace, ep.name}) {
				for j := range ep.slices {
					a.slices = append(a.slices, &ep.slices[j])
				}
			}
		}
	}
	r.dups = dups
	r.counted = counts{len(a.services), len(a.slices)}
	a.index = indexOf(a)
	return a
}

// counts are how many objects the last assembly held, to size the next.
type counts struct{ services, slices int }
