// Package lbmap is the one Go authority on socklb's BPF map layouts.
//
// The layouts are declared once, in C (bpf/lib/lb_types.h, maps in
// bpf/lib/lb_maps.h and bpf/lib/sock_maps.h), and mirrored here by bpf2go
// from bpf/lb_layouts.c, an object with every map and no program: every
// struct and enum is generated once, under an unexported name that
// layout.go gives a readable alias. The agent creates the maps from that
// object (Create) and every program object is loaded against them, so one
// set of Go types serves every program. Every writer (the agent's syncer)
// and every reader (socklb inspect, tests) goes through this package, so
// what is inspected is what the datapath reads. Byte order is converted in
// one place, convert.go.
//
// Maps are pinned by name under a pin directory on a bpffs, by default
// /sys/fs/bpf/socklb, and carry BTF, so `bpftool map dump pinned
// /sys/fs/bpf/socklb/lb_services` prints named fields. bpftool shows address
// and port fields as the raw network-order bytes; `socklb inspect` is the
// readable view.
package lbmap
