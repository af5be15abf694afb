package datapath

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

func TestHelperName(t *testing.T) {
	for fn, want := range map[asm.BuiltinFunc]string{
		asm.FnMapLookupElem: "bpf_map_lookup_elem",
		asm.FnL4CsumReplace: "bpf_l4_csum_replace",
		asm.FnGetPrandomU32: "bpf_get_prandom_u32",
		asm.FnRedirectNeigh: "bpf_redirect_neigh",
		asm.FnSetRetval:     "bpf_set_retval",
	} {
		if got := helperName(fn); got != want {
			t.Errorf("helperName(%v) = %q, want %q", fn, got, want)
		}
	}
}

// What the kernel check probes is read from the embedded objects: each
// hook, map type and helper they use is there, and the optional helper is
// not.
func TestDerivedRequirements(t *testing.T) {
	reqs, err := derivedRequirements()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range reqs {
		names = append(names, r.what)
	}
	for _, want := range []string{
		"cgroup_sock_addr programs", "XDP programs", "sched_cls programs",
		"the cgroup/connect4 hook", "the cgroup/sendmsg6 hook", "the cgroup/recvmsg4 hook", "the cgroup/getpeername6 hook",
		"hash maps", "LRU hash maps", "per-CPU array maps", "LPM trie maps",
		"bpf_get_socket_cookie in cgroup_sock_addr programs",
		"bpf_fib_lookup in XDP programs",
		"bpf_redirect_neigh in sched_cls programs",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("the kernel check does not probe %s; it probes %q", want, names)
		}
	}
	for _, name := range names {
		if name == "bpf_set_retval in cgroup_sock_addr programs" {
			t.Errorf("the optional bpf_set_retval is a requirement")
		}
	}
}

func TestCheckKernelWithoutAVersion(t *testing.T) {
	missing := func() error { return ebpf.ErrNotSupported }
	err := checkKernel([]requirement{{"bpf_csum_diff in sched_cls programs", "", missing}}, "5.4.0-test")
	want := "socklb needs Linux 5.10 or newer: this kernel (5.4.0-test) lacks bpf_csum_diff in sched_cls programs"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

// Missing optional features are returned to be reported; a probe that
// cannot run counts as missing.
func TestProbeOptional(t *testing.T) {
	have := func() error { return nil }
	lacks := func() error { return ebpf.ErrNotSupported }
	broken := func() error { return errors.New("permission denied") }
	feats := []optionalFeature{
		{"a", "5.18", "instead a", have, func(f *Features) { f.SetRetval = true }},
		{"b", "6.6", "instead b", lacks, func(f *Features) { f.TCX = true }},
		{"c", "6.5", "instead c", broken, func(f *Features) { f.SockDestroy = true }},
	}
	got, missing := probeOptional(feats)
	if want := (Features{SetRetval: true}); got != want {
		t.Errorf("features %+v, want %+v", got, want)
	}
	var names []string
	for _, m := range missing {
		names = append(names, m.name)
	}
	if !slices.Equal(names, []string{"b", "c"}) {
		t.Errorf("missing %v, want [b c]", names)
	}
}
