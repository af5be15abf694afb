//go:build controlplane

// Package deploy checks what deploy/ ships: the Helm chart deploy/helm/socklb
// (helm lint, helm template with default and other values), the plain
// manifest deploy/socklb.yaml (what the chart renders with its defaults), the
// rendered objects against a real kube-apiserver (server-side dry run, RBAC
// through `kubectl auth can-i`) and the DaemonSet's capabilities, by running
// the agent with only those in a sandbox.
//
// helm comes from tests/controlplane/build-helm.sh (about 3.5 minutes cold,
// cached under .cache/helm), the control plane from tests/controlplane:
//
//	make test-deploy
//
// Under CI=true a missing binary or a machine that cannot run the tests is
// a failure, never a skip.
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/controlplane"
	"github.com/socklb/socklb/tests/sandbox"
)

const (
	// releaseName and releaseNamespace are those deploy/socklb.yaml is
	// rendered with (make deploy-manifest): kube-proxy's namespace.
	releaseName      = "socklb"
	releaseNamespace = "kube-system"
	chartDir         = "deploy/helm/socklb"
	plainManifest    = "deploy/socklb.yaml"
	socklbPkg        = "./cmd/socklb"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error

	cpOnce sync.Once
	cp     *controlplane.ControlPlane
	cpErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	sandbox.RemoveBinaries()
	os.Exit(code)
}

// unavailable skips the test, or fails it under CI=true, where coverage
// must never be lost silently.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if sandbox.InCI() {
		t.Fatalf(format+" (CI=true, so this fails instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// repoRoot is the checkout the test runs in; chart paths are relative to it.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// requireHelm returns the cached helm binary, building it first with
// tests/controlplane/build-helm.sh when it is missing.
func requireHelm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			helmErr = err
			return
		}
		script := filepath.Join(root, "tests", "controlplane", "build-helm.sh")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		build := exec.CommandContext(ctx, script)
		build.Dir = root
		build.Stdout, build.Stderr = &stdout, &stderr
		if err := build.Run(); err != nil {
			helmErr = fmt.Errorf("running %s: %w\n%s", script, err, stderr.String())
			return
		}
		helmPath = strings.TrimSpace(stdout.String())
	})
	if helmErr != nil {
		unavailable(t, "helm: %v", helmErr)
	}
	return helmPath
}

// runHelm runs helm in the repository root and returns its stdout; the
// error carries stderr.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	command := exec.CommandContext(ctx, helm, args...)
	command.Dir = repoRoot(t)
	command.Stdout, command.Stderr = &stdout, &stderr
	if err := command.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// coldBuildBudget is the least test time left for which missing Kubernetes
// binaries are built rather than given up on: a cold build takes about 12
// minutes.
const coldBuildBudget = 20 * time.Minute

// requireControlPlane returns the control plane the package's tests share,
// started on first use and stopped by TestMain.
func requireControlPlane(t *testing.T) *controlplane.ControlPlane {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "the control plane needs root (build.sh installs etcd with apt-get)")
	}
	binDir, complete, err := controlplane.CachedBinaries()
	if err != nil {
		unavailable(t, "looking for the Kubernetes binaries: %v", err)
	}
	if !complete {
		if deadline, ok := t.Deadline(); ok && time.Until(deadline) < coldBuildBudget {
			unavailable(t, "the Kubernetes binaries are missing from %s and a cold build (about 12 minutes) does not fit the test deadline: run make k8s-binaries or pass -timeout 30m", binDir)
		}
	}
	cpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if !complete {
			if binDir, cpErr = controlplane.Binaries(ctx); cpErr != nil {
				return
			}
		}
		cp, cpErr = controlplane.Start(ctx, controlplane.Options{BinDir: binDir})
	})
	if cpErr != nil {
		unavailable(t, "starting the control plane: %v", cpErr)
	}
	return cp
}
