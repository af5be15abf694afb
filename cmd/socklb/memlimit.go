package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/logfield"
)

// memoryLimitShare is the part of the cgroup's memory.max the Go runtime
// aims to stay under: the garbage collector works harder as the heap nears
// it instead of letting a full resync's garbage (every object decoded at
// once) grow the heap to twice what is live and the pod into its OOM kill.
const memoryLimitShare = 0.9

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

// cgroupMemoryMax reads the memory.max of the cgroup v2 that selfCgroup
// (a /proc/<pid>/cgroup file) names, under mount; 0 means no limit.
func cgroupMemoryMax(selfCgroup, mount string) (int64, error) {
	b, err := os.ReadFile(selfCgroup)
	if err != nil {
		return 0, fmt.Errorf("read own cgroup: %w", err)
	}
	var path string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			path = rest
		}
	}
	if path == "" {
		return 0, fmt.Errorf("read own cgroup: no cgroup v2 entry in %s", selfCgroup)
	}
	raw, err := os.ReadFile(filepath.Join(mount, path, "memory.max"))
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory limit: %w", err)
	}
	v := strings.TrimSpace(string(raw))
	if v == "max" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory limit %q: %w", v, err)
	}
	return limit, nil
}
