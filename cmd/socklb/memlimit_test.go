package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestCgroupMemoryMax(t *testing.T) {
	for _, tc := range []struct {
		name, self string
		files      map[string]string // under the mount
		want       int64
		wantErr    bool
	}{
		{name: "a limit in bytes", self: "0::/kubepods/pod1/agent\n",
			files: map[string]string{"kubepods/pod1/agent/memory.max": "268435456\n"}, want: 268435456},
		{name: "no limit", self: "0::/kubepods/pod1/agent\n",
			files: map[string]string{"kubepods/pod1/agent/memory.max": "max\n"}, want: 0},
		{name: "cgroup v2 on a host with both, at unified", self: "4:memory:/x\n0::/kubepods/pod1/agent\n",
			files: map[string]string{"unified/kubepods/pod1/agent/memory.max": "1048576\n"}, want: 1048576},
		{name: "the memory controller on cgroup v1", self: "12:memory:/kubepods/pod1/agent\n3:cpu,cpuacct:/kubepods/pod1/agent\n0::/kubepods/pod1/agent\n",
			files: map[string]string{"memory/kubepods/pod1/agent/memory.limit_in_bytes": "178257920\n"}, want: 178257920},
		{name: "cgroup v1 without a limit", self: "12:memory:/\n",
			files: map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, want: 0},
		{name: "memory among other v1 controllers", self: "7:cpuset,memory:/pod\n",
			files: map[string]string{"memory/pod/memory.limit_in_bytes": "4096\n"}, want: 4096},
		{name: "no cgroup v2 entry and no memory controller", self: "12:cpu:/x\n", wantErr: true},
		{name: "no limit file anywhere", self: "0::/kubepods/pod1/agent\n", wantErr: true},
		{name: "a limit that is not a number", self: "0::/kubepods/pod1/agent\n",
			files: map[string]string{"kubepods/pod1/agent/memory.max": "lots\n"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "cgroup")
			if err := os.WriteFile(self, []byte(tc.self), 0o644); err != nil {
				t.Fatal(err)
			}
			mount := filepath.Join(dir, "mnt")
			for name, content := range tc.files {
				path := filepath.Join(mount, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
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

func TestCollectorTargets(t *testing.T) {
	for _, tc := range []struct {
		name, gogc  string
		beforeFirst int // the collector's target during the first sync
		afterFirst  int // after it
		afterSecond int // after a second, the target having been put back to 100
		returned    int // lines saying the first sync's garbage went back to the OS
	}{
		{"lower for the first sync, lowest after it, once", "", coldGCPercent, steadyGCPercent, 100, 1},
		{"GOGC set by the operator wins", "200", 100, 100, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			previous := debug.SetGCPercent(100)
			defer debug.SetGCPercent(previous)
			core, logs := observer.New(zap.InfoLevel)
			synced := collectorTargets(zap.New(core))
			if got := debug.SetGCPercent(100); got != tc.beforeFirst {
				t.Errorf("GC percent before the first sync = %d, want %d", got, tc.beforeFirst)
			}
			synced()
			if got := debug.SetGCPercent(100); got != tc.afterFirst {
				t.Errorf("GC percent after the first sync = %d, want %d", got, tc.afterFirst)
			}
			synced()
			if got := debug.SetGCPercent(100); got != tc.afterSecond {
				t.Errorf("GC percent after a second sync = %d, want %d", got, tc.afterSecond)
			}
			// The memory goes back beside the agent: wait for its line.
			deadline := time.Now().Add(5 * time.Second)
			for logs.FilterMessage(firstSyncMemoryReturned).Len() < tc.returned && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // room for a second line, which must not come
			if got := logs.FilterMessage(firstSyncMemoryReturned).Len(); got != tc.returned {
				t.Errorf("%d lines %q, want %d", got, firstSyncMemoryReturned, tc.returned)
			}
		})
	}
}
