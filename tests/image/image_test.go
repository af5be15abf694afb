//go:build image

// Package image checks the image `make image` built, from outside a container
// runtime: `podman run` fails on these machines (crun may not set
// RLIMIT_NOFILE), so the test mounts the image's root and runs its programs in
// a chroot of it. `make test-image` runs it with the image and version it
// built; CI=true turns a missing podman or image into a failure.
package image

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/sandbox"
)

// maxImageBytes bounds the image: debian:bookworm-slim (about 78 MB), bpftool
// with its libraries (about 2 MB) and the stripped socklb (about 35 MB), with
// room for growth but not for a builder stage or apt lists left behind.
const maxImageBytes = 150_000_000

const (
	socklbPath   = "/usr/local/bin/socklb"
	versionLabel = "org.opencontainers.image.version"
	runTimeout   = 30 * time.Second
)

// builtImage is the image under test: what podman says of it and its root.
type builtImage struct {
	ref         string
	root        string
	config      imageConfig
	size        int64
	wantVersion string
}

// imageConfig is the part of `podman image inspect` the checks read.
type imageConfig struct {
	Entrypoint []string
	Cmd        []string
	Labels     map[string]string
}

func TestImage(t *testing.T) {
	img := openImage(t)
	cases := []struct {
		name  string
		check func(t *testing.T, img *builtImage)
	}{
		{"entrypoint is socklb and the command is agent", checkEntrypoint},
		{"socklb version in a chroot is the version built", checkSocklbVersion},
		{"bpftool version runs in a chroot", checkBpftoolVersion},
		{"socklb is a static binary", checkStatic},
		{"image size is below the bound", checkSize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, img) })
	}
}

func checkEntrypoint(t *testing.T, img *builtImage) {
	wantEntrypoint, wantCmd := []string{socklbPath}, []string{"agent"}
	if !slices.Equal(img.config.Entrypoint, wantEntrypoint) || !slices.Equal(img.config.Cmd, wantCmd) {
		t.Errorf("entrypoint %q cmd %q, want entrypoint %q cmd %q",
			img.config.Entrypoint, img.config.Cmd, wantEntrypoint, wantCmd)
	}
}

// The binary prints "socklb <version> (<go release>, <os>/<arch>)".
func checkSocklbVersion(t *testing.T, img *builtImage) {
	out := runInRoot(t, img.root, socklbPath, "version")
	fields := strings.Fields(out)
	if len(fields) < 2 || fields[0] != "socklb" || fields[1] != img.wantVersion {
		t.Errorf("socklb version printed %q, want \"socklb %s (...)\"", out, img.wantVersion)
	}
	if label := img.config.Labels[versionLabel]; label != img.wantVersion {
		t.Errorf("label %s is %q, want %q", versionLabel, label, img.wantVersion)
	}
}

func checkBpftoolVersion(t *testing.T, img *builtImage) {
	out := runInRoot(t, img.root, "/usr/sbin/bpftool", "version")
	if !strings.HasPrefix(out, "bpftool v") || !strings.Contains(out, "using libbpf v") {
		t.Errorf("bpftool version printed %q, want \"bpftool v...\" and \"using libbpf v...\"", out)
	}
}

// Static: no program interpreter and no shared libraries, so the binary
// would run on any base, and CGO_ENABLED=0 took effect.
func checkStatic(t *testing.T, img *builtImage) {
	f, err := elf.Open(filepath.Join(img.root, socklbPath))
	if err != nil {
		t.Fatalf("opening %s in the image: %v", socklbPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): dynamically linked", socklbPath)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatalf("reading the shared libraries of %s: %v", socklbPath, err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q", socklbPath, libs)
	}
}

func checkSize(t *testing.T, img *builtImage) {
	t.Logf("image %s: %.1f MB (%d bytes), bound %.0f MB",
		img.ref, float64(img.size)/1e6, img.size, float64(maxImageBytes)/1e6)
	if img.size <= 0 || img.size >= maxImageBytes {
		t.Errorf("image size %d bytes, want between 0 and %d", img.size, maxImageBytes)
	}
}

// openImage finds the image, reads its config and mounts its root for the
// test's duration.
func openImage(t *testing.T) *builtImage {
	t.Helper()
	ref := envOr("SOCKLB_IMAGE", "localhost/socklb:latest")
	if _, err := exec.LookPath("podman"); err != nil {
		unmet(t, "podman: %v (make image installs it)", err)
	}
	if os.Geteuid() != 0 {
		unmet(t, "mounting an image needs root (euid %d)", os.Geteuid())
	}
	if err := exec.Command("podman", "image", "exists", ref).Run(); err != nil {
		unmet(t, "image %s: not there (%v): run make image", ref, err)
	}
	img := &builtImage{ref: ref}
	img.config, img.size = inspectImage(t, ref)
	img.wantVersion = envOr("SOCKLB_IMAGE_VERSION", img.config.Labels[versionLabel])
	if img.wantVersion == "" {
		t.Fatalf("no version to check: SOCKLB_IMAGE_VERSION unset and image %s has no label %s", ref, versionLabel)
	}
	img.root = mountImage(t, ref)
	return img
}

func inspectImage(t *testing.T, ref string) (imageConfig, int64) {
	t.Helper()
	out, err := exec.Command("podman", "image", "inspect", ref).Output()
	if err != nil {
		t.Fatalf("inspecting image %s: %v", ref, commandError(err))
	}
	var inspected []struct {
		Config imageConfig
		Size   int64
	}
	if err := json.Unmarshal(out, &inspected); err != nil {
		t.Fatalf("decoding podman image inspect %s: %v", ref, err)
	}
	if len(inspected) != 1 {
		t.Fatalf("podman image inspect %s: %d images, want 1", ref, len(inspected))
	}
	return inspected[0].Config, inspected[0].Size
}

func mountImage(t *testing.T, ref string) string {
	t.Helper()
	out, err := exec.Command("podman", "image", "mount", ref).Output()
	if err != nil {
		t.Fatalf("mounting image %s: %v", ref, commandError(err))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("podman", "image", "unmount", ref).CombinedOutput(); err != nil {
			t.Errorf("unmounting image %s: %v: %s", ref, err, out)
		}
	})
	root := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(root, socklbPath)); err != nil {
		t.Fatalf("image %s mounted at %q: %v", ref, root, err)
	}
	return root
}

// runInRoot runs a program of the image with the image's root as its root,
// and returns what it printed.
func runInRoot(t *testing.T, root, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(path, args...)
	// argv[0] as a shell gives it from PATH: bpftool prints it in its version.
	cmd.Args[0] = filepath.Base(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s %q in a chroot of %s: %v", path, args, root, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %q in a chroot of the image: %v: %s", path, args, err, stderr.String())
		}
	case <-time.After(runTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %q in a chroot of the image: still running after %v", path, args, runTimeout)
	}
	return strings.TrimSpace(stdout.String())
}

func commandError(err error) error {
	if exitErr, ok := err.(*exec.ExitError); ok && len(exitErr.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(exitErr.Stderr))
	}
	return err
}

// unmet skips the test, or fails it under CI=true, where the image must be
// there.
func unmet(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if sandbox.InCI() {
		t.Fatalf("image test requirement not met under CI=true: %s", msg)
	}
	t.Skipf("image test requirement not met: %s", msg)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
