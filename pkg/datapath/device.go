package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/logfield"
)

// tcFilterName names socklb's clsact filters, so that cleanup and a
// restarted agent find them among other tools' filters.
const tcFilterName = "socklb"

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

func tcxAttachType(k AttachKind) ebpf.AttachType {
	if k == AttachTCIngress {
		return ebpf.AttachTCXIngress
	}
	return ebpf.AttachTCXEgress
}

// tcParent is where a clsact filter of kind k hangs.
func tcParent(k AttachKind) uint32 {
	if k == AttachTCIngress {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

func attachTCX(a Attachment, p program) (link.Link, error) {
	ifindex, err := deviceIndex(a.Target)
	if err != nil {
		return nil, err
	}
	return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: tcxAttachType(a.Kind)})
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
		FilterAttrs: netlink.FilterAttrs{LinkIndex: dev.Attrs().Index, Parent: tcParent(a.Kind),
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

// detachTCFilter removes socklb's clsact filter of kind from device (the
// marker's name says which) and the marker.
func detachTCFilter(kind AttachKind, device, marker string) error {
	dev, err := netlink.LinkByName(device)
	if err == nil {
		filters, err := netlink.FilterList(dev, tcParent(kind))
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

// DevicesWithAddresses lists, sorted, the devices of this network namespace
// that carry one of addrs: where traffic for the node's addresses arrives,
// the default of --devices. Loopback is never one.
func DevicesWithAddresses(addrs []netip.Addr) ([]string, error) {
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	all, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the node's addresses: %w", err)
	}
	seen := map[int]bool{}
	var devices []string
	for _, a := range all {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !want[ip.Unmap()] || seen[a.LinkIndex] {
			continue
		}
		seen[a.LinkIndex] = true
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			return nil, fmt.Errorf("find the device of %s: %w", ip, err)
		}
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		devices = append(devices, l.Attrs().Name)
	}
	slices.Sort(devices)
	return devices, nil
}

// DeviceAddresses lists the global unicast addresses on devices, the node's
// addresses in standalone mode when --node-ip does not give them.
func DeviceAddresses(devices []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, name := range devices {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("find device %s: %w", name, err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list the addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
