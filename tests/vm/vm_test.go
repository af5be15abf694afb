package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readCpio parses a newc archive into name -> (mode, content).
func readCpio(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+nameSize-1])
		off = align4(off + 110 + nameSize)
		data := b[off : off+size]
		off = align4(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s added twice", name)
		}
		out[name] = cpioEntry{mode: uint32(mode), data: string(data)}
	}
}

type cpioEntry struct {
	mode uint32
	data string
}

func align4(n int) int { return (n + 3) &^ 3 }

func TestCpioWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	steps := []error{
		c.addBytes("init", []byte("#!/bin/sh\n"), 0o755),
		c.addBytes("vm/tests/a.test", []byte("abcde"), 0o755),
		c.addBytes("/vm/tests/b", []byte(""), 0o644),
		c.addSymlink("bin/sh", "busybox"),
		c.mkdirAll("proc"),
		c.close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	got := readCpio(t, buf.Bytes())
	want := map[string]cpioEntry{
		"init":            {cpioFile | 0o755, "#!/bin/sh\n"},
		"vm":              {cpioDir | 0o755, ""},
		"vm/tests":        {cpioDir | 0o755, ""},
		"vm/tests/a.test": {cpioFile | 0o755, "abcde"},
		"vm/tests/b":      {cpioFile | 0o644, ""},
		"bin":             {cpioDir | 0o755, ""},
		"bin/sh":          {cpioSymlink | 0o777, "busybox"},
		"proc":            {cpioDir | 0o755, ""},
	}
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s missing", name)
		case g != w:
			t.Errorf("%s: mode %o content %q, want mode %o content %q", name, g.mode, g.data, w.mode, w.data)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d", len(got), len(want))
	}
}

const modulesDep = `kernel/drivers/net/veth.ko:
kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nfnetlink.ko:
kernel/lib/libcrc32c.ko:
kernel/net/sched/act-bpf.ko:
kernel/fs/unused.ko:
`

func TestModuleClosure(t *testing.T) {
	cases := []struct {
		name    string
		modules []string
		want    []string
		wantErr bool
	}{
		{"no dependencies", []string{"veth"}, []string{"kernel/drivers/net/veth.ko"}, false},
		{"dependencies follow", []string{"nf_tables"}, []string{"kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko"}, false},
		{"shared dependency once", []string{"nf_tables", "nfnetlink"}, []string{"kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko"}, false},
		{"dash and underscore are one name", []string{"act_bpf"}, []string{"kernel/net/sched/act-bpf.ko"}, false},
		{"missing module", []string{"cls_bpf"}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := moduleClosure(modulesDep, c.modules)
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error: %v", err, c.wantErr)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("closure of %v = %v, want %v", c.modules, got, c.want)
			}
		})
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007f1)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n"
	want := []string{"/lib/x86_64-linux-gnu/libselinux.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if got := parseLdd(out); !slices.Equal(got, want) {
		t.Errorf("parseLdd = %v, want %v", got, want)
	}
}

