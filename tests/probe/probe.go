// Package probe is the line format sockprobe prints and the tests read: one
// JSON object per line, declared once for the writer and its readers.
package probe

// Result is one line of sockprobe tcp, udp or udp-connected.
type Result struct {
	I       int    `json:"i"`
	OK      bool   `json:"ok"`
	Backend string `json:"backend"`
	// Peer is getpeername() (tcp, udp-connected), From the source address
	// recvfrom() reported (udp), Local getsockname().
	Peer  string `json:"peer,omitempty"`
	From  string `json:"from,omitempty"`
	Local string `json:"local,omitempty"`
	Err   string `json:"err"`
	Errno string `json:"errno"` // "ECONNREFUSED", "ENETUNREACH", "ETIMEDOUT", ... or ""
	DurUS int64  `json:"dur_us"`
}

// Summary is the single line of sockprobe tcp-loop.
type Summary struct {
	Attempts   int            `json:"attempts"`
	Failures   int            `json:"failures"`
	FirstErr   string         `json:"first_err"`
	FirstErrno string         `json:"first_errno"`
	Errnos     map[string]int `json:"errnos"`   // failures by errno ("other" without one)
	Backends   map[string]int `json:"backends"` // successes by backend name
	DurMS      int64          `json:"dur_ms"`
}

// Change is a line of sockprobe watch: the backend answering from UnixNano on.
type Change struct {
	UnixNano int64  `json:"unix_nano"`
	Backend  string `json:"backend"`
}

// Stream is the single line of sockprobe tcp-stream: one connection kept
// open, a message echoed every interval.
type Stream struct {
	Backend  string `json:"backend"` // the name the backend answered first
	Messages int    `json:"messages"`
	Err      string `json:"err"` // the first failure, which ends the stream
	DurMS    int64  `json:"dur_ms"`
}
