package sandbox

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// KernelRelease is the running kernel's release (uname -r).
func KernelRelease() string {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(uts.Release[:])
}

// KernelAtLeast reports whether the running kernel is version ("6.6") or
// newer. A test that checks something only newer kernels do names the
// feature where it calls this.
func KernelAtLeast(t testing.TB, version string) bool {
	t.Helper()
	ok, err := releaseAtLeast(KernelRelease(), version)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	return ok
}

// RequireKernel skips the test on a kernel older than version, which lacks
// feature ("tcx"). It is an explicit version rule, so it skips under CI=true
// too: the kernel matrix (tests/vm) boots older kernels on purpose, and the
// skip line says what they lack.
func RequireKernel(t testing.TB, version, feature string) {
	t.Helper()
	if !KernelAtLeast(t, version) {
		t.Skipf("needs %s, Linux %s or newer; this kernel is %s", feature, version, KernelRelease())
	}
}

// releaseAtLeast compares the leading major.minor of release ("6.1.0-50-cloud-amd64")
// with version ("6.6").
func releaseAtLeast(release, version string) (bool, error) {
	have, err := majorMinor(release)
	if err != nil {
		return false, err
	}
	want, err := majorMinor(version)
	if err != nil {
		return false, err
	}
	if have[0] != want[0] {
		return have[0] > want[0], nil
	}
	return have[1] >= want[1], nil
}

func majorMinor(v string) ([2]int, error) {
	var out [2]int
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return out, fmt.Errorf("kernel version %q: want major.minor", v)
	}
	for i := range 2 {
		digits := parts[i]
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return out, fmt.Errorf("kernel version %q: %w", v, err)
		}
		out[i] = n
	}
	return out, nil
}
