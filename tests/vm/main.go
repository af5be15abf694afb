// Command vm is the kernel matrix (make test-vm): it builds the kernel-facing
// test packages as static test binaries, runs them on the host kernel and
// in qemu guests booted from Debian's kernel packages (fetched by fetch.sh
// into the cache), and reports every test on every kernel as a TAP line,
// then a table per kernel. It exits 1 if a test failed or a guest did not
// boot on any kernel.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type options struct {
	cache       string
	kernels     []string
	host        bool
	accel       string
	timeout     time.Duration
	testTimeout string
	packages    []string // a subset of suite, by package path; all if empty
	run         string   // a -test.run for every package instead of the suite's
	vm          vmConfig
}

func parseFlags() options {
	var o options
	var kernels, packages string
	flag.StringVar(&o.cache, "cache", ".cache/vm", "where fetch.sh unpacked the kernels and busybox; builds and logs go there too")
	flag.StringVar(&kernels, "kernels", "5.10,6.1,6.12", "the kernels to boot, by fetch.sh's names")
	flag.BoolVar(&o.host, "host", true, "also run the binaries on the host's kernel")
	flag.StringVar(&o.accel, "accel", "auto", "auto (kvm if a probe boot succeeds, else tcg), kvm or tcg")
	flag.DurationVar(&o.timeout, "timeout", 25*time.Minute, "per guest, from qemu's start to its power-off")
	flag.StringVar(&o.testTimeout, "test-timeout", "15m", "-test.timeout of each test binary")
	flag.IntVar(&o.vm.memMB, "mem", 2048, "guest memory in MiB")
	flag.IntVar(&o.vm.cpus, "smp", 2, "guest vCPUs")
	flag.StringVar(&packages, "packages", "", "only these packages of the suite, comma-separated (./tests/e2e,...)")
	flag.StringVar(&o.run, "run", "", "a -test.run for every package, instead of the suite's")
	flag.Parse()
	o.kernels = strings.Split(kernels, ",")
	if packages != "" {
		o.packages = strings.Split(packages, ",")
	}
	return o
}

// kernelRun is the outcome of the suite on one kernel.
type kernelRun struct {
	name, release, accel string
	bootErr              string // non-empty: the guest did not boot, or died
	boot, run            time.Duration
	results              []testResult
	notes                []string
}

func main() {
	o := parseFlags()
	runs, err := runMatrix(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-vm:", err)
		os.Exit(2)
	}
	if !report(os.Stdout, runs) {
		os.Exit(1)
	}
}

func runMatrix(ctx context.Context, o options) ([]kernelRun, error) {
	cache, err := filepath.Abs(o.cache)
	if err != nil {
		return nil, err
	}
	busybox := filepath.Join(cache, "tools", "busybox-static", "bin", "busybox")
	if _, err := os.Stat(busybox); err != nil {
		return nil, fmt.Errorf("busybox: %w (run tests/vm/fetch.sh)", err)
	}
	start := time.Now()
	entries, err := selectSuite(o.packages)
	if err != nil {
		return nil, err
	}
	if o.run != "" {
		for i := range entries {
			entries[i].run = o.run
		}
	}
	tests, helpers, err := buildAll(filepath.Join(cache, "build"), entries)
	if err != nil {
		return nil, err
	}
	progress("built %d test binaries and %d helpers in %s", len(tests), len(helpers), since(start))
	img := image{busybox: busybox, tests: tests, helpers: helpers, suite: suiteFile(tests, o.testTimeout)}
	var runs []kernelRun
	if o.host {
		runs = append(runs, runHost(tests, filepath.Join(cache, "build", "helpers"), o.run, o.testTimeout))
	}
	accel := o.accel
	for _, name := range o.kernels {
		k, err := findKernel(cache, name, busybox)
		if err != nil {
			runs = append(runs, kernelRun{name: name, bootErr: err.Error()})
			continue
		}
		if accel == "auto" {
			accel = chooseAccel(ctx, o.vm, k, busybox, filepath.Join(cache, "run"))
		}
		runs = append(runs, runGuest(ctx, o, img, k, accel, filepath.Join(cache, "run", name)))
	}
	return runs, nil
}

func chooseAccel(ctx context.Context, cfg vmConfig, k *kernel, busybox, dir string) string {
	os.MkdirAll(dir, 0o755)
	ok, why := probeKVM(ctx, cfg, k, busybox, dir)
	if ok {
		progress("kvm: %s", why)
		return "kvm"
	}
	progress("kvm not usable (%s): tcg", firstLine(why))
	return "tcg"
}

// runGuest boots k with the suite and collects its results.
func runGuest(ctx context.Context, o options, img image, k *kernel, accel, dir string) kernelRun {
	kr := kernelRun{name: k.name, release: k.release, accel: accel}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		kr.bootErr = err.Error()
		return kr
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(initrd, img, k); err != nil {
		kr.bootErr = err.Error()
		return kr
	}
	progress("booting %s (%s) under %s", k.name, k.release, accel)
	b := boot(ctx, o.vm, accel, k.vmlinuz, initrd, dir, o.timeout)
	os.Remove(initrd) // 160 MB, rewritten by every run
	data, _ := os.ReadFile(b.results)
	g := parseGuestLog(data)
	kr.notes = g.notes
	if !g.booted {
		kr.bootErr = fmt.Sprintf("did not boot (console log: %s)", b.console)
		if b.err != nil {
			kr.bootErr = fmt.Sprintf("did not boot: %v (console log: %s)", b.err, b.console)
		}
		return kr
	}
	kr.boot = seconds(g.bootUptime)
	kr.run = b.wall - kr.boot
	if b.err != nil {
		kr.notes = append(kr.notes, b.err.Error())
	}
	for _, t := range img.tests {
		p := g.pkgs[t.name]
		if p == nil {
			p = &pkgOutput{}
		}
		rs, err := pkgResults(strings.TrimPrefix(t.pkg, "./"), p)
		if err != nil {
			kr.notes = append(kr.notes, err.Error())
		}
		kr.results = append(kr.results, rs...)
	}
	progress("%s done in %s", k.name, round(b.wall))
	return kr
}

// runHost runs the same test binaries directly on the host's kernel, each
// whole (the guests' subset is for emulation's sake) unless run is given.
func runHost(tests []builtTest, helpers, run, timeout string) kernelRun {
	kr := kernelRun{name: "host", release: hostRelease(), accel: "-"}
	start := time.Now()
	work, err := os.MkdirTemp("", "socklb-test-vm-")
	if err != nil {
		kr.bootErr = err.Error()
		return kr
	}
	defer os.RemoveAll(work)
	progress("running on the host (%s)", kr.release)
	for _, t := range tests {
		args := []string{"-test.v=test2json", "-test.count=1", "-test.timeout=" + timeout}
		if run != "" {
			args = append(args, "-test.run", run)
		}
		cmd := exec.Command(t.path, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "CI=true", "SOCKLB_TEST_BINARIES="+helpers)
		out, err := cmd.CombinedOutput()
		p := &pkgOutput{ended: true}
		p.out.Write(out)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.exit = ee.ExitCode()
		} else if err != nil {
			p.exit, p.ended = -1, false
		}
		rs, err := pkgResults(strings.TrimPrefix(t.pkg, "./"), p)
		if err != nil {
			kr.notes = append(kr.notes, err.Error())
		}
		kr.results = append(kr.results, rs...)
	}
	kr.run = time.Since(start)
	return kr
}

func hostRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "test-vm: "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
