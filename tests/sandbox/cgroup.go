package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/datapath"
)

// Cgroup2Root is where the cgroup2 hierarchy is mounted, found the way the
// agent finds it.
func Cgroup2Root() (string, error) { return datapath.Cgroup2Root() }

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
