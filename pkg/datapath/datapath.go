package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/lbmap"
)

// linksDir holds one pinned link per program, named after the program. A
// pinned link keeps its program attached with no process running, so the
// datapath outlives the agent, and a restarted agent swaps in its programs
// with one atomic update instead of a detach/attach gap.
const linksDir = "links"

// Config says where the datapath lives on this node.
type Config struct {
	PinDir string // on a bpffs, e.g. /sys/fs/bpf/socklb
	Cgroup string // the cgroup v2 directory whose sockets are balanced
}

// Datapath is the loaded programs and maps, attached to a cgroup.
type Datapath struct {
	Maps  *lbmap.Maps
	objs  lbmap.SockLBObjects
	links []link.Link
}

// Features is what the running kernel offers the programs.
type Features struct {
	SetRetval bool // connect() can be refused with ECONNREFUSED rather than EPERM
}

// ProbeFeatures asks the kernel what it supports.
func ProbeFeatures() Features {
	return Features{
		SetRetval: features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnSetRetval) == nil,
	}
}

// Load loads the socket programs, reusing the maps already pinned under
// cfg.PinDir (their contents are never flushed), and attaches every program to
// cfg.Cgroup through a pinned link.
func Load(cfg Config, log *zap.Logger) (*Datapath, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the memlock limit: %w", err)
	}
	if err := checkCgroup2(cfg.Cgroup); err != nil {
		return nil, err
	}
	if err := ensurePinDir(cfg.PinDir); err != nil {
		return nil, err
	}

	spec, err := lbmap.LoadSockLB()
	if err != nil {
		return nil, fmt.Errorf("read the embedded BPF object: %w", err)
	}
	feats := ProbeFeatures()
	var haveSetRetval uint32
	if feats.SetRetval {
		haveSetRetval = 1
	}
	if err := spec.Variables[lbmap.SockLBVarCfgHaveSetRetval].Set(haveSetRetval); err != nil {
		return nil, fmt.Errorf("configure the BPF object: %w", err)
	}
	log.Info("kernel features", zap.Bool("set_retval", feats.SetRetval))

	d := &Datapath{}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}}
	if err := spec.LoadAndAssign(&d.objs, opts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load BPF programs: a map pinned under %s has another layout than this socklb's (run `socklb cleanup` to start afresh): %w", cfg.PinDir, err)
		}
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load BPF programs: the verifier refused them: %+v", verr)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	d.Maps = lbmap.FromObjects(&d.objs.SockLBMaps)

	if err := d.attach(cfg, spec, log); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Datapath) programs() map[string]*ebpf.Program {
	p := &d.objs.SockLBPrograms
	return map[string]*ebpf.Program{
		lbmap.SockLBProgConnect4:     p.Connect4,
		lbmap.SockLBProgConnect6:     p.Connect6,
		lbmap.SockLBProgSendmsg4:     p.Sendmsg4,
		lbmap.SockLBProgSendmsg6:     p.Sendmsg6,
		lbmap.SockLBProgRecvmsg4:     p.Recvmsg4,
		lbmap.SockLBProgRecvmsg6:     p.Recvmsg6,
		lbmap.SockLBProgGetpeername4: p.Getpeername4,
		lbmap.SockLBProgGetpeername6: p.Getpeername6,
	}
}

func (d *Datapath) attach(cfg Config, spec *ebpf.CollectionSpec, log *zap.Logger) error {
	wantCgroup, err := cgroupID(cfg.Cgroup)
	if err != nil {
		return err
	}
	progs := d.programs()
	names := make([]string, 0, len(progs))
	for name := range progs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		prog := progs[name]
		pin := filepath.Join(cfg.PinDir, linksDir, name)
		l, err := reuseLink(pin, wantCgroup, prog)
		if err != nil {
			return err
		}
		if l != nil {
			log.Info("program replaced in pinned link", zap.String("program", name), zap.String("pin", pin))
		} else {
			l, err = link.AttachCgroup(link.CgroupOptions{
				Path:    cfg.Cgroup,
				Attach:  spec.Programs[name].AttachType,
				Program: prog,
			})
			if err != nil {
				return fmt.Errorf("attach %s to cgroup %s: %w", name, cfg.Cgroup, err)
			}
			if err := l.Pin(pin); err != nil {
				l.Close()
				return fmt.Errorf("pin link of %s at %s: %w", name, pin, err)
			}
			log.Info("program attached", zap.String("program", name), zap.String("cgroup", cfg.Cgroup), zap.String("pin", pin))
		}
		d.links = append(d.links, l)
	}
	return nil
}

// reuseLink swaps prog into the link pinned at pin when that link is attached
// to the wanted cgroup. A link pinned for another cgroup is detached, since
// the operator moved the agent. It returns nil when there is no link to reuse.
func reuseLink(pin string, wantCgroup uint64, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	info, err := l.Info()
	if err == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == wantCgroup {
		if err := l.Update(prog); err != nil {
			l.Close()
			return nil, fmt.Errorf("replace the program of pinned link %s: %w", pin, err)
		}
		return l, nil
	}
	if err := l.Unpin(); err != nil {
		l.Close()
		return nil, fmt.Errorf("detach stale link %s: %w", pin, err)
	}
	l.Close()
	return nil, nil
}

// Close releases the agent's handles. Pinned maps and links stay, and with
// them the datapath.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Cleanup detaches every program socklb attached from pinDir and removes its
// pins, maps included. It is idempotent.
func Cleanup(pinDir string, log *zap.Logger) error {
	var errs []error
	links, _ := filepath.Glob(filepath.Join(pinDir, linksDir, "*"))
	for _, pin := range links {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", pin, err))
			continue
		}
		// Removing the last reference to a cgroup link detaches it.
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", pin, err))
		}
		l.Close()
		log.Info("program detached", zap.String("pin", pin))
	}
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.Join(errs...)
	}
	if err != nil {
		return fmt.Errorf("read pin directory %s: %w", pinDir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(pinDir, e.Name())
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			continue
		}
		log.Info("map unpinned", zap.String("pin", path))
	}
	for _, dir := range []string{filepath.Join(pinDir, linksDir), pinDir} {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
