/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps only the socket hooks use: what a translated socket was given.
 * LRU, so entries of closed sockets age out instead of needing a close hook.
 */
#ifndef SOCKLB_LIB_SOCK_MAPS_H
#define SOCKLB_LIB_SOCK_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_types.h"

#define LB_SOCK_REV_NAT_MAX 262144
#define LB_SOCK_BACKEND_MAX 131072
#define LB_REFUSE_MAX       65536

/* (socket, backend) -> service id, for recvmsg and getpeername. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_key);
	__type(value, struct lb_sock_rev_nat_value);
	__uint(max_entries, LB_SOCK_REV_NAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_rev_nat SEC(".maps");

/* (unconnected UDP socket, VIP) -> the backend its datagrams go to. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_key);
	__type(value, struct lb_sock_backend_value);
	__uint(max_entries, LB_SOCK_BACKEND_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_backend SEC(".maps");

/* Service CIDRs and ClusterIPs -> enum lb_refuse_kind: where a connect
 * that found no frontend is refused at once. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb_refuse_key);
	__type(value, enum lb_refuse_kind);
	__uint(max_entries, LB_REFUSE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_refuse SEC(".maps");

#endif /* SOCKLB_LIB_SOCK_MAPS_H */
