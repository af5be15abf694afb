package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kernel is one Debian kernel package, unpacked by fetch.sh into
// <cache>/kernel-<name>.
type kernel struct {
	name    string // the matrix's name: "5.10"
	release string // uname -r: "5.10.0-32-cloud-amd64"
	pkg     string // the Debian package it came from
	vmlinuz string
	modules string // a modules tree, decompressed, with busybox depmod's index
}

// findKernel locates the unpacked package of kernel name under cache and
// prepares its modules tree.
func findKernel(cache, name, busybox string) (*kernel, error) {
	dir := filepath.Join(cache, "kernel-"+name)
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("kernel %s: want one vmlinuz in %s/boot, found %d (run tests/vm/fetch.sh)", name, dir, len(images))
	}
	k := &kernel{name: name, vmlinuz: images[0], release: strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")}
	if b, err := os.ReadFile(filepath.Join(dir, ".package")); err == nil {
		k.pkg = strings.TrimSpace(string(b))
	}
	k.modules = filepath.Join(cache, "modules", k.release, "lib", "modules", k.release)
	if err := prepareModules(dir, k, busybox); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	return k, nil
}

// prepareModules copies the package's modules tree (lib/modules, or
// usr/lib/modules since trixie's merged /usr) once, decompresses .ko.xz
// (busybox modprobe loads plain .ko) and writes modules.dep with busybox
// depmod, since the package leaves that to its postinst.
func prepareModules(pkgDir string, k *kernel, busybox string) error {
	done := filepath.Join(k.modules, ".prepared")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	var src string
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if p := filepath.Join(pkgDir, d, k.release); isDir(p) {
			src = p
		}
	}
	if src == "" {
		return fmt.Errorf("no modules directory for %s in %s", k.release, pkgDir)
	}
	os.RemoveAll(k.modules)
	if err := os.MkdirAll(filepath.Dir(k.modules), 0o755); err != nil {
		return err
	}
	steps := [][]string{
		{"cp", "-a", src, k.modules},
		{"find", k.modules, "-name", "*.ko.xz", "-exec", "xz", "-d", "{}", "+"},
		{busybox, "depmod", "-b", filepath.Dir(filepath.Dir(filepath.Dir(k.modules))), k.release},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("prepare modules: %s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return os.WriteFile(done, nil, 0o644)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
