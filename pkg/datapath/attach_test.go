package datapath

import (
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
