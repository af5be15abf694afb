package datapath

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ensurePinDir makes pinDir, which must sit on a bpffs. When its parent is
// /sys/fs/bpf and nothing is mounted there yet (a bare host), bpffs is mounted
// first, as the kernel's own tools expect it there.
func ensurePinDir(pinDir string) error {
	parent := filepath.Dir(filepath.Clean(pinDir))
	if !isBPFFS(parent) {
		if parent != "/sys/fs/bpf" {
			return fmt.Errorf("prepare pin directory %s: %s is not on a bpffs mount", pinDir, parent)
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("prepare pin directory %s: %w", pinDir, err)
		}
		if err := unix.Mount("bpffs", parent, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", parent, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(pinDir, linksDir), 0o700); err != nil {
		return fmt.Errorf("prepare pin directory %s: %w", pinDir, err)
	}
	return nil
}

func isBPFFS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.BPF_FS_MAGIC
}
