/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Maglev lookup tables of the north-south frontends that balance by
 * consistent hashing (socklb.io/lb-algorithm: maglev). The agent computes
 * each table (pkg/maglev) and swaps it in whole, as one inner map.
 */
#ifndef SOCKLB_LIB_MAGLEV_MAPS_H
#define SOCKLB_LIB_MAGLEV_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define LB_MAGLEV_MAX        65536 /* frontends with a table */
#define LB_MAGLEV_TABLE_SIZE 16381 /* the default; the agent's flag sets it */

/* One frontend's table: element 0 holds the table size M, elements 1..M
 * the slot (in the frontend's default scope) each hash value picks. Any
 * size: BPF_F_INNER_MAP lets inner maps differ from this template. */
struct lb_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LB_MAGLEV_TABLE_SIZE + 1);
	__uint(map_flags, BPF_F_INNER_MAP);
};

/* Service id -> its table. A frontend without one balances at random. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, LB_MAGLEV_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_maglev_table);
} lb_maglev SEC(".maps");

#endif /* SOCKLB_LIB_MAGLEV_MAPS_H */
