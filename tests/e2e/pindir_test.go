package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Issue 12, finding 2: a second agent on the same pins must not start: it
// would take over the first one's links and allocate clashing ids. It exits
// with one line naming the holder's pid; the first keeps serving.
func TestSecondAgentOnThePinsIsRefused(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "web-1")
	n.writeWeb(t, ready(pods[0]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := n.sb.Run(t, ctx, n.sb.Node, false, n.socklb, "agent",
		"--from-dir", n.dir, "--cgroup", n.sb.Cgroup, "--bpffs", n.sb.PinDir, "--node-name", "second")
	if err == nil {
		t.Fatal("a second agent on the same pin directory started")
	}
	if want := fmt.Sprintf("in use by pid %d", n.agent.Pid()); !strings.Contains(err.Error(), want) {
		// nsenter execs the agent, so the holder's pid is the started process's.
		t.Errorf("second agent said %v, want it to say %q", err, want)
	}
	if got := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "20")); got["web-1"] != 20 {
		t.Errorf("first agent's Service answered %v after the refused start, want 20 from web-1", got)
	}
}

// Issue 12, finding 3: cleanup removes only what socklb made, refuses a
// directory holding anything else (unless told the names), refuses a
// directory that is not on a bpffs, and refuses while an agent runs, where
// detaching would only pretend (the agent's handles keep programs attached).
func TestCleanupRemovesOnlyWhatSocklbMade(t *testing.T) {
	n := newNode(t)
	pods := n.addPods(t, "web-1")
	n.writeWeb(t, ready(pods[0]))
	n.startAgent(t)
	n.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	cleanup := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := n.sb.Run(t, ctx, n.sb.Node, false, append([]string{n.socklb, "cleanup"}, args...)...)
		return err
	}

	t.Run("refused while the agent runs", func(t *testing.T) {
		err := cleanup("--bpffs", n.sb.PinDir)
		if err == nil || !strings.Contains(err.Error(), "stop the agent first") {
			t.Fatalf("cleanup with a running agent: %v, want a refusal saying to stop the agent", err)
		}
		if got := requireAllOK(t, n.probe(t, "tcp", "--addr", vip+":80", "--count", "10")); got["web-1"] != 10 {
			t.Errorf("Service after the refused cleanup: %v", got)
		}
	})

	t.Run("refused outside a bpffs", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "passwd")
		if err := os.WriteFile(keep, []byte("root:x:0:0"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := cleanup("--bpffs", dir)
		if err == nil || !strings.Contains(err.Error(), "not on a bpffs") {
			t.Errorf("cleanup of %s: %v, want a refusal: not on a bpffs", dir, err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("cleanup touched a file it did not make: %v", err)
		}
	})

	// The agent stops; another tool's pin sits beside socklb's.
	n.agent.Kill()
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	foreign := filepath.Join(n.sb.PinDir, "other_tools_map")
	if err := other.Pin(foreign); err != nil {
		t.Fatal(err)
	}

	t.Run("refused when the directory holds another tool's pin", func(t *testing.T) {
		err := cleanup("--bpffs", n.sb.PinDir)
		if err == nil || !strings.Contains(err.Error(), "other_tools_map") {
			t.Fatalf("cleanup: %v, want a refusal naming other_tools_map", err)
		}
		if _, err := os.Stat(filepath.Join(n.sb.PinDir, "lb_services")); err != nil {
			t.Errorf("a refused cleanup removed socklb's pins: %v", err)
		}
	})

	t.Run("removes everything once told the foreign name", func(t *testing.T) {
		if err := cleanup("--bpffs", n.sb.PinDir, "--also", "other_tools_map"); err != nil {
			t.Fatalf("cleanup --also: %v", err)
		}
		if _, err := os.Stat(n.sb.PinDir); !os.IsNotExist(err) {
			t.Errorf("pin directory still there after cleanup: %v", err)
		}
		rs := n.probe(t, "tcp", "--addr", vip+":80", "--count", "1", "--timeout", "500ms")
		if len(rs) == 1 && rs[0].OK {
			t.Errorf("the VIP still answered after cleanup: %+v", rs[0])
		}
	})
}
