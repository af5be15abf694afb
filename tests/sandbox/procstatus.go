package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatusMiB reads a memory figure of process pid from
// /proc/<pid>/status (VmRSS, VmHWM, ...) in MiB: the benchmarks' RSS.
func ProcStatusMiB(pid int, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s of %d: %w", field, pid, err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if rest, ok := strings.CutPrefix(scanner.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("read %s of %d: %w", field, pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("read %s of %d: not in /proc/%d/status", field, pid, pid)
}

// ProcCPUSeconds is the CPU time of process pid, user and system, its own
// and its waited-for children's (kube-proxy's iptables-restore and nft), in
// seconds, from /proc/<pid>/stat.
func ProcCPUSeconds(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of %d: %w", pid, err)
	}
	// Fields after the command name, which may hold spaces: utime is the
	// 14th field overall, the 12th after ") ".
	_, rest, _ := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if len(fields) < 15 {
		return 0, fmt.Errorf("read the CPU time of %d: %d fields in /proc/%d/stat", pid, len(fields), pid)
	}
	const clockTicks = 100 // USER_HZ on Linux
	var cpu float64
	for _, f := range fields[11:15] { // utime, stime, cutime, cstime
		ticks, _ := strconv.ParseFloat(f, 64)
		cpu += ticks / clockTicks
	}
	return cpu, nil
}
