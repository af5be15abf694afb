package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/logfield"
)

// memoryLimitShare is the part of the cgroup's memory.max the Go runtime
// aims to stay under: the garbage collector works harder as the heap nears
// it instead of letting a full resync's garbage (every object decoded at
// once) grow the heap to twice what is live and the pod into its OOM kill.
const memoryLimitShare = 0.9

// steadyGCPercent is the collector's target (GOGC) once the first sync is
// done. The heap is then mostly long-lived state (the desired state, the
// maps' mirror, the source's objects), and the default of 100 lets garbage
// grow it to twice that before a collection: at 30,000 Services that was
// some 70 MiB of RSS that nothing needed (Prometheus lowered its default
// for the same reason). The first sync keeps the default: its heap grows
// from nothing, and most of what it allocates is decoding's garbage.
const steadyGCPercent = 50

// steadyGC returns what the agent calls after each successful sync: the
// first call lowers the collector's target to steadyGCPercent, unless
// GOGC is set.
func steadyGC(log *zap.Logger) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			if os.Getenv("GOGC") != "" {
				return
			}
			debug.SetGCPercent(steadyGCPercent)
			// The first sync's garbage goes back to the OS now rather than
			// as the heap grows into it.
			debug.FreeOSMemory()
			log.Info("garbage collector target after the first sync", zap.Int(logfield.GCPercent, steadyGCPercent))
		})
	}
}

// setMemoryLimit gives the Go runtime a soft memory limit of
// memoryLimitShare of the agent's cgroup memory.max, unless GOMEMLIMIT is
// set or the cgroup has no limit. It logs what it chose.
func setMemoryLimit(log *zap.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, err := cgroupMemoryMax("/proc/self/cgroup", "/sys/fs/cgroup")
	if err != nil {
		log.Debug("no soft memory limit", zap.Error(err))
		return
	}
	if limit == 0 {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("soft memory limit from the cgroup", zap.Int64(logfield.Limit, soft), zap.Int64(logfield.CgroupLimit, limit))
}

// cgroupMemoryMax reads the memory limit of the cgroup that selfCgroup (a
// /proc/<pid>/cgroup file) names, under mount (/sys/fs/cgroup): cgroup
// v2's memory.max, at mount or, on a host with both versions, at
// mount/unified; else, where the memory controller is cgroup v1's (those
// hosts), memory.limit_in_bytes under mount/memory. 0 means no limit.
func cgroupMemoryMax(selfCgroup, mount string) (int64, error) {
	b, err := os.ReadFile(selfCgroup)
	if err != nil {
		return 0, fmt.Errorf("read own cgroup: %w", err)
	}
	var candidates []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fields := strings.SplitN(line, ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch {
		case fields[0] == "0" && fields[1] == "":
			candidates = append(candidates, filepath.Join(mount, fields[2], "memory.max"), filepath.Join(mount, "unified", fields[2], "memory.max"))
		case slices.Contains(strings.Split(fields[1], ","), "memory"):
			// In a cgroup namespace the path is "/" and the mount is the
			// pod's own cgroup.
			candidates = append(candidates, filepath.Join(mount, "memory", fields[2], "memory.limit_in_bytes"))
		}
	}
	if len(candidates) == 0 {
		return 0, fmt.Errorf("read own cgroup: no cgroup v2 or memory controller entry in %s", selfCgroup)
	}
	var errs []error
	for _, path := range candidates {
		raw, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return parseMemoryLimit(strings.TrimSpace(string(raw)))
	}
	return 0, fmt.Errorf("read cgroup memory limit: %w", errors.Join(errs...))
}

// noLimitV1 is where cgroup v1's memory.limit_in_bytes starts meaning no
// limit (it reads 9223372036854771712, the page counter's maximum).
const noLimitV1 = 1 << 62

// parseMemoryLimit reads memory.max ("max" or bytes) or
// memory.limit_in_bytes; 0 means no limit.
func parseMemoryLimit(v string) (int64, error) {
	if v == "max" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory limit %q: %w", v, err)
	}
	if limit >= noLimitV1 {
		return 0, nil
	}
	return limit, nil
}
