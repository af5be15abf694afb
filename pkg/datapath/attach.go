package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/socklb/socklb/pkg/logfield"
	"go.uber.org/zap"
)

// linksDir holds one pinned link per attachment. A pinned link keeps its
// program attached with no process running, so the datapath outlives the
// agent, and a restarted agent swaps in its programs with one atomic update
// instead of a detach/attach gap.
const linksDir = "links"

// AttachKind is the kind of thing a program attaches to.
type AttachKind uint8

const (
	// AttachCgroup attaches to a cgroup v2 directory: the socket hooks.
	AttachCgroup AttachKind = iota + 1
	// AttachXDP attaches to a device's XDP hook: north-south ingress.
	AttachXDP
	// AttachTCEgress attaches to a device's tc egress: replies of local
	// backends to outside clients. Through a tcx link where the kernel has
	// tcx (6.6), else a clsact qdisc and a direct-action filter.
	AttachTCEgress
	// AttachTCIngress attaches to a device's tc ingress, the same way: it
	// sends what XDP translated but could not forward for want of a
	// neighbour entry.
	AttachTCIngress
)

func (k AttachKind) String() string {
	switch k {
	case AttachCgroup:
		return "cgroup"
	case AttachXDP:
		return "xdp"
	case AttachTCEgress:
		return "tc-egress"
	case AttachTCIngress:
		return "tc-ingress"
	}
	return fmt.Sprintf("attach-kind(%d)", uint8(k))
}

// Attachment is one row of the attach table: which program goes where.
type Attachment struct {
	Program string // the program's name in its object, e.g. "connect4"
	Kind    AttachKind
	Target  string // AttachCgroup: the cgroup directory; the others: a device name
	XDPMode XDPMode
}

// XDPMode is how an XDP program runs on a device.
type XDPMode string

const (
	// XDPNative runs in the driver, before any socket buffer exists; a
	// driver without XDP support refuses it and generic is used instead.
	XDPNative XDPMode = "native"
	// XDPGeneric runs on socket buffers: any device, at a cost.
	XDPGeneric XDPMode = "generic"
)

// ParseXDPMode checks an --xdp-mode value.
func ParseXDPMode(s string) (XDPMode, error) {
	switch m := XDPMode(s); m {
	case XDPNative, XDPGeneric:
		return m, nil
	}
	return "", fmt.Errorf("unknown XDP mode %q: want native or generic", s)
}

// pinName is the link's file under links/, named for what it attaches to:
// "cgroup-connect4" (one cgroup per node, so the hook names it), and later
// "xdp-<ifname>" (one XDP program, one link per device).
func (a Attachment) pinName() string {
	if a.Kind == AttachCgroup {
		return a.Kind.String() + "-" + a.Program
	}
	return a.Kind.String() + "-" + a.Target
}

// legacyPinName is the name socklb pinned the link under before the names
// said their target (the bare program name), "" for kinds that had none.
func (a Attachment) legacyPinName() string {
	if a.Kind == AttachCgroup {
		return a.Program
	}
	return ""
}

// socketPrograms are the socket hooks, each attached to the cgroup.
var socketPrograms = []string{
	sockProgConnect4, sockProgConnect6,
	sockProgSendmsg4, sockProgSendmsg6,
	sockProgRecvmsg4, sockProgRecvmsg6,
	sockProgGetpeername4, sockProgGetpeername6,
}

// Attachments is the attach table of cfg: every socket hook on cfg.Cgroup,
// and the north-south programs on each of cfg.Devices.
func Attachments(cfg Config) []Attachment {
	var table []Attachment
	for _, prog := range socketPrograms {
		table = append(table, Attachment{Program: prog, Kind: AttachCgroup, Target: cfg.Cgroup})
	}
	mode := cfg.XDPMode
	if mode == "" {
		mode = XDPNative
	}
	for _, dev := range cfg.Devices {
		table = append(table,
			Attachment{Program: nodeportProgNodeportXdp, Kind: AttachXDP, Target: dev, XDPMode: mode},
			Attachment{Program: nodeportProgNodeportTcEgress, Kind: AttachTCEgress, Target: dev},
			Attachment{Program: nodeportProgNodeportTcIngress, Kind: AttachTCIngress, Target: dev})
	}
	return table
}

