package dir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileSig is what stat says of a file: while it stays the same, the file is
// not read again (unless an event names the file, or it was written so
// recently that a second write could share its mtime). Times are Unix
// nanoseconds: a time.Time is three times the size, with a pointer, and
// 30,000 files have one each.
type fileSig struct {
	size         int64
	mtime, ctime int64
	dev, inode   uint64
}

func (s fileSig) modTime() time.Time { return time.Unix(0, s.mtime) }

// racyWindow is how long after its mtime a file's content is not trusted
// to match its signature: filesystems stamp mtimes with a coarse clock, so
// two writes of the same size close together can leave the same stamp.
const racyWindow = time.Second

// errRefused is a file the directory holds but socklb does not read; its
// message says why.
var errRefused = errors.New("refused")

// errVanished is a file removed since the directory was listed: its
// removal is the next event, nothing to log.
var errVanished = errors.New("file vanished")

// candidate is a directory entry that may hold objects, checked.
type candidate struct {
	name string
	path string // what to open: the entry itself ("": dir/name) or its link's target
	sig  fileSig
}

// checkEntry decides whether a directory entry is read and what to open:
// only regular files in the directory (root, with links resolved), and
// links whose targets are such files. A link out of the directory is
// refused: a link to /etc/shadow must not put it in the log. A regular
// file is asked about relative to dirFD, the open directory, into a stat
// buffer of its own: every read of a directory of 30,000 files checks
// each, and os.Lstat allocated some 10 MB doing so.
func checkEntry(dirFD int, root, dir, name string, maxSize int64) (candidate, error) {
	var st unix.Stat_t
	if unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		if st.Size > maxSize {
			return candidate{}, sizeError(st.Size, maxSize)
		}
		return candidate{name: name, sig: sigOfStat(&st)}, nil // path: joined if it is read
	}
	path := filepath.Join(dir, name)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return candidate{}, errVanished
	}
	if err != nil {
		return candidate{}, err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return candidate{}, fmt.Errorf("resolve link: %w", err)
		}
		if !inside(root, target) {
			return candidate{}, fmt.Errorf("%w: the link points out of the directory (to %s); only links within it are followed", errRefused, target)
		}
		path = target
		if info, err = os.Stat(path); err != nil {
			return candidate{}, err
		}
	}
	if !info.Mode().IsRegular() {
		return candidate{}, fmt.Errorf("%w: not a regular file (%s)", errRefused, info.Mode().Type())
	}
	if info.Size() > maxSize {
		return candidate{}, sizeError(info.Size(), maxSize)
	}
	return candidate{name: name, path: path, sig: sigOf(info)}, nil
}

func sizeError(size, maxSize int64) error {
	return fmt.Errorf("%w: %d bytes is more than the limit of %d (--max-file-size)", errRefused, size, maxSize)
}

// inside says whether path, with links resolved, is in root or below it.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

func sigOfStat(st *unix.Stat_t) fileSig {
	return fileSig{size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), dev: st.Dev, inode: st.Ino}
}

func sigOf(info fs.FileInfo) fileSig {
	sig := fileSig{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		sig.ctime = st.Ctim.Nano()
		sig.dev, sig.inode = uint64(st.Dev), st.Ino
	}
	return sig
}

// errBeingWritten is a file that another process holds open for writing:
// most likely it is being written in place, and what it holds now may be
// only its first documents, each valid.
var errBeingWritten = errors.New("the file is open for writing")

// readCandidate reads a checked file, no more than maxSize bytes of it,
// and returns its content, signature and hash. It opens without following
// a link and without blocking, and checks again what it opened: the entry
// may have been replaced since it was checked. With checkWriters, a file
// open for writing is not read (errBeingWritten).
func readCandidate(c candidate, maxSize int64, checkWriters bool) ([]byte, fileSig, textSum, error) {
	var sum textSum
	f, err := os.OpenFile(c.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileSig{}, sum, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fileSig{}, sum, err
	}
	if !info.Mode().IsRegular() {
		return nil, fileSig{}, sum, fmt.Errorf("%w: not a regular file (%s)", errRefused, info.Mode().Type())
	}
	if info.Size() > maxSize {
		return nil, fileSig{}, sum, sizeError(info.Size(), maxSize)
	}
	if checkWriters {
		release, err := leaseForRead(f)
		if err != nil {
			return nil, fileSig{}, sum, err
		}
		defer release()
	}
	data := make([]byte, 0, info.Size()+1)
	buf := data[:cap(data)]
	n, err := io.ReadFull(io.LimitReader(f, maxSize+1), buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fileSig{}, sum, err
	}
	data = buf[:n]
	if n == len(buf) { // it grew while being read: read the rest, up to the limit
		rest, err := io.ReadAll(io.LimitReader(f, maxSize+1-int64(n)))
		if err != nil {
			return nil, fileSig{}, sum, err
		}
		data = append(data, rest...)
	}
	if int64(len(data)) > maxSize {
		return nil, fileSig{}, sum, sizeError(int64(len(data)), maxSize)
	}
	return data, sigOf(info), sumOf(data), nil
}

// leaseForRead takes a read lease on f for the time of the read. The
// kernel grants one only while no process has the file open for writing,
// and while it is held a writer's open (and its O_TRUNC) waits for its
// release: what is read then is a version some writer finished. Where
// leases are not available (a filesystem without them, a file owned by
// another user without CAP_LEASE) nothing is known and the file is read.
func leaseForRead(f *os.File) (release func(), err error) {
	conn, err := f.SyscallConn()
	if err != nil {
		return func() {}, nil
	}
	var leaseErr error
	if err := conn.Control(func(fd uintptr) { _, leaseErr = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_RDLCK) }); err != nil {
		return func() {}, nil
	}
	switch {
	case errors.Is(leaseErr, unix.EAGAIN):
		return nil, errBeingWritten
	case leaseErr != nil:
		return func() {}, nil
	}
	return func() {
		_ = conn.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK) })
	}, nil
}

// holdsObjects says whether a file name is one to read: YAML or JSON, and
// neither hidden nor an editor's temporary or backup file (".x.yaml.swp",
// ".#x.yaml", "#x.yaml#", "x.yaml~" and the like).
func holdsObjects(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasPrefix(name, "~") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}
