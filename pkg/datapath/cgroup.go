package datapath

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Cgroup2Root finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	defer f.Close()
	return cgroup2RootFrom(bufio.NewScanner(f))
}

func cgroup2RootFrom(lines *bufio.Scanner) (string, error) {
	best, first := "", ""
	for lines.Scan() {
		// "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:10 - cgroup2 cgroup2 rw"
		fields := strings.Fields(lines.Text())
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
		mountPoint := unescapeMountPath(fields[4])
		if first == "" {
			first = mountPoint
		}
		// A mount of the hierarchy's root sees every cgroup; prefer it.
		if fields[3] == "/" && (best == "" || len(mountPoint) < len(best)) {
			best = mountPoint
		}
	}
	if err := lines.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if best == "" {
		// Only part of the hierarchy is visible (a container without a
		// cgroup namespace): its mount is still where our cgroup lives.
		best = first
	}
	if best == "" {
		return "", fmt.Errorf("find the cgroup2 mount: no cgroup2 filesystem is mounted")
	}
	return best, nil
}

// unescapeMountPath undoes mountinfo's octal escapes ("\040" for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupID is the id the kernel reports for a cgroup in link info: the
// inode number of its directory.
func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// checkCgroup2 refuses a directory that is not part of a cgroup v2 hierarchy.
func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("check cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("check cgroup %s: not a cgroup v2 directory", path)
	}
	return nil
}
