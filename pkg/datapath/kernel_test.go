package datapath

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
)

func TestCheckKernelNamesWhatIsMissing(t *testing.T) {
	ok := func() error { return nil }
	missing := func() error { return ebpf.ErrNotSupported }
	broken := func() error { return errors.New("permission denied") }
	cases := []struct {
		name    string
		reqs    []requirement
		wantErr string
	}{
		{"everything there", []requirement{{"a", "4.17", ok}, {"b", "5.7", ok}}, ""},
		{
			"the first missing is named with its version and the kernel",
			[]requirement{{"a", "4.17", ok}, {"bpf_link for cgroups", "5.7", missing}, {"c", "5.8", missing}},
			"socklb needs Linux 5.10 or newer: this kernel (5.4.0-test) lacks bpf_link for cgroups (Linux 5.7)",
		},
		{
			"a probe that cannot run is not called missing",
			[]requirement{{"the getpeername hooks", "5.8", broken}},
			"check the kernel for the getpeername hooks: permission denied",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKernel(tc.reqs, "5.4.0-test")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}
