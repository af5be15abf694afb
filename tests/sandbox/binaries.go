package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Package paths of the test commands, for Binaries.
const (
	NameSrvPkg   = "./tests/cmd/namesrv"
	SockProbePkg = "./tests/cmd/sockprobe"
)

// buildTimeout bounds one go build.
const buildTimeout = 5 * time.Minute

// PrebuiltEnv names a directory of binaries built beforehand, one per
// package named by its base name: where no Go toolchain is (the kernel
// matrix's guests, tests/vm), Binaries takes them from there instead.
const PrebuiltEnv = "SOCKLB_TEST_BINARIES"

var (
	binMu    sync.Mutex
	binDir   string
	binRoot  string
	binCache = map[string]binResult{}
)

type binResult struct {
	path string
	err  error
}

// Binaries builds the named main packages of this repository (paths relative
// to the module root, e.g. "./cmd/socklb", NameSrvPkg, SockProbePkg) and
// returns their paths, keyed by the names as given. Each package is built
// once per test binary run (CGO_ENABLED=0) into <tmp>/socklb-test-bin/<pid>,
// which RemoveBinaries deletes (and a later run does, if this process died). A failed build skips the test, or fails it under
// CI=true.
func Binaries(t testing.TB, pkgs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pkg := range pkgs {
		p, err := buildBinary(pkg)
		if err != nil {
			if InCI() {
				t.Fatalf("sandbox: build %s: %v", pkg, err)
			}
			t.Skipf("sandbox: build %s: %v", pkg, err)
		}
		out[pkg] = p
	}
	return out
}

// RemoveBinaries deletes the directory Binaries built into; call it from
// TestMain after m.Run.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
		binDir = ""
		binCache = map[string]binResult{}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// RepoRoot returns the root of this module: the directory of `go env GOMOD`.
func RepoRoot() (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	return repoRootLocked()
}

func repoRootLocked() (string, error) {
	if binRoot != "" {
		return binRoot, nil
	}
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (GOMOD=%q)", mod)
	}
	binRoot = filepath.Dir(mod)
	return binRoot, nil
}

func buildBinary(pkg string) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if r, ok := binCache[pkg]; ok {
		return r.path, r.err
	}
	if dir := os.Getenv(PrebuiltEnv); dir != "" {
		return prebuilt(dir, pkg)
	}
	p, err := buildLocked(pkg)
	binCache[pkg] = binResult{p, err}
	return p, err
}

func prebuilt(dir, pkg string) (string, error) {
	p := filepath.Join(dir, path.Base(pkg))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("prebuilt binary of %s (%s=%s): %w", pkg, PrebuiltEnv, dir, err)
	}
	return p, nil
}

// makeBinDir creates <tmp>/socklb-test-bin/<pid>, first removing the
// directories there of test processes that are gone (killed before they
// could call RemoveBinaries, or never calling it).
func makeBinDir() (string, error) {
	parent := filepath.Join(os.TempDir(), "socklb-test-bin")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
	d := filepath.Join(parent, strconv.Itoa(os.Getpid()))
	os.RemoveAll(d) // a dead process's, with our reused pid
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	return d, nil
}

func buildLocked(pkg string) (string, error) {
	root, err := repoRootLocked()
	if err != nil {
		return "", err
	}
	if binDir == "" {
		d, err := makeBinDir()
		if err != nil {
			return "", err
		}
		binDir = d
	}
	// One directory per package keeps the command's own name as the binary
	// name while two packages with the same base name can't collide.
	sub := strings.NewReplacer("/", "_", ".", "_").Replace(strings.TrimPrefix(pkg, "./"))
	dir := filepath.Join(binDir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, path.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}