// pinnedLink is a link the agent holds, with the pin it holds it under:
// RepairPins checks the pin, AttachDevices drops the link once its pin is
// pruned (the agent's handle alone would keep the program attached).
type pinnedLink struct {
	link.Link
	pin string
}

// attachAll attaches every row of table through a pinned link. On failure
// the links made so far stay pinned, and so attached: a half-updated
// datapath still serves, and the next start completes it.
func attachAll(table []Attachment, progs programs, pinDir string, log *zap.Logger) ([]pinnedLink, error) {
	var links []pinnedLink
	for _, a := range table {
		p, ok := progs[a.Program]
		if !ok {
			err := fmt.Errorf("attach %s to %s %s: no such program", a.Program, a.Kind, a.Target)
			return nil, errors.Join(err, closeLinks(links))
		}
		l, err := attachOne(a, p, pinDir, log)
		if err != nil {
			return nil, errors.Join(err, closeLinks(links))
		}
		if l != nil { // a clsact filter has no link
			links = append(links, pinnedLink{Link: l, pin: filepath.Join(pinDir, linksDir, a.pinName())})
		}
	}
	return links, nil
}

func closeLinks(links []pinnedLink) error {
	var errs []error
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// attachOne takes over the link pinned for a (under its name, or under the
// legacy name, which it renames atomically), or attaches anew and pins.
func attachOne(a Attachment, p program, pinDir string, log *zap.Logger) (link.Link, error) {
	pin := filepath.Join(pinDir, linksDir, a.pinName())
	if (a.Kind == AttachTCEgress || a.Kind == AttachTCIngress) && isTCFilterMarker(pin) {
		return nil, attachTCFilter(a, p, pin, log)
	}
	l, err := takeOver(a, pin, p.prog)
	if err != nil {
		return nil, err
	}
	legacy := ""
	if name := a.legacyPinName(); name != "" {
		legacy = filepath.Join(pinDir, linksDir, name)
	}
	if l != nil {
		log.Info("program replaced in pinned link", zap.String(logfield.Program, a.Program), zap.String(logfield.Pin, pin))
		// Both namings at once: an older agent ran after this one. Its
		// link would run the hook a second time.
		if legacy != "" {
			if err := detachPinned(legacy); err != nil {
				l.Close()
				return nil, err
			}
		}
		return l, nil
	}
	if legacy != "" {
		if l, err = takeOverLegacy(a, legacy, pin, p.prog, log); l != nil || err != nil {
			return l, err
		}
	}
	return attachNew(a, p, pin, log)
}

// takeOverLegacy takes over the link pinned under legacy and renames its pin
// to pin: a rename on the bpffs, so the link never stops being pinned.
func takeOverLegacy(a Attachment, legacy, pin string, prog *ebpf.Program, log *zap.Logger) (link.Link, error) {
	l, err := takeOver(a, legacy, prog)
	if l == nil || err != nil {
		return nil, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("rename pinned link %s to %s: %w", legacy, pin, err)
	}
	log.Info("program replaced in pinned link", zap.String(logfield.Program, a.Program), zap.String(logfield.Pin, pin), zap.String(logfield.OldPin, legacy))
	return l, nil
}

func attachNew(a Attachment, p program, pin string, log *zap.Logger) (link.Link, error) {
	var l link.Link
	var err error
	switch a.Kind {
	case AttachCgroup:
		l, err = link.AttachCgroup(link.CgroupOptions{Path: a.Target, Attach: p.attachType, Program: p.prog})
	case AttachXDP:
		l, err = attachXDP(a, p, log)
	case AttachTCEgress, AttachTCIngress:
		l, err = attachTCX(a, p)
		if errors.Is(err, ebpf.ErrNotSupported) {
			// Before Linux 6.6: no tcx link to pin, the filter is the state.
			log.Info("tcx is not supported: tc uses a clsact filter", zap.String(logfield.Device, a.Target), zap.Stringer(logfield.Kind, a.Kind))
			return nil, attachTCFilter(a, p, pin, log)
		}
	default:
		err = errors.New("unknown attach kind")
	}
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s %s: %w", a.Program, a.Kind, a.Target, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link of %s at %s: %w", a.Program, pin, err)
	}
	log.Info("program attached", zap.String(logfield.Program, a.Program), zap.Stringer(logfield.Kind, a.Kind), zap.String(logfield.Target, a.Target), zap.String(logfield.Pin, pin))
	return l, nil
}

