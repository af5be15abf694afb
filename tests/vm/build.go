package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// suiteEntry is one kernel-facing test package of the matrix.
type suiteEntry struct {
	pkg string // import path relative to the module: "./pkg/datapath"
	// run and skip are the -test.run and -test.skip the guests use ("":
	// all, none): see suite.
	run, skip string
}

// suite lists every package whose tests use the kernel (the ones that call
// sandbox.Require or build a sandbox). All run whole but tests/e2e: under
// emulation its 19 tests take about 9 minutes per kernel (30 s on the
// host), so the guests run e2eOnEveryKernel, and the host runs it whole.
var suite = []suiteEntry{
	{pkg: "./pkg/lbmap"},
	{pkg: "./pkg/datapath"},
	{pkg: "./pkg/syncer"},
	{pkg: "./pkg/metrics"},
	{pkg: "./pkg/sockdestroy"},
	{pkg: "./tests/sandbox"},
	{pkg: "./tests/e2e", run: "^(" + strings.Join(e2eOnEveryKernel, "|") + ")$"},
	// Untagged, its test is the netns relay's; 20 concurrent 64 KiB
	// exchanges within 5 s assume native speed.
	{pkg: "./tests/controlplane", skip: "^TestServeInNetns$/^concurrent"},
}

// e2eOnEveryKernel are the end-to-end tests that touch a kernel feature of
// their own: each socket hook (connect, sendmsg/recvmsg, getpeername, v4,
// v6 and v4-mapped), the refusal errno (bpf_set_retval), the per-CPU
// counters, NodePort through XDP and tc, the maps' BTF as bpftool reads it,
// cleanup's detaching, and moving the hooks to another cgroup. About 4
// minutes per kernel under tcg. Left to the host: the agent's own logic on
// the same hooks (TestPorts, TestRemovedBackendGetsNoNewConnections,
// TestTerminatingFallback, TestMalformedObjectIsIsolated,
// TestFrontendTakeoverIsRefused, TestSecondAgentOnThePinsIsRefused), and
// the tests whose thresholds assume native speed (TestHardening fills
// 65,535 backends in 30 s; TestAgentRestartUnderLoad and
// TestAgentRestartOverLegacyPins want 100 connects across a restart).
var e2eOnEveryKernel = []string{
	"TestTCPReachesEveryBackend",
	"TestUDP",
	"TestIPv6",
	"TestIPv4MappedFromIPv6Socket",
	"TestNoEndpointsRefuses",
	"TestCountersCountTranslatedAndRefused",
	"TestNodePortFromOutside",
	"TestBpftoolShowsFieldNames",
	"TestCleanupRemovesOnlyWhatSocklbMade",
	"TestSocketHooksSwitchToTheInternalScope",
	// Features of their own: the netns cookie and the affinity LRU, the
	// fail-fast LPM trie, bpf_sock_destroy with its socket iterator (6.5),
	// the ring buffer and the task helpers of the monitor (6.1), Maglev's
	// hash of maps.
	"TestSessionAffinity",
	"TestFailFast",
	"TestUDPSocketToRemovedBackend",
	"TestMonitor",
	"TestMaglevFromOutside",
}

// selectSuite returns the entries of suite named in pkgs, or all of them.
func selectSuite(pkgs []string) ([]suiteEntry, error) {
	if len(pkgs) == 0 {
		return slices.Clone(suite), nil
	}
	var out []suiteEntry
	for _, p := range pkgs {
		found := false
		for _, e := range suite {
			if e.pkg == p || strings.TrimPrefix(e.pkg, "./") == p {
				out, found = append(out, e), true
			}
		}
		if !found {
			return nil, fmt.Errorf("package %s is not in the suite", p)
		}
	}
	return out, nil
}

// helperPkgs are the commands the tests exec (sandbox.Binaries), built once
// here so that the guests, which have no Go toolchain, find them through
// sandbox.PrebuiltEnv.
var helperPkgs = []string{"./cmd/socklb", "./tests/cmd/namesrv", "./tests/cmd/sockprobe"}

// builtTest is a static go test -c binary of one suite entry.
type builtTest struct {
	suiteEntry
	name string // "pkg_datapath": the binary's and the results' name
	path string
}

func testName(pkg string) string {
	return strings.NewReplacer("/", "_", ".", "").Replace(strings.TrimPrefix(pkg, "./"))
}

// buildAll builds the suite's test binaries and the helper commands into
// dir, static (CGO_ENABLED=0) so that they run in a guest with no libc.
func buildAll(dir string, entries []suiteEntry) ([]builtTest, []string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "helpers"), 0o755); err != nil {
		return nil, nil, err
	}
	var tests []builtTest
	for _, e := range entries {
		t := builtTest{suiteEntry: e, name: testName(e.pkg)}
		t.path = filepath.Join(dir, t.name+".test")
		if err := goCommand("test", "-c", "-o", t.path, e.pkg); err != nil {
			return nil, nil, err
		}
		tests = append(tests, t)
	}
	var helpers []string
	for _, p := range helperPkgs {
		out := filepath.Join(dir, "helpers", filepath.Base(p))
		if err := goCommand("build", "-ldflags", "-s -w", "-o", out, p); err != nil {
			return nil, nil, err
		}
		helpers = append(helpers, out)
	}
	return tests, helpers, nil
}

func goCommand(args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// suiteFile is the guest's vm/suite, a line per binary:
// "<name> <-test.run> <-test.skip> <-test.timeout>", "-" for none.
func suiteFile(tests []builtTest, timeout string) []byte {
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var b strings.Builder
	for _, t := range tests {
		fmt.Fprintf(&b, "%s %s %s %s\n", t.name, orDash(t.run), orDash(t.skip), timeout)
	}
	return []byte(b.String())
}
