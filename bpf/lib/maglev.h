/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Backend selection by Maglev consistent hashing for flows from outside the
 * node: every node computes the same table from the same backends, so a
 * flow hashes to the same backend on any node with no state shared, and a
 * backend change moves about 1/N of the flows. The flow hash is mirrored in
 * Go (pkg/maglev.FlowHash); a test holds the two to each other.
 */
#ifndef SOCKLB_LIB_MAGLEV_H
#define SOCKLB_LIB_MAGLEV_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"
#include "maglev_maps.h"
#include "nodeport_types.h"

static __always_inline __u64 maglev_mix(__u64 h, __u32 w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 32);
}

/* The hash of a flow's tuple (client, frontend, ports, protocol). */
static __always_inline __u64 maglev_flow_hash(const struct lb_flow_key *k)
{
	__u64 h = 0x736f636b6c62ULL; /* "socklb" */
	__u32 w;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		__builtin_memcpy(&w, &k->saddr[i * 4], 4);
		h = maglev_mix(h, w);
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__builtin_memcpy(&w, &k->daddr[i * 4], 4);
		h = maglev_mix(h, w);
	}
	h = maglev_mix(h, (__u32)k->sport | ((__u32)k->dport << 16));
	h = maglev_mix(h, k->proto);
	/* murmur3's finalizer: every input bit reaches every output bit. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The slot the frontend's Maglev table gives flow, 0 when it has no table
 * or the slot is not in the set picked from now (the table is swapped in
 * just after the syncer rewrote the slots). */
static __always_inline __u16 maglev_slot(const struct lb_service_value *master,
					 const struct lb_flow_key *flow)
{
	__u32 zero = 0, idx, *size, *slot;
	void *table;

	table = bpf_map_lookup_elem(&lb_maglev, &master->service_id);
	if (!table)
		return 0;
	size = bpf_map_lookup_elem(table, &zero);
	if (!size || *size == 0)
		return 0;
	idx = (__u32)(maglev_flow_hash(flow) % *size) + 1;
	slot = bpf_map_lookup_elem(table, &idx);
	if (!slot || !lb_slot_in_use(master, (__u16)*slot))
		return 0;
	return (__u16)*slot;
}

/* lb_select_backend, by the frontend's Maglev table when it has one. */
static __always_inline struct lb_backend *
maglev_select_backend(const struct lb_flow_key *flow, const struct lb_service_key *key,
		      const struct lb_service_value *master,
		      __u32 *backend_id, __u16 *slot, enum lb_reason *reason)
{
	struct lb_service_value *entry;
	struct lb_backend *backend;
	__u16 s = maglev_slot(master, flow);

	if (s) {
		entry = lb_lookup_slot(key, s);
		if (entry && (backend = lb_lookup_backend(entry->backend_id))) {
			*slot = s;
			*backend_id = entry->backend_id;
			*reason = LB_REASON_TRANSLATED;
			return backend;
		}
	}
	return lb_select_backend(key, master, backend_id, slot, reason);
}

#endif /* SOCKLB_LIB_MAGLEV_H */