// takeOver swaps prog into the link pinned at pin when that link is attached
// to a's target. A link pinned for another target is detached, since the
// operator moved the agent. It returns nil when there is no link to reuse.
func takeOver(a Attachment, pin string, prog *ebpf.Program) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	same, err := attachedTo(a, l)
	if err != nil {
		l.Close()
		return nil, err
	}
	if same {
		if err := l.Update(prog); err != nil {
			l.Close()
			return nil, fmt.Errorf("replace the program of pinned link %s: %w", pin, err)
		}
		return l, nil
	}
	defer l.Close()
	if err := detachAndUnpin(l, pin); err != nil {
		return nil, fmt.Errorf("stale link: %w", err)
	}
	return nil, nil
}

// attachedTo says whether l is attached to a's target.
func attachedTo(a Attachment, l link.Link) (bool, error) {
	switch a.Kind {
	case AttachCgroup:
		want, err := cgroupID(a.Target)
		if err != nil {
			return false, err
		}
		info, err := l.Info()
		return err == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == want, nil
	case AttachXDP, AttachTCEgress, AttachTCIngress:
		ifindex, err := deviceIndex(a.Target)
		if err != nil {
			return false, err
		}
		info, err := l.Info()
		if err != nil {
			return false, nil
		}
		if x := info.XDP(); a.Kind == AttachXDP && x != nil {
			return x.Ifindex == uint32(ifindex), nil
		}
		if x := info.TCX(); a.Kind != AttachXDP && x != nil {
			return x.Ifindex == uint32(ifindex) && ebpf.AttachType(x.AttachType) == tcxAttachType(a.Kind), nil
		}
		return false, nil
	}
	return false, fmt.Errorf("check the target of a %s link: unknown attach kind", a.Kind)
}

// detachPinned removes the link pinned at pin, if any: removing the last
// reference to a link detaches its program.
func detachPinned(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	defer l.Close()
	return detachAndUnpin(l, pin)
}

// detachAndUnpin detaches l at once and removes its pin. Unpinning and
// closing alone leaves the detach to the kernel's deferred release of the
// link: on 5.10 the program was still attached 40 ms after cleanup returned
// (gone by 280 ms), so a caller checking at once, or attaching anew, found
// it there. A link type without BPF_LINK_DETACH is left to that release.
func detachAndUnpin(l link.Link, pin string) error {
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("detach pinned link %s: %w", pin, err)
	}
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", pin, err)
	}
	return nil
}

// pruneStaleLinks detaches what an earlier configuration attached and this
// one does not (a device no longer in --devices), so that no device keeps a
// program nobody maintains.
func pruneStaleLinks(table []Attachment, pinDir string, kinds []AttachKind, log *zap.Logger) error {
	want := map[string]bool{}
	for _, a := range table {
		want[a.pinName()] = true
		if name := a.legacyPinName(); name != "" {
			want[name] = true // attachOne has already dealt with it
		}
	}
	entries, err := os.ReadDir(filepath.Join(pinDir, linksDir))
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(pinDir, linksDir), err)
	}
	var errs []error
	for _, e := range entries {
		if want[e.Name()] || !slices.ContainsFunc(kinds, func(k AttachKind) bool { return strings.HasPrefix(e.Name(), k.String()+"-") }) {
			continue
		}
		if err := detachAny(filepath.Join(pinDir, linksDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("stale attachment removed", zap.String(logfield.Pin, e.Name()))
	}
	return errors.Join(errs...)
}

// detachAny detaches what a file under links/ records: a pinned link, or
// the marker of a clsact filter ("tc-egress-<device>", "tc-ingress-...").
func detachAny(pin string) error {
	if isTCFilterMarker(pin) {
		for _, k := range []AttachKind{AttachTCEgress, AttachTCIngress} {
			if device, ok := strings.CutPrefix(filepath.Base(pin), k.String()+"-"); ok {
				return detachTCFilter(k, device, pin)
			}
		}
	}
	return detachPinned(pin)
}
