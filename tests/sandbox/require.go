package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI (CI=true): there, a test that
// needs the kernel must fail rather than skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// unmet skips the test, or fails it in CI.
func unmet(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("kernel test requirement not met under CI=true: %s", msg)
	}
	t.Skipf("kernel test requirement not met: %s", msg)
}

var (
	requireOnce sync.Once
	requireErr  error
)

// Require checks that the test runs as root, that a cgroup2 hierarchy is
// mounted and writable, that a bpffs can be mounted and that nsenter is
// installed. If not, the test is skipped, except under CI=true, where it
// fails.
func Require(t testing.TB) {
	t.Helper()
	requireOnce.Do(func() { requireErr = checkRequirements() })
	if requireErr != nil {
		unmet(t, "%v", requireErr)
	}
}

func checkRequirements() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root (euid %d)", os.Geteuid())
	}
	root, err := Cgroup2Root()
	if err != nil {
		return err
	}
	if err := unix.Access(root, unix.W_OK); err != nil {
		return fmt.Errorf("cgroup2 root %s not writable: %w", root, err)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("nsenter: %w", err)
	}
	dir, err := os.MkdirTemp("", "socklb-bpffs-check-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	if err := unmount(dir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("/proc/self/ns/net")); err != nil {
		return fmt.Errorf("no network namespaces: %w", err)
	}
	return nil
}
