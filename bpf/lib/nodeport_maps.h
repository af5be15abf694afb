/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps only the north-south programs (XDP and tc on the node's devices)
 * use. Like every map, created once by the agent from bpf/lb_layouts.c and
 * handed to each object.
 */
#ifndef SOCKLB_LIB_NODEPORT_MAPS_H
#define SOCKLB_LIB_NODEPORT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "nodeport_types.h"

#define LB_NAT_MAX           262144 /* two entries per flow */
#define LB_SOURCE_RANGES_MAX 65536

/* Flow tuple -> its translation. LRU: a flow keeps its backend while the
 * backend set changes, and entries of finished flows age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_flow);
	__uint(max_entries, LB_NAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nat SEC(".maps");

/* One entry, key 0: the node's SNAT addresses and port range. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_node_cfg);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_node_config SEC(".maps");

/* (service id, client prefix) -> 1 for loadBalancerSourceRanges. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb_source_range_key);
	__type(value, __u8);
	__uint(max_entries, LB_SOURCE_RANGES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_source_ranges SEC(".maps");

#endif /* SOCKLB_LIB_NODEPORT_MAPS_H */
