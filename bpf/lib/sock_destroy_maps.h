/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The map of the socket-destroying iterator (bpf/sock_destroy.c): which
 * connected UDP sockets to destroy. The agent fills it right before a walk
 * and empties it after, so it is not pinned: no other program reads it.
 */
#ifndef SOCKLB_LIB_SOCK_DESTROY_MAPS_H
#define SOCKLB_LIB_SOCK_DESTROY_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_types.h"

#define LB_SOCK_DESTROY_MAX 65536

/* (socket cookie, peer address, port, proto) -> 1: destroy that connected
 * socket. A cookie of 0 matches every connected socket whose peer is the
 * address: sockets connected to a VIP before its Service had a frontend
 * were never translated and carry no cookie socklb knows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_sock_key);
	__type(value, __u8);
	__uint(max_entries, LB_SOCK_DESTROY_MAX);
} lb_sock_destroy SEC(".maps");

#endif /* SOCKLB_LIB_SOCK_DESTROY_MAPS_H */
