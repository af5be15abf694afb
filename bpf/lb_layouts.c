// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * No program: the maps and types of every socklb object, in one BTF. bpf2go
 * turns it into pkg/lbmap's Go mirrors (every struct and enum, once), and the
 * agent creates and pins the maps from it; the program objects (sock_lb.c,
 * later XDP and tc) are handed these maps instead of creating their own, and
 * a test checks that their BTF agrees with this one.
 */
#include "lib/lb_types.h"
#include "lib/lb_maps.h"
#include "lib/sock_maps.h"
#include "lib/nodeport_maps.h"
#include "lib/maglev_maps.h"
#include "lib/monitor.h"
#include "lib/sock_state.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* No map is keyed or valued by enum lb_reason (an array's key must be a plain
 * __u32), so nothing else would put it in BTF for bpf2go. Never loaded. */
__attribute__((noinline)) int lb_layouts_reason(enum lb_reason reason)
{
	return reason;
}

/* Likewise for the monitor's event, which only a ring buffer carries. */
__attribute__((noinline)) int lb_layouts_monitor_event(struct lb_monitor_event *e)
{
	return e->pid;
}
