// Package datapath brings socklb's BPF datapath up and takes it down: it
// checks the kernel (MinKernel), creates or reuses the pinned maps (through
// package lbmap, which owns their layouts), loads the program objects it
// owns against those maps, and attaches the programs from a table of
// Attachments through pinned links; Cleanup takes it all away again.
// Together with package lbmap it is the only code that touches the kernel's
// BPF state.
package datapath
