package datapath

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/lbmap"
)

// Config says where the datapath lives on this node.
type Config struct {
	PinDir string // on a bpffs, e.g. /sys/fs/bpf/socklb
	Cgroup string // the cgroup v2 directory whose sockets are balanced
	// Devices are the node's devices that outside traffic arrives on: the
	// north-south programs attach to each (XDP in, tc out). Nil: not known
	// yet (a cluster's Node names them later, see AttachDevices), and what
	// an earlier agent attached stays; empty: no north-south datapath.
	Devices []string
	XDPMode XDPMode // native (default) or generic
	// MapSizes overrides map capacities when the maps are created.
	MapSizes lbmap.Sizes
	// NoSockStorage keeps per-socket state in the LRU maps even where the
	// kernel has socket-local storage (to compare the two).
	NoSockStorage bool
}

// Datapath is the maps, the programs using them and the links attaching
// those programs.
type Datapath struct {
	Maps   *lbmap.Maps
	lock   *PinDirLock
	pinDir string
	log    *zap.Logger
	progs  programs
	links  []pinnedLink
	// mapIDs is the kernel id of each map the programs use, by pin name:
	// RepairPins compares the pins against them.
	mapIDs map[string]ebpf.MapID
}

// Load brings up the datapath in three steps: the maps, created or reused
// from their pins under cfg.PinDir (contents are never flushed); the
// programs, loaded against those maps; and the attachments of Attachments,
// each through a pinned link.
func Load(cfg Config, log *zap.Logger) (*Datapath, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the memlock limit: %w", err)
	}
	if err := CheckKernel(); err != nil {
		return nil, err
	}
	if err := checkCgroup2(cfg.Cgroup); err != nil {
		return nil, err
	}
	if err := ensurePinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	lock, err := LockPinDir(cfg.PinDir)
	if err != nil {
		return nil, err
	}
	m, err := loadMaps(cfg.PinDir, cfg.MapSizes)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	d := &Datapath{Maps: m, lock: lock}
	if d.mapIDs, err = mapIDs(m); err != nil {
		d.Close()
		return nil, err
	}
	feats := ReportFeatures(log)
	feats.SockStorage = feats.SockStorage && !cfg.NoSockStorage
	if d.progs, err = loadPrograms(m, feats); err != nil {
		d.Close()
		return nil, err
	}
	table := Attachments(Config{Cgroup: cfg.Cgroup})
	if d.links, err = attachAll(table, d.progs, cfg.PinDir, log); err != nil {
		d.Close()
		return nil, err
	}
	if err := pruneStaleLinks(table, cfg.PinDir, []AttachKind{AttachCgroup}, log); err != nil {
		d.Close()
		return nil, err
	}
	d.pinDir, d.log = cfg.PinDir, log
	if cfg.Devices != nil {
		if err := d.AttachDevices(cfg.Devices, cfg.XDPMode); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// loadMaps creates the maps pinned under pinDir, or reuses those pinned.
func loadMaps(pinDir string, sizes lbmap.Sizes) (*lbmap.Maps, error) {
	m, err := lbmap.CreateSized(pinDir, sizes)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("load BPF maps: a map pinned under %s has another layout or size than this socklb's (run `socklb cleanup` to start afresh): %w", pinDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load BPF maps: %w", err)
	}
	return m, nil
}

// Close releases the agent's handles. Pinned maps and links stay, and with
// them the datapath.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.progs.close())
	if d.Maps != nil {
		errs = append(errs, d.Maps.Close())
	}
	errs = append(errs, d.lock.Unlock())
	return errors.Join(errs...)
}

// AttachDevices makes the north-south programs run on exactly devices:
// those already attached are taken over in place, new ones attached, and a
// device no longer listed is detached.
func (d *Datapath) AttachDevices(devices []string, mode XDPMode) error {
	table := Attachments(Config{Devices: devices, XDPMode: mode})
	table = slices.DeleteFunc(table, func(a Attachment) bool { return a.Kind == AttachCgroup })
	links, err := attachAll(table, d.progs, d.pinDir, d.log)
	if err != nil {
		return err
	}
	d.holdLinks(links)
	err = pruneStaleLinks(table, d.pinDir, []AttachKind{AttachXDP, AttachTCEgress, AttachTCIngress}, d.log)
	d.releaseStale(table)
	return err
}

// holdLinks keeps links, closing the handles held before under the same
// pins: a link taken over again is opened again.
func (d *Datapath) holdLinks(links []pinnedLink) {
	fresh := map[string]bool{}
	for _, l := range links {
		fresh[l.pin] = true
	}
	d.links = slices.DeleteFunc(d.links, func(l pinnedLink) bool {
		if fresh[l.pin] {
			l.Close()
			return true
		}
		return false
	})
	d.links = append(d.links, links...)
}

// releaseStale closes the handles of device links table no longer has,
// which pruneStaleLinks detached: the handle alone would keep the program
// attached until the agent exits.
func (d *Datapath) releaseStale(table []Attachment) {
	want := map[string]bool{}
	for _, a := range table {
		want[filepath.Join(d.pinDir, linksDir, a.pinName())] = true
	}
	d.links = slices.DeleteFunc(d.links, func(l pinnedLink) bool {
		if want[l.pin] || strings.HasPrefix(filepath.Base(l.pin), AttachCgroup.String()+"-") {
			return false
		}
		l.Close()
		return true
	})
}