// A guest log as init writes it, with test2json events standing in for what
// go tool test2json makes of each binary's output.
func TestGuestResults(t *testing.T) {
	log := "@@@ booted 6.1.0-50-cloud-amd64 5.54\r\n" +
		"@@@ module-failed veth 5.60\n" +
		"@@@ begin pkg_a 6.00\n\x16=== RUN   TestA\n\x16--- PASS: TestA (0.50s)\nPASS\n\n@@@ end pkg_a 0 7.50\n" +
		"@@@ begin pkg_b 8.00\n\x16=== RUN   TestB\npanic: boom\n"
	g := parseGuestLog([]byte(log))
	if !g.booted || g.bootUptime != 5.54 || g.doneUptime != 0 {
		t.Errorf("booted %v at %v, done at %v; want booted at 5.54, never done", g.booted, g.bootUptime, g.doneUptime)
	}
	if !slices.Equal(g.notes, []string{"module-failed veth"}) {
		t.Errorf("notes %q", g.notes)
	}
	if a := g.pkgs["pkg_a"]; a == nil || !a.ended || a.exit != 0 || a.seconds != 1.5 || !strings.Contains(a.out.String(), "--- PASS: TestA") {
		t.Fatalf("pkg_a parsed as %+v", a)
	}
	if b := g.pkgs["pkg_b"]; b == nil || b.ended {
		t.Fatalf("pkg_b parsed as %+v, want not ended", b)
	}

	cases := []struct {
		name   string
		events string
		out    pkgOutput
		want   []string // "name status elapsed"
	}{
		{"pass, skip and fail with subtests",
			ev("run", "TestA", "") + ev("output", "TestA", "--- PASS: TestA (0.50s)") + ev("pass", "TestA", "") +
				ev("run", "TestB", "") + ev("output", "TestB", "    x_test.go:9: needs tcx") + ev("skip", "TestB", "") +
				ev("run", "TestC/case", "") + ev("fail", "TestC/case", "") + ev("output", "TestC", "--- FAIL: TestC (1.25s)") + ev("fail", "TestC", ""),
			pkgOutput{ended: true, exit: 1},
			[]string{"TestA pass 0.50", "TestB skip 0.00", "TestC fail 1.25"}},
		{"a test with no result never finished",
			ev("run", "TestA", ""), pkgOutput{ended: false},
			[]string{"TestA fail 0.00", "(test binary did not finish: the guest died or timed out) fail 0.00"}},
		{"a non-zero exit with every test passed",
			ev("run", "TestA", "") + ev("pass", "TestA", "") + ev("output", "", "panic: in TestMain"), pkgOutput{ended: true, exit: 2},
			[]string{"TestA pass 0.00", "(test binary exited 2) fail 0.00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, r := range collectEvents("pkg/x", []byte(c.events), &c.out) {
				got = append(got, r.name+" "+r.status+" "+strconv.FormatFloat(r.elapsed, 'f', 2, 64))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("results\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

func ev(action, test, output string) string {
	if output != "" {
		output += "\n"
	}
	return `{"Action":` + strconv.Quote(action) + `,"Test":` + strconv.Quote(test) + `,"Output":` + strconv.Quote(output) + "}\n"
}

func TestTAPLines(t *testing.T) {
	cases := []struct {
		name string
		r    testResult
		want string
	}{
		{"pass", testResult{pkg: "tests/e2e", name: "TestUDP", status: "pass", elapsed: 1.5}, "ok 3 5.10: tests/e2e: TestUDP # 1.50s"},
		{"skip says why", testResult{pkg: "pkg/datapath", name: "TestTCX", status: "skip",
			output: []string{"=== RUN   TestTCX", "    kernel.go:40: needs tcx, Linux 6.6 or newer", "--- SKIP: TestTCX (0.00s)"}},
			"ok 3 5.10: pkg/datapath: TestTCX # SKIP needs tcx, Linux 6.6 or newer"},
		{"fail", testResult{pkg: "pkg/lbmap", name: "TestX", status: "fail", elapsed: 2}, "not ok 3 5.10: pkg/lbmap: TestX # FAIL 2.00s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tapLine(3, "5.10", c.r); got != c.want {
				t.Errorf("tapLine = %q, want %q", got, c.want)
			}
		})
	}
}

func TestReportFailsOnAFailureOrABootFailure(t *testing.T) {
	pass := kernelRun{name: "6.1", results: []testResult{{pkg: "p", name: "TestA", status: "pass"}}}
	cases := []struct {
		name string
		runs []kernelRun
		want bool
	}{
		{"all passed", []kernelRun{pass}, true},
		{"a failed test", []kernelRun{pass, {name: "5.10", results: []testResult{{pkg: "p", name: "TestA", status: "fail"}}}}, false},
		{"a kernel that did not boot", []kernelRun{pass, {name: "6.12", bootErr: "did not boot"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := report(&out, c.runs); got != c.want {
				t.Errorf("report = %v, want %v:\n%s", got, c.want, out.String())
			}
			if !strings.Contains(out.String(), "matrix: ") {
				t.Errorf("no closing count:\n%s", out.String())
			}
		})
	}
}

// Every package whose tests use the kernel (they build a sandbox or call
// sandbox.Require) is in the matrix's suite.
func TestSuiteHasEveryKernelPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	inSuite := map[string]bool{}
	for _, e := range suite {
		inSuite[strings.TrimPrefix(e.pkg, "./")] = true
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") || filepath.Base(filepath.Dir(p)) == "vm" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(b, []byte("//go:build")) {
			return nil // tagged packages (cluster, controlplane) need a control plane
		}
		if bytes.Contains(b, []byte("sandbox.Require(")) || bytes.Contains(b, []byte("sandbox.New(")) || bytes.Contains(b, []byte("Require(t)")) {
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			if !inSuite[filepath.ToSlash(rel)] {
				t.Errorf("%s uses the kernel but its package %s is not in the suite", p, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A -test.run naming a test that no longer exists would quietly run
// nothing: every test of the e2e subset is declared in tests/e2e.
func TestE2ESubsetNamesExistingTests(t *testing.T) {
	var src []byte
	files, _ := filepath.Glob(filepath.Join("..", "e2e", "*_test.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	for _, name := range e2eOnEveryKernel {
		if !bytes.Contains(src, []byte("func "+name+"(t *testing.T)")) {
			t.Errorf("%s is in the e2e subset but not a test of tests/e2e", name)
		}
	}
}
