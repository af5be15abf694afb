package sandbox

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// LinkedProgram opens the program attached through the link pinned at
// pin, closed when the test ends.
func LinkedProgram(t testing.TB, pin string) *ebpf.Program {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatalf("opening the link pinned at %s: %v", pin, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatalf("reading the link pinned at %s: %v", pin, err)
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		t.Fatalf("opening the program of the link pinned at %s: %v", pin, err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// LinkedProgStats reads the run count and run time (bpf_stats) of the
// program attached through socklb's link links/<name> under pinDir.
func LinkedProgStats(t testing.TB, pinDir, name string) ebpf.ProgramStats {
	t.Helper()
	st, err := LinkedProgram(t, filepath.Join(pinDir, "links", name)).Stats()
	if err != nil {
		t.Fatalf("reading the stats of links/%s: %v", name, err)
	}
	return *st
}
