package sockdestroy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// Namespaces lists one path to each network namespace on the machine: those
// of every process, and those kept alive by a bind mount under /run/netns
// (ip netns, CNI plugins) with no process in them. The agent's own comes
// first.
func Namespaces() ([]string, error) {
	var paths []string
	if procs, err := filepath.Glob("/proc/[0-9]*/ns/net"); err == nil {
		paths = append(paths, procs...)
	}
	if named, err := filepath.Glob("/run/netns/*"); err == nil {
		paths = append(paths, named...)
	}
	return uniqueNamespaces("/proc/self/ns/net", paths)
}

type nsID struct{ dev, ino uint64 }

// uniqueNamespaces keeps first and one path of each other namespace in
// paths, by device and inode; paths that vanished meanwhile are dropped.
func uniqueNamespaces(first string, paths []string) ([]string, error) {
	seen := map[nsID]bool{}
	var st unix.Stat_t
	if err := unix.Stat(first, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", first, err)
	}
	seen[nsID{st.Dev, st.Ino}] = true
	out := []string{first}
	sort.Strings(paths)
	for _, p := range paths {
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		if id := (nsID{st.Dev, st.Ino}); !seen[id] {
			seen[id] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// inNetns runs fn on an OS thread that has joined the network namespace at
// path, and returns the thread to the caller's namespace after; a thread
// that cannot be returned is left locked so the runtime ends it.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the network namespace: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), syscall.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter the network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), syscall.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to the agent's network namespace: %w", err))
			return // the thread stays locked: the runtime ends it
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
