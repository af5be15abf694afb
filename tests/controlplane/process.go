package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child started by the harness. Only these PIDs are ever
// signalled; nothing is looked up or killed by name.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

func startProcess(name, binary string, args []string, logPath string) (*process, error) {
	// Appending keeps the log of an earlier run of the same component (an
	// apiserver restart) so a failing test sees both.
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s log %s: %w", name, logPath, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "==== %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), binary, strings.Join(args, " "))

	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A process group of its own keeps a Ctrl-C on the test's terminal from
		// reaching the child before Stop can shut it down in order.
		Setpgid: true,
		// If the test binary dies (timeout panic, SIGKILL) the children must not
		// outlive it holding ports and memory.
		Pdeathsig: syscall.SIGKILL,
	}
	var startErr error
	onForkThread(func() { startErr = cmd.Start() })
	if startErr != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, binary, startErr)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

var (
	forkThreadOnce sync.Once
	forkRequests   = make(chan func())
)

// onForkThread runs start on one OS thread that never exits. Pdeathsig fires
// when the thread that forked the child exits, not the process, and tests in
// this repository lock goroutines to threads to enter network namespaces and
// let those threads die; a child forked from such a thread would be killed
// mid-test. A parked, permanently locked thread is also never moved into
// another network namespace, so children start in the host's.
func onForkThread(start func()) {
	forkThreadOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for request := range forkRequests {
				request()
			}
		}()
	})
	done := make(chan struct{})
	forkRequests <- func() {
		defer close(done)
		start()
	}
	<-done
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exitedError reports why the process is gone, or nil while it runs.
func (p *process) exitedError() error {
	select {
	case <-p.exited:
		if p.waitErr == nil {
			return fmt.Errorf("%s (pid %d) exited with status 0", p.name, p.pid())
		}
		return fmt.Errorf("%s (pid %d) exited: %w", p.name, p.pid(), p.waitErr)
	default:
		return nil
	}
}

// stop sends SIGTERM, escalates to SIGKILL after gracePeriod and waits for the
// exit. Signal goes through the pidfd the runtime holds, so a recycled PID is
// never hit.
func (p *process) stop(gracePeriod time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGTERM to %s (pid %d): %w", p.name, p.pid(), err)
	}
	timer := time.NewTimer(gracePeriod)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGKILL to %s (pid %d): %w", p.name, p.pid(), err)
	}
	<-p.exited
	return nil
}

// freeLoopbackPorts holds all listeners open until every port is chosen so
// the ports differ from each other. The ports come from below the kernel's
// ephemeral range (32768-60999 by default): a port taken from inside it could
// be handed to some outgoing connection before the component binds it, which
// happened to the controller-manager while another control plane was busy.
func freeLoopbackPorts(count int) ([]int, error) {
	const lowest, highest = 20000, 32000
	listeners := make([]net.Listener, 0, count)
	defer func() {
		for _, listener := range listeners {
			listener.Close()
		}
	}()
	ports := make([]int, 0, count)
	for attempt := 0; len(ports) < count; attempt++ {
		if attempt == 1000 {
			return nil, fmt.Errorf("reserving %d free ports on 127.0.0.1 in %d-%d: too many in use", count, lowest, highest)
		}
		port := lowest + rand.IntN(highest-lowest)
		listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use: try another
		}
		listeners = append(listeners, listener)
		ports = append(ports, port)
	}
	return ports, nil
}

// TailFile returns the last maxLines lines of the file at path, for printing
// a component's log when a test fails.
func TailFile(path string, maxLines int) (string, error) {
	const maxTailBytes = 256 << 10
	file, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return "", fmt.Errorf("reading size of %s: %w", path, err)
	}
	if info.Size() > maxTailBytes {
		if _, err := file.Seek(-maxTailBytes, io.SeekEnd); err != nil {
			return "", fmt.Errorf("seeking in %s: %w", path, err)
		}
	}
	contents, err := io.ReadAll(file)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(contents, "\n"), []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return string(bytes.Join(lines, []byte("\n"))), nil
}
