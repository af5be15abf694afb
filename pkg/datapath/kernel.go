package datapath

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// MinKernel is the oldest Linux socklb runs on: the getpeername hooks and
// the info of cgroup bpf_links (which takeOver reads to find a pinned link's
// cgroup) arrived in 5.8, XDP bpf_links in 5.9 and bpf_redirect_neigh, with
// which tc sends what XDP could not forward, in 5.10 (the oldest kernel of
// Debian's and the long-term kernels socklb is tested on). With it go the
// fallbacks for older kernels (batch map operations are 5.6).
const MinKernel = "5.10"

// requirement is one thing the datapath cannot do without.
type requirement struct {
	what  string
	since string // the Linux version it arrived in
	probe func() error
}

var requirements = []requirement{
	{"cgroup sock_addr programs", "4.17", func() error { return features.HaveProgramType(ebpf.CGroupSockAddr) }},
	{"LRU hash maps", "4.10", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"per-CPU array maps", "4.6", func() error { return features.HaveMapType(ebpf.PerCPUArray) }},
	{"bpf_link for cgroups", "5.7", probeCgroupLink},
	{"the getpeername hooks", "5.8", probeGetpeername},
	{"XDP programs", "4.8", func() error { return features.HaveProgramType(ebpf.XDP) }},
	{"LPM trie maps", "4.11", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"bpf_fib_lookup in XDP", "4.18", func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnFibLookup) }},
	{"bpf_redirect_neigh in tc", "5.10", func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnRedirectNeigh) }},
}

// CheckKernel refuses a kernel that lacks something the datapath needs, in
// one line naming what is missing and the running kernel.
func CheckKernel() error {
	var uts unix.Utsname
	release := "unknown"
	if err := unix.Uname(&uts); err == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	return checkKernel(requirements, release)
}

func checkKernel(reqs []requirement, release string) error {
	for _, r := range reqs {
		err := r.probe()
		if err == nil {
			continue
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("socklb needs Linux %s or newer: this kernel (%s) lacks %s (Linux %s)", MinKernel, release, r.what, r.since)
		}
		return fmt.Errorf("check the kernel for %s: %w", r.what, err)
	}
	return nil
}

// probeCgroupLink asks for a cgroup link with invalid descriptors: a kernel
// that knows BPF_LINK_CREATE for cgroups says EBADF, an older one EINVAL.
func probeCgroupLink() error {
	attr := struct{ progFd, targetFd, attachType, flags uint32 }{
		progFd:     ^uint32(0),
		targetFd:   ^uint32(0),
		attachType: uint32(ebpf.AttachCGroupInet4Connect),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	switch errno {
	case unix.EBADF:
		return nil
	case unix.EINVAL:
		return ebpf.ErrNotSupported
	}
	return fmt.Errorf("probe BPF_LINK_CREATE: %w", errno)
}

// probeGetpeername loads the smallest getpeername4 program.
func probeGetpeername() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupSockAddr,
		AttachType:   ebpf.AttachCgroupInet4GetPeername,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		License:      "GPL",
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG) {
		return ebpf.ErrNotSupported
	}
	if err != nil {
		return fmt.Errorf("probe the getpeername4 hook: %w", err)
	}
	return prog.Close()
}
