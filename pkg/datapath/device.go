package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/logfield"
)

// tcFilterName names socklb's clsact filters, so that cleanup and a
// restarted agent find them among other tools' filters.
const tcFilterName = "socklb-egress"

func deviceIndex(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("find device %s: %w", name, err)
	}
	return ifc.Index, nil
}

// attachXDP attaches in a's mode; a driver that refuses native XDP gets
// generic XDP, said once.
func attachXDP(a Attachment, p program, log *zap.Logger) (link.Link, error) {
	ifindex, err := deviceIndex(a.Target)
	if err != nil {
		return nil, err
	}
	flags := link.XDPGenericMode
	if a.XDPMode == XDPNative {
		flags = link.XDPDriverMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
	if err != nil && a.XDPMode == XDPNative && !errors.Is(err, unix.EBUSY) {
		log.Info("native XDP refused by the driver: using generic XDP", zap.String(logfield.Device, a.Target), zap.Error(err))
		l, err = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPGenericMode})
	}
	return l, err
}

func attachTCX(a Attachment, p program) (link.Link, error) {
	ifindex, err := deviceIndex(a.Target)
	if err != nil {
		return nil, err
	}
	return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: ebpf.AttachTCXEgress})
}

// isTCFilterMarker says whether pin is the directory that records a clsact
// filter (a filter is no bpf_link, so there is nothing to pin).
func isTCFilterMarker(pin string) bool {
	st, err := os.Stat(pin)
	return err == nil && st.IsDir()
}

// attachTCFilter puts p on a's device egress as a direct-action filter of a
// clsact qdisc (made when missing), replacing socklb's previous filter in
// one step, and records it under pin.
func attachTCFilter(a Attachment, p program, pin string, log *zap.Logger) error {
	dev, err := netlink.LinkByName(a.Target)
	if err != nil {
		return fmt.Errorf("find device %s: %w", a.Target, err)
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return fmt.Errorf("add clsact qdisc to %s: %w", a.Target, err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: dev.Attrs().Index, Parent: netlink.HANDLE_MIN_EGRESS,
			Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
		Fd: p.prog.FD(), Name: tcFilterName, DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return fmt.Errorf("attach %s to tc egress of %s: %w", a.Program, a.Target, err)
	}
	if err := os.MkdirAll(pin, 0o700); err != nil {
		return fmt.Errorf("record the tc filter of %s at %s: %w", a.Target, pin, err)
	}
	log.Info("program attached", zap.String(logfield.Program, a.Program), zap.Stringer(logfield.Kind, a.Kind), zap.String(logfield.Target, a.Target), zap.String(logfield.Filter, tcFilterName))
	return nil
}

// detachTCFilter removes socklb's clsact filter from device (the marker's
// name says which) and the marker.
func detachTCFilter(device, marker string) error {
	dev, err := netlink.LinkByName(device)
	if err == nil {
		filters, err := netlink.FilterList(dev, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return fmt.Errorf("list tc filters of %s: %w", device, err)
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == tcFilterName {
				if err := netlink.FilterDel(bf); err != nil {
					return fmt.Errorf("remove tc filter of %s: %w", device, err)
				}
			}
		}
	}
	return os.Remove(marker)
}
