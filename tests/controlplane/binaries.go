package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// KubernetesVersion is the version build.sh builds and the harness runs.
const KubernetesVersion = "v1.37.2"

// DefaultEtcdPath is where Debian's etcd-server package installs etcd;
// build.sh installs the package when it is missing.
const DefaultEtcdPath = "/usr/bin/etcd"

const mainModulePath = "github.com/socklb/socklb"

// kubernetesBinaries are the commands build.sh builds, all of which must be
// present for the cache to count as complete.
var kubernetesBinaries = []string{"kube-apiserver", "kube-controller-manager", "kubectl", "kube-proxy"}

// buildMutex keeps parallel tests in one test binary from starting build.sh
// twice; build.sh itself also takes a file lock against other processes.
var buildMutex sync.Mutex

// RepoRoot finds the checkout by walking up from the working directory (a
// test's working directory is its package directory) to the go.mod of the
// main module.
func RepoRoot() (string, error) {
	workingDir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for dir := workingDir; ; dir = filepath.Dir(dir) {
		goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(goMod, mainModulePath) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("finding the repository root: no go.mod of module %s above %s", mainModulePath, workingDir)
		}
	}
}

func declaresModule(goMod []byte, modulePath string) bool {
	scanner := bufio.NewScanner(bytes.NewReader(goMod))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

// CachedBinaries reports the directory of the built Kubernetes binaries and
// whether it, and etcd, are complete, without building anything.
func CachedBinaries() (binDir string, complete bool, err error) {
	repoRoot, err := RepoRoot()
	if err != nil {
		return "", false, err
	}
	binDir = filepath.Join(repoRoot, ".cache", "k8s", KubernetesVersion, "bin")
	for _, name := range kubernetesBinaries {
		if !isExecutable(filepath.Join(binDir, name)) {
			return binDir, false, nil
		}
	}
	return binDir, isExecutable(DefaultEtcdPath), nil
}

// Binaries returns the directory holding kube-apiserver,
// kube-controller-manager, kubectl and kube-proxy, running
// tests/controlplane/build.sh first if any of them or etcd is missing. A cold
// build takes about 12 minutes, longer than go test's default timeout; its
// progress goes to stderr.
func Binaries(ctx context.Context) (string, error) {
	binDir, complete, err := CachedBinaries()
	if err != nil || complete {
		return binDir, err
	}
	buildMutex.Lock()
	defer buildMutex.Unlock()
	if binDir, complete, err = CachedBinaries(); err != nil || complete {
		return binDir, err
	}

	const buildScript = "tests/controlplane/build.sh"
	if err := runBuildScript(ctx, buildScript); err != nil {
		return "", err
	}
	binDir, complete, err = CachedBinaries()
	if err != nil {
		return "", err
	}
	if !complete {
		return "", fmt.Errorf("running %s: finished without producing all of %v in %s and %s", buildScript, kubernetesBinaries, binDir, DefaultEtcdPath)
	}
	return binDir, nil
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// tailBuffer keeps the last few KiB of a build's output for the error
// message; the whole output already went to stderr.
type tailBuffer struct {
	data []byte
}

const tailBufferSize = 8 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.data = append(b.data, p...)
	if len(b.data) > tailBufferSize {
		b.data = append([]byte(nil), b.data[len(b.data)-tailBufferSize:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.data) }

// runBuildScript runs a build script of the repository (a path relative to
// its root) from the root, its progress on stderr; a failure carries the
// end of what it printed.
func runBuildScript(ctx context.Context, script string) error {
	repoRoot, err := RepoRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(repoRoot, script)
	var output tailBuffer
	build := exec.CommandContext(ctx, path)
	build.Dir = repoRoot
	build.Stdout = io.Discard
	build.Stderr = io.MultiWriter(os.Stderr, &output)
	if err := build.Run(); err != nil {
		return fmt.Errorf("running %s: %w\n%s", path, err, output.String())
	}
	return nil
}
