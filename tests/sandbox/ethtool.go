package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value, the argument of the one-flag
// ETHTOOL_G* / ETHTOOL_S* commands.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data (a pointer) as its union member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolFlag runs one ETHTOOL_G*/ETHTOOL_S* value command on the interface
// ifname of the calling thread's network namespace; call it inside inNetns.
func ethtoolFlag(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("ethtool %s: name too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ethtool %s: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return 0, fmt.Errorf("ethtool %s: ioctl SIOCETHTOOL cmd %#x: %w", ifname, cmd, errno)
	}
	return v.data, nil
}

// setEthtoolFlag sets a one-flag feature (e.g. ETHTOOL_STXCSUM) and reads it
// back with get (e.g. ETHTOOL_GTXCSUM): the kernel may silently keep a
// feature the driver cannot change.
func setEthtoolFlag(ifname string, set, get uint32, on bool) error {
	want := uint32(0)
	if on {
		want = 1
	}
	if _, err := ethtoolFlag(ifname, set, want); err != nil {
		return err
	}
	got, err := ethtoolFlag(ifname, get, 0)
	if err != nil {
		return err
	}
	if (got != 0) != on {
		return fmt.Errorf("ethtool %s: cmd %#x: asked for %v, the kernel kept %d", ifname, set, on, got)
	}
	return nil
}

// TxChecksumOffload reports whether TX checksum offload is on for ifname in
// h's network namespace (ETHTOOL_GTXCSUM).
func (h *Host) TxChecksumOffload(ifname string) (bool, error) {
	return h.ethtoolGet(ifname, unix.ETHTOOL_GTXCSUM)
}

// GRO reports whether generic receive offload is on for ifname in h's
// network namespace (ETHTOOL_GGRO).
func (h *Host) GRO(ifname string) (bool, error) {
	return h.ethtoolGet(ifname, unix.ETHTOOL_GGRO)
}

// SetGRO turns GRO on or off for ifname in h's network namespace. On veth,
// GRO is what gives the device its NAPI context, which native XDP_TX and
// XDP_REDIRECT towards its peer need.
func (h *Host) SetGRO(ifname string, on bool) error {
	return h.Do(func() error { return setEthtoolFlag(ifname, unix.ETHTOOL_SGRO, unix.ETHTOOL_GGRO, on) })
}

func (h *Host) ethtoolGet(ifname string, cmd uint32) (bool, error) {
	var v uint32
	err := h.Do(func() error {
		var err error
		v, err = ethtoolFlag(ifname, cmd, 0)
		return err
	})
	return v != 0, err
}

// prepareVeth sets what every veth end of a Cluster needs: TX checksum
// offload off (so checksum bugs in XDP/tc programs show on the wire) and GRO
// on (NAPI, for native XDP_TX/XDP_REDIRECT from its peer). Call it inside
// inNetns.
func prepareVeth(ifname string) error {
	if err := setEthtoolFlag(ifname, unix.ETHTOOL_STXCSUM, unix.ETHTOOL_GTXCSUM, false); err != nil {
		return err
	}
	return setEthtoolFlag(ifname, unix.ETHTOOL_SGRO, unix.ETHTOOL_GGRO, true)
}
