package datapath

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
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
	since string // the Linux version it arrived in, "" when not recorded
	probe func() error
}

// linkRequirements are what the embedded objects do not show: how socklb
// attaches them.
var linkRequirements = []requirement{
	{"bpf_link for cgroups", "5.7", probeCgroupLink},
}

// CheckKernel refuses a kernel that lacks something the datapath needs, in
// one line naming what is missing and the running kernel.
// What is checked is read from the embedded objects (derivedRequirements)
// and completed by linkRequirements.
func CheckKernel() error {
	var uts unix.Utsname
	release := "unknown"
	if err := unix.Uname(&uts); err == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	reqs, err := derivedRequirements()
	if err != nil {
		return err
	}
	return checkKernel(append(reqs, linkRequirements...), release)
}

func checkKernel(reqs []requirement, release string) error {
	for _, r := range reqs {
		err := r.probe()
		if err == nil {
			continue
		}
		if errors.Is(err, ebpf.ErrNotSupported) && r.since == "" {
			return fmt.Errorf("socklb needs Linux %s or newer: this kernel (%s) lacks %s", MinKernel, release, r.what)
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
