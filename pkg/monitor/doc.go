// Package monitor streams the socket hooks' load-balancing decisions from
// the datapath's ring buffer (bpf/lib/monitor.h): which process connected
// or sent to which frontend, and which backend it was given or why it was
// refused, which tcpdump can never show, as it sees only the backend.
//
// The hooks write events only while a watcher has set the flag in
// lb_monitor_config: with nobody watching, a decision costs one array
// lookup more. One watcher at a time (the ring buffer has one consumer),
// held by a lock file; a watcher that was killed leaves the flag set until
// the next one starts and stops, and the full ring buffer then costs only
// the failed reservations, counted in lb_monitor_drops.
package monitor
