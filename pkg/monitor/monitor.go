package monitor

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/lbmap"
)

// Event is one decision, as socklb monitor prints it.
type Event struct {
	Time        time.Time `json:"time"`
	Hook        string    `json:"hook"` // connect or sendmsg
	PID         uint32    `json:"pid"`
	Comm        string    `json:"comm"`
	Cookie      uint64    `json:"cookie"`       // the socket's
	NetnsCookie uint64    `json:"netns_cookie"` // its network namespace's
	Service     string    `json:"service"`      // "namespace/name:port"
	Protocol    string    `json:"protocol"`
	Frontend    string    `json:"frontend"`
	Backend     string    `json:"backend,omitempty"`
	Verdict     string    `json:"verdict"`
	Reason      string    `json:"reason,omitempty"` // why, when refused
}

// String reads like "18:40:00.123456 connect pid=42 comm=curl cookie=7
// netns=4026531840 default/web:http 10.96.0.50:80/TCP -> 10.244.0.3:8080
// translated".
func (e Event) String() string {
	to := e.Backend
	if to == "" {
		to = "-"
	}
	s := fmt.Sprintf("%s %s pid=%d comm=%s cookie=%d netns=%d %s %s/%s -> %s %s",
		e.Time.Format("15:04:05.000000"), e.Hook, e.PID, e.Comm, e.Cookie, e.NetnsCookie,
		e.Service, e.Frontend, e.Protocol, to, e.Verdict)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// Monitor is a running watch.
type Monitor struct {
	events, config, drops, names *ebpf.Map
	reader                       *ringbuf.Reader
	lock                         *os.File
	serviceNames                 map[uint32]string
}

// Open starts watching the datapath pinned under pinDir: it takes the
// watcher's lock and sets the flag that makes the hooks write events.
func Open(pinDir string) (*Monitor, error) {
	lock, err := lockWatch(pinDir)
	if err != nil {
		return nil, err
	}
	m := &Monitor{lock: lock, serviceNames: map[uint32]string{}}
	for _, pin := range []struct {
		name     string
		dst      **ebpf.Map
		readOnly bool
	}{
		{lbmap.MonitorEventsMap, &m.events, false},
		{lbmap.MonitorConfigMap, &m.config, false},
		{lbmap.MonitorDropsMap, &m.drops, true},
		{lbmap.ServiceNamesMap, &m.names, true},
	} {
		path := filepath.Join(pinDir, pin.name)
		em, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: pin.readOnly})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s (is the agent of this socklb version running?): %w", path, err)
		}
		*pin.dst = em
	}
	if m.reader, err = ringbuf.NewReader(m.events); err != nil {
		m.Close()
		return nil, fmt.Errorf("read the ring buffer: %w", err)
	}
	if err := m.setWatched(true); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// lockWatch takes the one watcher's lock of pinDir, a file under /run: a
// flock dies with its holder.
func lockWatch(pinDir string) (*os.File, error) {
	h := fnv.New64a()
	h.Write([]byte(filepath.Clean(pinDir)))
	dir := "/run/socklb"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make the monitor's lock directory: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("monitor-%016x.lock", h.Sum64()))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the monitor's lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another socklb monitor watches %s (one at a time: the ring buffer has one reader)", pinDir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func (m *Monitor) setWatched(on bool) error {
	var cfg lbmap.MonitorConfig
	if on {
		cfg.Enabled = 1
	}
	if err := m.config.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("set the monitor flag: %w", err)
	}
	return nil
}

// Close stops the watch: the hooks stop writing events.
func (m *Monitor) Close() error {
	var errs []error
	if m.config != nil && m.reader != nil {
		errs = append(errs, m.setWatched(false))
	}
	if m.reader != nil {
		if err := m.reader.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, em := range []*ebpf.Map{m.events, m.config, m.drops, m.names} {
		if em != nil {
			errs = append(errs, em.Close())
		}
	}
	errs = append(errs, m.lock.Close())
	return errors.Join(errs...)
}

// Interrupt makes a blocked Next, and every later one, return ErrStopped;
// the flag stays set until Close.
func (m *Monitor) Interrupt() { m.reader.Close() }

// ErrStopped is what Next returns once Interrupt was called.
var ErrStopped = errors.New("the monitor was stopped")

// pollInterval bounds how long an event waits to be read: the hooks wake
// the reader only once much is waiting (bpf/lib/monitor.h).
const pollInterval = 100 * time.Millisecond

// Next waits for the next decision.
func (m *Monitor) Next() (Event, error) {
	var rec ringbuf.Record
	for {
		m.reader.SetDeadline(time.Now().Add(pollInterval))
		err := m.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return Event{}, ErrStopped
		}
		if err != nil {
			return Event{}, err
		}
		break
	}
	var raw lbmap.MonitorEvent
	if err := decode(rec.RawSample, &raw); err != nil {
		return Event{}, err
	}
	return m.eventOf(raw), nil
}

// Drops is how many events the hooks lost to a full ring buffer.
func (m *Monitor) Drops() (uint64, error) {
	var perCPU []uint64
	if err := m.drops.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read %s: %w", lbmap.MonitorDropsMap, err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// ServiceName is the "namespace/name:port" of a service id, from the map
// the agent keeps for readers.
func (m *Monitor) ServiceName(id uint32) string {
	if n, ok := m.serviceNames[id]; ok {
		return n
	}
	var v lbmap.ServiceName
	if err := m.names.Lookup(id, &v); err != nil {
		return fmt.Sprintf("service-id-%d", id)
	}
	m.serviceNames[id] = v.Get()
	return v.Get()
}

// MatchService reports whether the service "namespace/name:port" is the
// Service ref ("namespace/name"); an empty ref matches all.
func MatchService(service, ref string) bool {
	if ref == "" {
		return true
	}
	name, _, _ := strings.Cut(service, ":")
	return name == ref
}
