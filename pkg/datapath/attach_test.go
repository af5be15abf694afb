package datapath

import (
	"fmt"
	"slices"
	"testing"
)

func TestPinNamesSayTheirTarget(t *testing.T) {
	cases := []struct {
		name       string
		a          Attachment
		wantPin    string
		wantLegacy string
	}{
		{"cgroup hook", Attachment{Program: "connect4", Kind: AttachCgroup, Target: "/sys/fs/cgroup"}, "cgroup-connect4", "connect4"},
		{"another hook", Attachment{Program: "getpeername6", Kind: AttachCgroup, Target: "/sys/fs/cgroup"}, "cgroup-getpeername6", "getpeername6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.pinName(); got != tc.wantPin {
				t.Errorf("pin name %q, want %q", got, tc.wantPin)
			}
			if got := tc.a.legacyPinName(); got != tc.wantLegacy {
				t.Errorf("legacy pin name %q, want %q", got, tc.wantLegacy)
			}
		})
	}
}

// The table attaches every program of the socket object, once, to the cgroup.
func TestAttachmentsCoverEverySocketProgram(t *testing.T) {
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	var inTable, inObject []string
	for _, a := range Attachments(Config{Cgroup: "/cg"}) {
		if a.Kind != AttachCgroup || a.Target != "/cg" {
			t.Errorf("%s attaches to %s %s, want the cgroup /cg", a.Program, a.Kind, a.Target)
		}
		inTable = append(inTable, a.Program)
	}
	for name := range spec.Programs {
		inObject = append(inObject, name)
	}
	slices.Sort(inTable)
	slices.Sort(inObject)
	if !slices.Equal(inTable, inObject) {
		t.Errorf("the attach table has %v, the object %v", inTable, inObject)
	}
}

// Every device gets the XDP and tc egress programs, each link pinned under
// a name that says its device, so that two devices never share a pin.
func TestAttachmentsPerDevice(t *testing.T) {
	table := Attachments(Config{Cgroup: "/cg", Devices: []string{"eth0", "eth1"}, XDPMode: XDPGeneric})
	var got []string
	for _, a := range table {
		if a.Kind == AttachCgroup {
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %s mode=%s", a.pinName(), a.Program, a.Target, a.XDPMode))
	}
	want := []string{
		"xdp-eth0 nodeport_xdp eth0 mode=generic",
		"tc-egress-eth0 nodeport_tc_egress eth0 mode=",
		"tc-ingress-eth0 nodeport_tc_ingress eth0 mode=",
		"xdp-eth1 nodeport_xdp eth1 mode=generic",
		"tc-egress-eth1 nodeport_tc_egress eth1 mode=",
		"tc-ingress-eth1 nodeport_tc_ingress eth1 mode=",
	}
	if !slices.Equal(got, want) {
		t.Errorf("device attachments\n got %q\nwant %q", got, want)
	}
	if a := Attachments(Config{Devices: []string{"eth0"}}); a[len(a)-3].XDPMode != XDPNative {
		t.Errorf("default XDP mode %q, want native", a[len(a)-3].XDPMode)
	}
}
