package dir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
// open for writing is not read (errBeingWritten). It works on the
// descriptor itself: an os.File for each of 30,000 files at a cold start
// cost a poller registration, a cleanup and a FileInfo apiece.
func readCandidate(c candidate, maxSize int64, checkWriters bool) ([]byte, fileSig, textSum, error) {
	var sum textSum
	fd, err := openNoFollow(c.path)
	if err != nil {
		return nil, fileSig{}, sum, &fs.PathError{Op: "open", Path: c.path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fileSig{}, sum, &fs.PathError{Op: "stat", Path: c.path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fileSig{}, sum, fmt.Errorf("%w: not a regular file (%s)", errRefused, fileType(st.Mode))
	}
	if st.Size > maxSize {
		return nil, fileSig{}, sum, sizeError(st.Size, maxSize)
	}
	if checkWriters {
		release, err := leaseForRead(fd)
		if err != nil {
			return nil, fileSig{}, sum, err
		}
		defer release()
	}
	// One byte more than stat says, to see a file that grew since.
	data, err := readUpTo(fd, make([]byte, 0, st.Size+1), maxSize+1)
	if err != nil {
		return nil, fileSig{}, sum, &fs.PathError{Op: "read", Path: c.path, Err: err}
	}
	if int64(len(data)) > maxSize {
		return nil, fileSig{}, sum, sizeError(int64(len(data)), maxSize)
	}
	return data, sigOfStat(&st), sumOf(data), nil
}

// fileType is what os.FileInfo's Mode().Type() says of a stat mode.
func fileType(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

func openNoFollow(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readUpTo appends what fd holds to data until its end or until data
// holds limit bytes, growing data only when the file outgrows it.
func readUpTo(fd int, data []byte, limit int64) ([]byte, error) {
	for int64(len(data)) < limit {
		if len(data) == cap(data) {
			data = slices.Grow(data, int(min(limit-int64(len(data)), int64(cap(data))+512)))
		}
		n, err := unix.Read(fd, data[len(data):min(int64(cap(data)), limit)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, err
		case n == 0:
			return data, nil
		}
		data = data[:len(data)+n]
	}
	return data, nil
}

// leaseForRead takes a read lease on fd for the time of the read. The
// kernel grants one only while no process has the file open for writing,
// and while it is held a writer's open (and its O_TRUNC) waits for its
// release: what is read then is a version some writer finished. Where
// leases are not available (a filesystem without them, a file owned by
// another user without CAP_LEASE) nothing is known and the file is read.
func leaseForRead(fd int) (release func(), err error) {
	_, leaseErr := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case errors.Is(leaseErr, unix.EAGAIN):
		return nil, errBeingWritten
	case leaseErr != nil:
		return func() {}, nil
	}
	return func() { _, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) }, nil
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
