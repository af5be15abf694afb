package datapath

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
)

// Features is what the running kernel offers beyond the minimum (see
// CheckKernel): socklb runs without each, doing what optionalFeatures say.
type Features struct {
	SetRetval   bool // connect() can be refused with ECONNREFUSED rather than EPERM
	TCX         bool // tc programs attach through tcx links
	SockDestroy bool // the bpf_sock_destroy kfunc exists
	// SockStorage: the socket hooks may keep per-socket state in
	// socket-local storage (BPF_MAP_TYPE_SK_STORAGE) instead of the LRU maps.
	SockStorage bool
	// CurrentTask: the socket hooks may read the calling process's pid and
	// command, which socklb monitor shows.
	CurrentTask bool
}

// optionalFeature is a kernel feature socklb can do without.
type optionalFeature struct {
	name    string
	since   string
	instead string // what socklb does without it
	probe   func() error
	set     func(*Features)
}

var optionalFeatures = []optionalFeature{
	{"bpf_set_retval", "5.18", "a connect() to a Service without endpoints fails with EPERM instead of ECONNREFUSED",
		func() error { return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnSetRetval) },
		func(f *Features) { f.SetRetval = true }},
	{"tcx links", "6.6", "the tc programs attach through a clsact qdisc and a direct-action cls_bpf filter",
		probeTCX, func(f *Features) { f.TCX = true }},
	{"the bpf_sock_destroy kfunc", "6.5", "connected UDP sockets sent to a backend that went away are not destroyed: they keep sending to it until the application reconnects",
		probeSockDestroy, func(f *Features) { f.SockDestroy = true }},
	{"socket-local storage in socket hooks", "5.2", "per-socket state (reverse NAT, an unconnected UDP socket's backend) lives in the LRU maps lb_sock_rev_nat and lb_sock_backend, which other sockets can evict",
		probeSockStorage, func(f *Features) { f.SockStorage = true }},
	{"bpf_get_current_pid_tgid and bpf_get_current_comm in socket hooks", "5.10", "socklb monitor shows pid 0 and no command",
		probeCurrentTask, func(f *Features) { f.CurrentTask = true }},
}

func probeSockStorage() error {
	if err := features.HaveMapType(ebpf.SkStorage); err != nil {
		return err
	}
	return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnSkStorageGet)
}

func probeCurrentTask() error {
	if err := features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentPidTgid); err != nil {
		return err
	}
	return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentComm)
}

// ProbeFeatures asks the kernel which optional features it has.
func ProbeFeatures() Features {
	f, _ := probeOptional(optionalFeatures)
	return f
}

// probeOptional probes feats and returns those missing (or whose probe
// failed, which socklb treats alike).
func probeOptional(feats []optionalFeature) (Features, []optionalFeature) {
	var f Features
	var missing []optionalFeature
	for _, o := range feats {
		if o.probe() == nil {
			o.set(&f)
		} else {
			missing = append(missing, o)
		}
	}
	return f, missing
}

// ReportFeatures probes the optional features and logs, once at info
// level, each one missing with what socklb does instead.
func ReportFeatures(log *zap.Logger) Features {
	f, missing := probeOptional(optionalFeatures)
	for _, o := range missing {
		log.Info("kernel feature missing; doing without it", zap.String(logfield.Feature, o.name),
			zap.String(logfield.Since, "Linux "+o.since), zap.String(logfield.Instead, o.instead))
	}
	log.Info("kernel features", zap.Bool(logfield.SetRetval, f.SetRetval), zap.Bool(logfield.TCX, f.TCX),
		zap.Bool(logfield.SockDestroy, f.SockDestroy), zap.Bool(logfield.SockStorage, f.SockStorage),
		zap.Bool(logfield.CurrentTask, f.CurrentTask))
	return f
}

// probeTCX asks for a tcx link on interface index 0 with a trivial
// program: a kernel with tcx says ENODEV, which cilium/ebpf then checks
// against its own probe, and an older one lacks the attach type.
func probeTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return fmt.Errorf("probe tcx: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 0, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	return nil
}

// probeSockDestroy looks for the kfunc in the kernel's BTF.
func probeSockDestroy() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("read the kernel's BTF: %w", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName("bpf_sock_destroy", &fn); err != nil {
		return ebpf.ErrNotSupported
	}
	return nil
}

// Known arrival versions, for the message naming what is missing.
var (
	programTypeNames = map[ebpf.ProgramType]requirement{
		ebpf.CGroupSockAddr: {what: "cgroup_sock_addr programs", since: "4.17"},
		ebpf.XDP:            {what: "XDP programs", since: "4.8"},
		ebpf.SchedCLS:       {what: "sched_cls programs", since: "4.1"},
	}
	mapTypeNames = map[ebpf.MapType]requirement{
		ebpf.Hash:        {what: "hash maps", since: "3.19"},
		ebpf.Array:       {what: "array maps", since: "3.19"},
		ebpf.PerCPUArray: {what: "per-CPU array maps", since: "4.6"},
		ebpf.LRUHash:     {what: "LRU hash maps", since: "4.10"},
		ebpf.LPMTrie:     {what: "LPM trie maps", since: "4.11"},
	}
	attachTypeSince = map[ebpf.AttachType]string{
		ebpf.AttachCGroupInet4Connect: "4.17", ebpf.AttachCGroupInet6Connect: "4.17",
		ebpf.AttachCGroupUDP4Sendmsg: "4.18", ebpf.AttachCGroupUDP6Sendmsg: "4.18",
		ebpf.AttachCGroupUDP4Recvmsg: "5.2", ebpf.AttachCGroupUDP6Recvmsg: "5.2",
		ebpf.AttachCgroupInet4GetPeername: "5.8", ebpf.AttachCgroupInet6GetPeername: "5.8",
	}
	helperSince = map[asm.BuiltinFunc]string{asm.FnFibLookup: "4.18", asm.FnRedirectNeigh: "5.10"}
)

