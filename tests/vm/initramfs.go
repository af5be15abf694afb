package main

import (
	"bufio"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// guestInit is the guest's /init: it mounts what the tests need, loads the
// modules, runs the suite and powers off.
//
//go:embed init.sh
var guestInit []byte

// Paths inside the guest.
const (
	guestTestDir   = "vm/tests"   // the go test -c binaries, <name>.test
	guestHelperDir = "vm/helpers" // socklb, namesrv, sockprobe (sandbox.PrebuiltEnv)
	guestSuite     = "vm/suite"   // one line per test binary: name, -test.run, -test.skip, -test.timeout
	guestModules   = "vm/modules" // the modules init loads, one a line
)

// hostTools are the host's own binaries the tests exec, copied into the guest
// with the shared libraries ldd names: the same programs as on the host
// (busybox's nsenter would be a different one). The tests' packages are
// installed by make deps.
var hostTools = []string{"nsenter", "bpftool", "curl"}

// image is what goes into every guest's initramfs, whatever the kernel.
type image struct {
	busybox string
	tests   []builtTest
	helpers []string // host paths of the prebuilt helper binaries
	suite   []byte
}

// writeInitramfs writes the initramfs of kernel k to out: the common image
// and k's modules.
func writeInitramfs(out string, img image, k *kernel) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	c := newCpioWriter(f)
	if err := addImage(c, img); err != nil {
		return err
	}
	if k != nil {
		if err := addModules(c, k); err != nil {
			return err
		}
	}
	if err := c.close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return f.Close()
}

func addImage(c *cpioWriter, img image) error {
	if err := c.addBytes("init", guestInit, 0o755); err != nil {
		return err
	}
	if err := c.addFile("bin/busybox", img.busybox); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "sbin", "usr/bin", "usr/sbin"} {
		if err := c.mkdirAll(d); err != nil {
			return err
		}
	}
	if err := c.addBytes(guestSuite, img.suite, 0o644); err != nil {
		return err
	}
	for _, t := range img.tests {
		if err := c.addFile(guestTestDir+"/"+t.name+".test", t.path); err != nil {
			return err
		}
	}
	for _, h := range img.helpers {
		if err := c.addFile(guestHelperDir+"/"+filepath.Base(h), h); err != nil {
			return err
		}
	}
	return addHostTools(c)
}

// addHostTools copies hostTools, found in PATH, to /usr/bin and their
// shared libraries to the paths ldd resolves them to.
func addHostTools(c *cpioWriter) error {
	libs := map[string]bool{}
	for _, name := range hostTools {
		p, err := exec.LookPath(name)
		if err != nil {
			return fmt.Errorf("initramfs: the tests need the host's %s: %w", name, err)
		}
		if err := c.addFile("usr/bin/"+name, p); err != nil {
			return err
		}
		deps, err := sharedLibraries(p)
		if err != nil {
			return err
		}
		for _, l := range deps {
			if !libs[l] {
				libs[l] = true
				if err := c.addFile(l, l); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var lddPath = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists the absolute paths of the libraries ldd says bin
// loads, the dynamic loader included.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	return parseLdd(string(out)), nil
}

func parseLdd(out string) []string {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		if m := lddPath.FindStringSubmatch(line); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs
}

// addModules adds the modules k's init loads with their dependencies, and
// the module index files busybox modprobe reads.
func addModules(c *cpioWriter, k *kernel) error {
	dep, err := os.ReadFile(filepath.Join(k.modules, "modules.dep"))
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	files, err := moduleClosure(string(dep), guestModuleNames)
	if err != nil {
		return fmt.Errorf("initramfs for %s: %w", k.name, err)
	}
	base := "lib/modules/" + k.release + "/"
	for _, f := range files {
		if err := c.addFile(base+f, filepath.Join(k.modules, f)); err != nil {
			return err
		}
	}
	for _, idx := range []string{"modules.dep", "modules.alias", "modules.symbols", "modules.builtin"} {
		p := filepath.Join(k.modules, idx)
		if _, err := os.Stat(p); err == nil {
			if err := c.addFile(base+idx, p); err != nil {
				return err
			}
		}
	}
	return c.addBytes(guestModules, []byte(strings.Join(guestModuleNames, "\n")+"\n"), 0o644)
}

// guestModuleNames are the modules the tests need where the Debian cloud
// kernels build them as modules: veth pairs, the clsact qdisc (in
// sch_ingress) with cls_bpf and act_bpf for tc below 6.6, the bridge of the
// sandbox's cluster LAN, and nf_tables for its "no packet filter" check.
var guestModuleNames = []string{"veth", "sch_ingress", "cls_bpf", "act_bpf", "bridge", "nf_tables"}

// moduleClosure returns the files (relative to the modules directory) of the
// named modules and everything they depend on, read from modules.dep.
func moduleClosure(modulesDep string, names []string) ([]string, error) {
	deps := map[string][]string{} // file -> dependency files
	byName := map[string]string{} // module name -> file
	sc := bufio.NewScanner(strings.NewReader(modulesDep))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
		byName[moduleName(file)] = file
	}
	seen := map[string]bool{}
	var out []string
	var visit func(string)
	visit = func(f string) {
		if seen[f] {
			return
		}
		seen[f] = true
		out = append(out, f)
		for _, d := range deps[f] {
			visit(d)
		}
	}
	for _, n := range names {
		f, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("module %s is not in modules.dep", n)
		}
		visit(f)
	}
	return out, nil
}

// moduleName is the module name of a module file: its base name without
// .ko (and a compression suffix), dashes as underscores.
func moduleName(file string) string {
	b := filepath.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}
