package datapath

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinDirLock is the exclusive hold of one agent (or one cleanup) on a pin
// directory. Two agents on one set of pins would take over each other's
// links and allocate clashing ids; a DaemonSet rollout can overlap two pods
// on a node, so the second one must wait or leave, never share.
//
// The lock is a flock on the directory itself: bpffs holds no regular
// files, and the kernel drops a flock with its holder, so a killed agent
// leaves no stale lock behind.
type PinDirLock struct {
	f *os.File
}

// ErrPinDirLocked is returned when another process holds the pin directory.
var ErrPinDirLocked = errors.New("the pin directory is in use")

// LockPinDir takes the lock on pinDir without waiting. When another process
// holds it, the error matches ErrPinDirLocked and names the holder's pid.
func LockPinDir(pinDir string) (*PinDirLock, error) {
	f, err := os.Open(pinDir)
	if err != nil {
		return nil, fmt.Errorf("lock pin directory %s: %w", pinDir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock pin directory %s: %w by %s", pinDir, ErrPinDirLocked, lockHolder(pinDir))
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", pinDir, err)
	}
	return &PinDirLock{f: f}, nil
}

// Unlock lets the next agent in.
func (l *PinDirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}

// lockHolder names the process holding the flock on path, from /proc/locks
// ("1: FLOCK  ADVISORY  WRITE 1234 00:2e:5678 0 EOF").
func lockHolder(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "another process"
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "another process"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == want {
			if pid, err := strconv.Atoi(fields[4]); err == nil {
				return "pid " + strconv.Itoa(pid) + processName(pid)
			}
		}
	}
	return "another process"
}

func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return " (" + strings.TrimSpace(string(b)) + ")"
}
