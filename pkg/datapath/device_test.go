package datapath_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/tests/sandbox"
)

// addVeths makes veth pairs eth<i>/peer<i> (up) in the node netns: devices
// of the test's own, never the machine's.
func addVeths(t *testing.T, sb *sandbox.Sandbox, n int) {
	t.Helper()
	err := sb.Node.Do(func() error {
		for i := range n {
			name := "eth" + string(rune('0'+i))
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "peer" + string(rune('0'+i))}); err != nil {
				return err
			}
			for _, dev := range []string{name, "peer" + string(rune('0'+i))} {
				l, err := netlink.LinkByName(dev)
				if err != nil {
					return err
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("add veths: %v", err)
	}
}

func linkPins(t *testing.T, pinDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// deviceLinkIDs are the ids of the links pinned under names.
func deviceLinkIDs(t *testing.T, pinDir string, names ...string) map[string]link.ID {
	t.Helper()
	ids := map[string]link.ID{}
	for _, n := range names {
		l, err := link.LoadPinnedLink(filepath.Join(pinDir, "links", n), nil)
		if err != nil {
			t.Fatalf("open pinned link %s: %v", n, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = info.ID
	}
	return ids
}

// The north-south programs attach to every --devices device through pinned
// links named for the device; a restart takes the same links over; a device
// dropped from the configuration is detached; cleanup removes everything.
func TestDeviceAttachments(t *testing.T) {
	sb := sandbox.New(t)
	addVeths(t, sb, 2)
	log := zaptest.NewLogger(t)
	load := func(devices ...string) {
		t.Helper()
		err := sb.Node.Do(func() error {
			d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup, Devices: devices, XDPMode: datapath.XDPNative}, log)
			if err != nil {
				return err
			}
			return d.Close()
		})
		if err != nil {
			t.Fatalf("load with devices %v: %v", devices, err)
		}
	}
	devicePins := func() []string {
		var out []string
		for _, n := range linkPins(t, sb.PinDir) {
			if n[:3] == "xdp" || n[:3] == "tc-" {
				out = append(out, n)
			}
		}
		return out
	}

	load("eth0", "eth1")
	want := []string{"tc-egress-eth0", "tc-egress-eth1", "tc-ingress-eth0", "tc-ingress-eth1", "xdp-eth0", "xdp-eth1"}
	if got := devicePins(); !slices.Equal(got, want) {
		t.Fatalf("device pins %v, want %v", got, want)
	}
	links := want
	if !sandbox.KernelAtLeast(t, "6.6") {
		// Before tcx (Linux 6.6) the tc pins are filter markers, not links
		// (TestTCFilterFallback covers them): only XDP's links are taken over.
		links = []string{"xdp-eth0", "xdp-eth1"}
	}
	before := deviceLinkIDs(t, sb.PinDir, links...)

	load("eth0", "eth1")
	if after := deviceLinkIDs(t, sb.PinDir, links...); !mapsEqual(before, after) {
		t.Errorf("a restart made new links %v, want the pinned ones taken over %v", after, before)
	}

	load("eth0")
	if got, want := devicePins(), []string{"tc-egress-eth0", "tc-ingress-eth0", "xdp-eth0"}; !slices.Equal(got, want) {
		t.Errorf("after dropping eth1: device pins %v, want %v", got, want)
	}
	err := sb.Node.Do(func() error {
		l, err := netlink.LinkByName("eth1")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("eth1 still runs XDP program %d after it left --devices", x.ProgId)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := datapath.Cleanup(sb.PinDir, nil, log); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	err = sb.Node.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("eth0 still runs XDP program %d after cleanup", x.ProgId)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Before tcx (Linux 6.6) tc egress is a clsact direct-action filter, which
// is no link: a marker records it, a restart replaces the filter in place,
// and cleanup removes filter and marker.
func TestTCFilterFallback(t *testing.T) {
	sb := sandbox.New(t)
	addVeths(t, sb, 1)
	log := zaptest.NewLogger(t)
	if err := os.MkdirAll(filepath.Join(sb.PinDir, "links", "tc-egress-eth0"), 0o700); err != nil {
		t.Fatal(err)
	}
	egressFilters := func() []string {
		var names []string
		err := sb.Node.Do(func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			fs, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
			if err != nil {
				return err
			}
			for _, f := range fs {
				if bf, ok := f.(*netlink.BpfFilter); ok {
					names = append(names, bf.Name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	for range 2 { // the second load replaces the filter, it does not add one
		err := sb.Node.Do(func() error {
			d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup, Devices: []string{"eth0"}, XDPMode: datapath.XDPGeneric}, log)
			if err != nil {
				return err
			}
			return d.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := egressFilters(); !slices.Equal(got, []string{"socklb"}) {
			t.Fatalf("egress filters %v, want one socklb filter", got)
		}
	}
	if err := sb.Node.Do(func() error { return datapath.Cleanup(sb.PinDir, nil, log) }); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if got := egressFilters(); len(got) != 0 {
		t.Errorf("egress filters after cleanup: %v", got)
	}
}

// A device dropped while the agent runs is detached at once: the agent's
// own handle on its link must go with the pin, or the program would keep
// running on the device until the agent exits.
func TestDeviceDroppedWhileRunning(t *testing.T) {
	sb := sandbox.New(t)
	addVeths(t, sb, 2)
	err := sb.Node.Do(func() error {
		d, err := datapath.Load(datapath.Config{PinDir: sb.PinDir, Cgroup: sb.Cgroup, Devices: []string{"eth0", "eth1"}, XDPMode: datapath.XDPNative}, zaptest.NewLogger(t))
		if err != nil {
			return err
		}
		defer d.Close()
		if err := d.AttachDevices([]string{"eth0"}, datapath.XDPNative); err != nil {
			return err
		}
		for dev, want := range map[string]bool{"eth0": true, "eth1": false} {
			l, err := netlink.LinkByName(dev)
			if err != nil {
				return err
			}
			if got := l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached; got != want {
				t.Errorf("%s runs XDP: %t, want %t", dev, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
