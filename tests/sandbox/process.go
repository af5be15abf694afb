package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// killGrace is how long Kill waits after SIGTERM before SIGKILL.
const killGrace = 3 * time.Second

// Process is a process started by Sandbox.Start.
type Process struct {
	Cmd *exec.Cmd

	stdout, stderr *outBuffer
	done           chan struct{}
	waitErr        error
	killOnce       sync.Once
}

// Stdout returns what the process wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Pid returns the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited and its output is complete.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error (an
// *exec.ExitError for a non-zero exit), like exec.Cmd.Wait. It may be called
// any number of times.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process (by pid; os.Process uses a pidfd, so a
// reaped process is never mistaken for a reused pid).
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return os.ErrProcessDone
	}
	return p.Cmd.Process.Signal(sig)
}

// Kill stops the process: SIGTERM, then SIGKILL if it hasn't exited within
// a few seconds. It waits for the exit and is safe to call repeatedly.
func (p *Process) Kill() {
	p.killOnce.Do(func() {
		if p.Exited() {
			return
		}
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(killGrace):
		}
		p.Cmd.Process.Signal(syscall.SIGKILL)
	})
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// WaitOutput waits until the process's stdout contains substr. It fails if
// the process exits first or timeout passes.
func (p *Process) WaitOutput(substr string, timeout time.Duration) error {
	return p.waitFor(p.stdout, "stdout", substr, timeout)
}

// WaitStderr waits until the process's stderr contains substr.
func (p *Process) WaitStderr(substr string, timeout time.Duration) error {
	return p.waitFor(p.stderr, "stderr", substr, timeout)
}

func (p *Process) waitFor(b *outBuffer, which, substr string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		ch := b.changed()
		if strings.Contains(b.String(), substr) {
			return nil
		}
		select {
		case <-ch:
		case <-p.done:
			if strings.Contains(b.String(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before %q on %s; stderr: %s", p.Cmd.Args, p.waitErr, substr, which, p.Stderr())
		case <-deadline:
			return fmt.Errorf("%s: no %q on %s within %v; stderr: %s", p.Cmd.Args, substr, which, timeout, p.Stderr())
		}
	}
}

// outBuffer is a concurrency-safe output buffer that signals changes.
type outBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func newOutBuffer() *outBuffer { return &outBuffer{ch: make(chan struct{})} }

func (b *outBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.ch)
	b.ch = make(chan struct{})
	return n, err
}

func (b *outBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *outBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

// spawnReqs feeds the spawner goroutine.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// spawn starts cmd from one goroutine locked to an OS thread that never
// exits. Pdeathsig fires when the *thread* that forked a child ends, and Go
// ends a thread whenever a goroutine exits while locked to it (as the
// namespace helpers here do on purpose): a child forked from an arbitrary
// thread could be SIGKILLed at random (golang/go#27505).
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // for the life of the process
			for r := range spawnReqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, errc}
	return <-errc
}

// Start runs argv in host h's network namespace (through nsenter --net;
// h == nil means the node), cloned directly into the sandbox cgroup when
// inCgroup is true (so every socket it creates belongs to that cgroup).
// Stdout and stderr are captured. The process is killed by pid (SIGTERM,
// then SIGKILL) in t.Cleanup and when the sandbox is cleaned up; it also
// gets SIGKILL if the test binary dies (Pdeathsig).
//
// The process is in the cgroup from its first instruction, but Start returns
// as soon as nsenter is forked: it may not have joined the netns or exec'd
// argv yet. Wait for output that argv prints once it is up (WaitOutput),
// as StartNameServer does with "ready".
func (s *Sandbox) Start(t testing.TB, h *Host, inCgroup bool, argv ...string) *Process {
	t.Helper()
	p, err := s.start(h, inCgroup, argv)
	if err != nil {
		t.Fatalf("sandbox: start %q: %v", argv, err)
	}
	t.Cleanup(p.Kill)
	return p
}

func (s *Sandbox) start(h *Host, inCgroup bool, argv []string) (*Process, error) {
	if h == nil {
		h = s.Node
	}
	cgroup := ""
	if inCgroup {
		cgroup = s.Cgroup
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := startProcess(h.Netns, cgroup, argv)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// startProcess runs argv in the network namespace at netnsPath through
// nsenter --net, cloned into the cgroup directory cgroup unless it is "",
// with its output captured and Pdeathsig set.
func startProcess(netnsPath, cgroup string, argv []string) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty argv")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--net=" + netnsPath, "--"}, argv...)
	cmd := exec.Command(nsenter, args...)
	p := &Process{Cmd: cmd, stdout: newOutBuffer(), stderr: newOutBuffer(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.WaitDelay = 2 * time.Second // don't hang on pipes held by grandchildren
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cgroup != "" {
		fd, err := unix.Open(cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open cgroup: %w", err)
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Run runs argv like Start and waits for it to finish. It returns stdout;
// the error (non-zero exit, or ctx done: the process is then killed)
// includes stderr. Without a deadline on ctx, Run gives up after 2 minutes.
func (s *Sandbox) Run(t testing.TB, ctx context.Context, h *Host, inCgroup bool, argv ...string) (string, error) {
	t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
	}
	p, err := s.start(h, inCgroup, argv)
	if err != nil {
		return "", fmt.Errorf("start %q: %w", argv, err)
	}
	return waitRun(ctx, p, argv)
}

// waitRun waits for a process started for Run and returns its stdout, or
// kills it when ctx is done.
func waitRun(ctx context.Context, p *Process, argv []string) (string, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Kill()
		return p.Stdout(), fmt.Errorf("%q: %w; stderr: %s", argv, ctx.Err(), p.Stderr())
	}
	if p.waitErr != nil {
		return p.Stdout(), fmt.Errorf("%q: %w; stderr: %s", argv, p.waitErr, p.Stderr())
	}
	return p.Stdout(), nil
}

// StartNameServer starts namesrv --name h.Name --log-peers on h (h == nil:
// the node), outside the sandbox cgroup, listening dual-stack ("[::]:PORT")
// on the given TCP and UDP ports, and waits for it to print "ready".
func (s *Sandbox) StartNameServer(t testing.TB, h *Host, tcpPorts, udpPorts []int) *Process {
	t.Helper()
	if h == nil {
		h = s.Node
	}
	p := s.Start(t, h, false, nameServerArgv(t, h.Name, tcpPorts, udpPorts)...)
	if err := p.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatalf("sandbox: namesrv on %s: %v", h.Name, err)
	}
	return p
}

// nameServerArgv is the command line of namesrv answering as name on the
// given ports, dual-stack, logging its peers.
func nameServerArgv(t testing.TB, name string, tcpPorts, udpPorts []int) []string {
	t.Helper()
	bin := Binaries(t, NameSrvPkg)[NameSrvPkg]
	argv := []string{bin, "--name", name, "--log-peers"}
	if len(tcpPorts) > 0 {
		argv = append(argv, "--tcp", portList(tcpPorts))
	}
	if len(udpPorts) > 0 {
		argv = append(argv, "--udp", portList(udpPorts))
	}
	return argv
}

func portList(ports []int) string {
	var parts []string
	for _, p := range ports {
		parts = append(parts, "[::]:"+strconv.Itoa(p))
	}
	return strings.Join(parts, ",")
}
