package datapath_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/tests/sandbox"
)

func TestKernelMeetsMinimum(t *testing.T) {
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	if err := datapath.CheckKernel(); err != nil {
		t.Fatal(err)
	}
}

// Both builds of the programs pass the verifier: with bpf_set_retval, and
// with the call pruned as on kernels before 5.18.
func TestProgramsVerify(t *testing.T) {
	sandbox.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	for _, setRetval := range []bool{true, false} {
		name := map[bool]string{true: "with set_retval", false: "set_retval pruned"}[setRetval]
		t.Run(name, func(t *testing.T) {
			if setRetval && !datapath.ProbeFeatures().SetRetval {
				t.Skip("this kernel has no bpf_set_retval for cgroup programs")
			}
			m, err := lbmap.Create("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			progs, err := datapath.LoadSocketPrograms(m, datapath.Features{SetRetval: setRetval})
			if err != nil {
				t.Fatal(err)
			}
			if len(progs) != 11 { // 8 socket hooks, XDP, tc egress and ingress
				t.Errorf("%d programs loaded, want 11", len(progs))
			}
			for _, pname := range slices.Sorted(maps.Keys(progs)) {
				p := progs[pname]
				t.Cleanup(func() { p.Close() })
				if info, err := p.Info(); err == nil {
					insns, _ := info.VerifiedInstructions()
					t.Logf("%s: %d instructions verified", pname, insns)
				}
			}
		})
	}
}

// A restarted agent takes over the links it finds pinned, under today's
// names or the legacy ones (links/<program>), without detaching anything:
// the same link keeps its hook and only its program changes. Afterwards
// every hook has exactly one program and every pin today's name.
func TestRestartTakesOverPinnedLinks(t *testing.T) {
	cases := []struct {
		name string
		// between runs with the first agent's datapath still open
		between func(t *testing.T, sb *sandbox.Sandbox, d *datapath.Datapath)
	}{
		{"pins under today's names", func(*testing.T, *sandbox.Sandbox, *datapath.Datapath) {}},
		{"pins under the legacy names", renameToLegacy},
		{"both namings: an older agent ran after a newer one", addLegacyDuplicates},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox.New(t)
			cfg := datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup}
			first, err := datapath.Load(cfg, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			before := attachedLinks(t, sb.Cgroup)
			tc.between(t, sb, first)
			first.Close()

			second, err := datapath.Load(cfg, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { second.Close() })
			checkPinNames(t, sb.PinDir)
			after := attachedLinks(t, sb.Cgroup)
			for hook, b := range before {
				a := after[hook]
				if len(a) != 1 {
					t.Errorf("%s has %d programs attached, want 1", hook, len(a))
					continue
				}
				if a[0].link != b[0].link {
					t.Errorf("%s is attached through link %d, was %d: the link was replaced, not taken over", hook, a[0].link, b[0].link)
				}
				if want, _ := second.ProgramID(hook); a[0].prog != want {
					t.Errorf("%s runs program %d, want the restarted agent's %d", hook, a[0].prog, want)
				}
			}
		})
	}
}

// socklb cleanup detaches links pinned under either naming.
func TestCleanupRemovesBothNamings(t *testing.T) {
	sb := sandbox.New(t)
	d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	addLegacyDuplicates(t, sb, d)
	d.Close()
	if err := datapath.Cleanup(sb.PinDir, nil, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.PinDir); !os.IsNotExist(err) {
		t.Errorf("pin directory still there after cleanup: %v", err)
	}
	for hook, progs := range attachedLinks(t, sb.Cgroup) {
		if len(progs) != 0 {
			t.Errorf("%s still has %d programs attached after cleanup", hook, len(progs))
		}
	}
}

var hooks = map[string]ebpf.AttachType{
	"connect4": ebpf.AttachCGroupInet4Connect, "connect6": ebpf.AttachCGroupInet6Connect,
	"sendmsg4": ebpf.AttachCGroupUDP4Sendmsg, "sendmsg6": ebpf.AttachCGroupUDP6Sendmsg,
	"recvmsg4": ebpf.AttachCGroupUDP4Recvmsg, "recvmsg6": ebpf.AttachCGroupUDP6Recvmsg,
	"getpeername4": ebpf.AttachCgroupInet4GetPeername, "getpeername6": ebpf.AttachCgroupInet6GetPeername,
}

type attached struct {
	prog ebpf.ProgramID
	link link.ID
}

// attachedLinks is what the kernel says is attached to cgroup, per hook.
func attachedLinks(t *testing.T, cgroup string) map[string][]attached {
	t.Helper()
	dir, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	out := map[string][]attached{}
	for hook, at := range hooks {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: at})
		if err != nil {
			t.Fatalf("query %s programs of %s: %v", hook, cgroup, err)
		}
		out[hook] = []attached{}
		for _, p := range res.Programs {
			id, _ := p.LinkID()
			out[hook] = append(out[hook], attached{prog: p.ID, link: id})
		}
	}
	return out
}

func checkPinNames(t *testing.T, pinDir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for hook := range hooks {
		want = append(want, "cgroup-"+hook)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("links pinned as %v, want %v", got, want)
	}
}

// renameToLegacy moves every link pin to the name agents before the
// attach table used: links/<program>.
func renameToLegacy(t *testing.T, sb *sandbox.Sandbox, _ *datapath.Datapath) {
	t.Helper()
	for hook := range hooks {
		dir := filepath.Join(sb.PinDir, "links")
		if err := os.Rename(filepath.Join(dir, "cgroup-"+hook), filepath.Join(dir, hook)); err != nil {
			t.Fatal(err)
		}
	}
}

// addLegacyDuplicates attaches a second copy of every hook, pinned under
// the legacy name, as an older agent would after a newer one.
func addLegacyDuplicates(t *testing.T, sb *sandbox.Sandbox, d *datapath.Datapath) {
	t.Helper()
	progs, err := datapath.LoadSocketPrograms(d.Maps, datapath.ProbeFeatures())
	if err != nil {
		t.Fatal(err)
	}
	for hook, at := range hooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: sb.Cgroup, Attach: at, Program: progs[hook]})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Pin(filepath.Join(sb.PinDir, "links", hook)); err != nil {
			t.Fatal(err)
		}
		l.Close()
		progs[hook].Close()
	}
}
