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

// coldGCPercent is the collector's target (GOGC) until the first sync is
// done. What that sync keeps (the source's objects, the desired state, the
// maps' mirror) is allocated among decoding's garbage, in the same size
// classes: at the default of 100 the heap grew to some 250 MB at 30,000
// Services, the survivors spread over all of it, and 28 MB of partly used
// spans stayed that no collection gives back. At 50 the peak was 184 MiB
// and the waste 16 MB, the cold start as fast (at 25 it was a third
// slower).
const coldGCPercent = 50

// steadyGCPercent is the collector's target once the first sync is done.
// The heap is then nearly all long-lived state (the source's objects, the
// desired state, the maps' mirror), and a change or the periodic sync
// allocates little beside it: a collection costs what the state costs to
// scan, and a target of 100 let garbage double the heap. At 30,000
// Services in standalone mode, one file each (BenchmarkStandalone30000),
// 20 changes left an RSS of 158 MiB at 25, 148 at 15 and 144-146 at 10,
// where a change took 0.34 CPU seconds against 0.30 at 15.
const steadyGCPercent = 10

// firstSyncMemoryReturned is the line logged once the first sync's garbage
// went back to the OS: the RSS an operator sees from then on is the agent's
// own (BenchmarkStandalone30000 reads it then).
const firstSyncMemoryReturned = "returned the first sync's garbage to the OS"

// collectorTargets sets the collector's target for the first sync and
// returns what the agent calls after each successful sync: the first call
// sets the steady target and gives the first sync's garbage back to the
// OS. With GOGC set, the operator's value holds throughout.
func collectorTargets(log *zap.Logger) func() {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	debug.SetGCPercent(coldGCPercent)
	var once sync.Once
	return func() {
		once.Do(func() {
			debug.SetGCPercent(steadyGCPercent)
			log.Info("garbage collector target after the first sync", zap.Int(logfield.GCPercent, steadyGCPercent))
			// The first sync's garbage goes back to the OS now rather than
			// as the heap grows into it. The collection that takes (some
			// 0.1 s at 30,000 Services) runs beside the agent, not before
			// the sync is reported done: the maps are written by then.
			go func() {
				debug.FreeOSMemory()
				log.Info(firstSyncMemoryReturned)
			}()
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
