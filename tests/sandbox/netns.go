package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const netnsDir = "/run/netns"

// onFreshThread runs fn on an OS thread of its own that is thrown away
// afterwards (the goroutine exits still locked, so the Go runtime ends the
// thread): whatever fn does to the thread's namespaces can't leak into the
// rest of the process, even if restoring them would have failed.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		errc <- fn()
	}()
	return <-errc
}

// createNetns creates a named network namespace, bind-mounted at
// /run/netns/NAME like `ip netns add NAME` does, and returns its path.
func createNetns(name string) (string, error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	err = onFreshThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", self, path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// deleteNetns undoes createNetns (`ip netns del`): the namespace itself goes
// away once no process or socket uses it.
func deleteNetns(path string) error {
	if !strings.HasPrefix(path, netnsDir+"/") {
		return fmt.Errorf("refusing to delete %s: not under %s", path, netnsDir)
	}
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// inNetns runs fn on a throw-away thread that has joined the network
// namespace at path. /proc/sys/net follows the thread's namespace, so fn can
// write sysctls there.
func inNetns(path string, fn func() error) error {
	return onFreshThread(func() error {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("setns %s: %w", path, err)
		}
		return fn()
	})
}

// writeSysctls writes key=value pairs ("net/ipv4/ip_forward": "1") in the
// network namespace at path.
func writeSysctls(path string, kv [][2]string) error {
	return inNetns(path, func() error {
		for _, p := range kv {
			f := filepath.Join("/proc/sys", p[0])
			if err := os.WriteFile(f, []byte(p[1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", p[0], p[1], err)
			}
		}
		return nil
	})
}

// handleAt opens a rtnetlink handle in the namespace at path. Only
// NETLINK_ROUTE: the default would also open XFRM sockets, which fail on
// kernels without xfrm_user.
func handleAt(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return h, nil
}
