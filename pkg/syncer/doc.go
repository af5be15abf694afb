// Package syncer makes the pinned BPF maps hold a desired state.
//
// It keeps a mirror of what the maps hold (restored from the maps themselves
// when the agent starts, so ids survive restarts and nothing is flushed),
// diffs the desired state against it and writes only the difference, in an
// order that never lets a connecting socket see a dangling id: backends, then
// backend slots, then the master entry; on removal the reverse.
package syncer
