package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMemoryMax(t *testing.T) {
	for _, tc := range []struct {
		name, self, max string
		want            int64
		wantErr         bool
	}{
		{name: "a limit in bytes", self: "0::/kubepods/pod1/agent\n", max: "268435456\n", want: 268435456},
		{name: "no limit", self: "0::/kubepods/pod1/agent\n", max: "max\n", want: 0},
		{name: "cgroup v1 lines are skipped", self: "12:memory:/x\n0::/kubepods/pod1/agent\n", max: "1048576\n", want: 1048576},
		{name: "no cgroup v2 entry", self: "12:memory:/x\n", wantErr: true},
		{name: "a limit that is not a number", self: "0::/kubepods/pod1/agent\n", max: "lots\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "cgroup")
			if err := os.WriteFile(self, []byte(tc.self), 0o644); err != nil {
				t.Fatal(err)
			}
			mount := filepath.Join(dir, "mnt")
			if tc.max != "" {
				cg := filepath.Join(mount, "kubepods/pod1/agent")
				if err := os.MkdirAll(cg, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(cg, "memory.max"), []byte(tc.max), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := cgroupMemoryMax(self, mount)
			if (err != nil) != tc.wantErr {
				t.Fatalf("cgroupMemoryMax: error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("cgroupMemoryMax = %d, want %d", got, tc.want)
			}
		})
	}
}
