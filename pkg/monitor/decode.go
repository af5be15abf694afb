package monitor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// decode reads one ring buffer record, written in the host's byte order.
func decode(sample []byte, raw *lbmap.MonitorEvent) error {
	if err := binary.Read(bytes.NewReader(sample), binary.NativeEndian, raw); err != nil {
		return fmt.Errorf("decode a monitor event of %d bytes: %w", len(sample), err)
	}
	return nil
}

// eventOf turns a raw event into what is shown; its monotonic time is
// placed on the wall clock.
func (m *Monitor) eventOf(raw lbmap.MonitorEvent) Event {
	e := Event{
		Time:        wallTime(raw.TimeNs),
		Hook:        raw.Hook.String(),
		PID:         raw.Pid,
		Comm:        unix.ByteSliceToString(int8sToBytes(raw.Comm[:])),
		Cookie:      raw.Cookie,
		NetnsCookie: raw.NetnsCookie,
		Service:     m.ServiceName(raw.ServiceId),
		Protocol:    desired.Protocol(raw.Proto).String(),
		Frontend:    raw.FrontendAddr().String(),
		Verdict:     raw.Verdict.String(),
	}
	if b := raw.BackendAddr(); b.IsValid() {
		e.Backend = b.String()
	}
	if raw.Verdict == lbmap.VerdictRefused {
		e.Reason = lbmap.Reason(raw.Reason).String()
	}
	return e
}

func int8sToBytes(s []int8) []byte {
	b := make([]byte, len(s))
	for i, c := range s {
		b[i] = byte(c)
	}
	return b
}

// wallTime places a CLOCK_MONOTONIC reading (bpf_ktime_get_ns) on the wall
// clock.
func wallTime(mono uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(uint64(ts.Nano()) - mono))
}
