package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup2Root returns the mount point of the cgroup2 hierarchy, read from
// /proc/self/mountinfo. It handles a unified host (/sys/fs/cgroup) and a
// hybrid one (/sys/fs/cgroup/unified). When cgroup2 is mounted more than
// once, a mount of the hierarchy's root ("/") is preferred, then the first.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseCgroup2Root(f)
}

func parseCgroup2Root(r io.Reader) (string, error) {
	var first string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime [optional...] - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		root, mnt := unescapeMount(fields[3]), unescapeMount(fields[4])
		if root == "/" {
			return mnt, nil
		}
		if first == "" {
			first = mnt
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if first != "" {
		return first, nil
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupPids reads the pids in dir's cgroup.procs.
func cgroupPids(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// removeCgroupTree removes dir and any child cgroups below it, deepest
// first. Every process still inside belongs to this sandbox (it was cloned
// into it, or descends from one that was): each is killed by its pid.
// EBUSY is retried for a bounded time.
func removeCgroupTree(dir string, timeout time.Duration) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(timeout)
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		for attempt := 0; ; attempt++ {
			pids, _ := cgroupPids(d)
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("rmdir %s: %w (pids left: %v)", d, err, pids)
			}
			time.Sleep(time.Duration(min(10*(attempt+1), 100)) * time.Millisecond)
		}
	}
	return nil
}
