/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps every load-balancing program shares (socket hooks today, XDP and
 * tc next), pinned by name under the agent's pin directory. Each object that
 * includes this header declares the same maps; the agent creates them once
 * from bpf/lb_layouts.c and hands them to every object it loads.
 */
#ifndef SOCKLB_LIB_LB_MAPS_H
#define SOCKLB_LIB_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_types.h"

/* Map sizes. The agent may override max_entries when it creates the maps. */
#define LB_SERVICES_MAX     262144 /* master entries plus backend slots */
#define LB_BACKENDS_MAX     131072
#define LB_REV_NAT_MAX      131072
#define LB_AFFINITY_MAX     65536

/* Frontend (and slot) -> master entry or the backend id in that slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service_value);
	__uint(max_entries, LB_SERVICES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

/* Backend id -> address, port and state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* Service id -> the frontend replies must appear to come from. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_rev_nat_value);
	__uint(max_entries, LB_REV_NAT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_nat SEC(".maps");

/* Service id -> "namespace/name:port". No program reads it: it lets `socklb
 * inspect` and bpftool name what the datapath holds from the pins alone. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_service_name);
	__uint(max_entries, LB_REV_NAT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_service_names SEC(".maps");

/* (client, service id) -> its backend, for sessionAffinity=ClientIP. LRU:
 * clients that went away age out. Read only for frontends whose master
 * says LB_SVC_F_AFFINITY, so other connects pay nothing for it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(max_entries, LB_AFFINITY_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

/* enum lb_reason -> how often, per CPU: counting costs no atomic and no
 * ring-buffer traffic; readers sum the CPUs. The key is a plain __u32: the
 * kernel accepts only a 32-bit int as the BTF key of an array. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LB_REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_counters SEC(".maps");

#endif /* SOCKLB_LIB_LB_MAPS_H */