// optionalHelpers are called only where ProbeFeatures found them.
var optionalHelpers = []asm.BuiltinFunc{asm.FnSetRetval}

// derivedRequirements are what socklb's embedded objects use, read from
// them: each program type, each cgroup hook, each map type, and each
// helper a program calls in its program type; the optional ones left out.
func derivedRequirements() ([]requirement, error) {
	var specs []*ebpf.CollectionSpec
	for _, load := range []func() (*ebpf.CollectionSpec, error){loadSock, loadNodeport, lbmap.LoadSpec} {
		spec, err := load()
		if err != nil {
			return nil, fmt.Errorf("read the embedded objects: %w", err)
		}
		specs = append(specs, spec)
	}
	progs := programSpecs(specs)
	var reqs []requirement
	reqs = append(reqs, programTypeRequirements(progs)...)
	reqs = append(reqs, attachRequirements(progs)...)
	reqs = append(reqs, mapTypeRequirements(specs)...)
	reqs = append(reqs, helperRequirements(progs)...)
	return reqs, nil
}

// programSpecs are the programs of specs, sorted by name.
func programSpecs(specs []*ebpf.CollectionSpec) []*ebpf.ProgramSpec {
	var out []*ebpf.ProgramSpec
	for _, s := range specs {
		for _, p := range s.Programs {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *ebpf.ProgramSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func programTypeRequirements(progs []*ebpf.ProgramSpec) []requirement {
	var reqs []requirement
	seen := map[ebpf.ProgramType]bool{}
	for _, p := range progs {
		if seen[p.Type] {
			continue
		}
		seen[p.Type] = true
		r, ok := programTypeNames[p.Type]
		if !ok {
			r.what = p.Type.String() + " programs"
		}
		pt := p.Type
		r.probe = func() error { return features.HaveProgramType(pt) }
		reqs = append(reqs, r)
	}
	return reqs
}

// attachRequirements are the cgroup hooks, which the kernel checks when a
// program is loaded for one.
func attachRequirements(progs []*ebpf.ProgramSpec) []requirement {
	var reqs []requirement
	for _, p := range progs {
		if p.Type != ebpf.CGroupSockAddr {
			continue
		}
		at := p.AttachType
		reqs = append(reqs, requirement{what: "the " + p.SectionName + " hook", since: attachTypeSince[at],
			probe: func() error { return probeSockAddrAttach(at) }})
	}
	return reqs
}

func mapTypeRequirements(specs []*ebpf.CollectionSpec) []requirement {
	var types []ebpf.MapType
	for _, s := range specs {
		for _, m := range s.Maps {
			if !slices.Contains(types, m.Type) {
				types = append(types, m.Type)
			}
		}
	}
	slices.Sort(types)
	reqs := make([]requirement, 0, len(types))
	for _, mt := range types {
		r, ok := mapTypeNames[mt]
		if !ok {
			r.what = mt.String() + " maps"
		}
		r.probe = func() error { return features.HaveMapType(mt) }
		reqs = append(reqs, r)
	}
	return reqs
}

func helperRequirements(progs []*ebpf.ProgramSpec) []requirement {
	type use struct {
		pt ebpf.ProgramType
		fn asm.BuiltinFunc
	}
	var reqs []requirement
	seen := map[use]bool{}
	for _, p := range progs {
		for _, ins := range p.Instructions {
			if !ins.IsBuiltinCall() {
				continue
			}
			u := use{p.Type, asm.BuiltinFunc(ins.Constant)}
			if seen[u] || slices.Contains(optionalHelpers, u.fn) {
				continue
			}
			seen[u] = true
			what := helperName(u.fn) + " in " + programTypeName(u.pt)
			reqs = append(reqs, requirement{what: what, since: helperSince[u.fn],
				probe: func() error { return features.HaveProgramHelper(u.pt, u.fn) }})
		}
	}
	return reqs
}

func programTypeName(pt ebpf.ProgramType) string {
	if r, ok := programTypeNames[pt]; ok {
		return r.what
	}
	return pt.String() + " programs"
}

// helperName is the C name of a helper: FnMapLookupElem is
// bpf_map_lookup_elem.
func helperName(fn asm.BuiltinFunc) string {
	name := strings.TrimPrefix(fn.String(), "Fn")
	var b strings.Builder
	b.WriteString("bpf")
	for _, r := range name {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// probeSockAddrAttach loads the smallest program for a cgroup sock_addr
// hook: the kernel refuses an attach type it does not know.
func probeSockAddrAttach(at ebpf.AttachType) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupSockAddr,
		AttachType:   at,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		License:      "GPL",
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG) {
		return ebpf.ErrNotSupported
	}
	if err != nil {
		return fmt.Errorf("probe the %s hook: %w", at, err)
	}
	return prog.Close()
}
