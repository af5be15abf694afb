/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Frontend lookup and backend selection, shared by every program that
 * balances: the socket hooks call them today, an XDP or tc program will call
 * the same functions, so every hook picks backends the same way.
 */
#ifndef SOCKLB_LIB_LB_H
#define SOCKLB_LIB_LB_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_types.h"
#include "lb_maps.h"

/* The master entry of the frontend in key (addr, port and proto set), or NULL
 * when it is none. With scope_switch, a frontend whose default master says
 * LB_SVC_F_TWO_SCOPES yields its LB_SCOPE_INTERNAL master: callers that only
 * see clients on the node (the socket hooks) pass 1, callers that see
 * clients from outside (XDP) pass 0. key->scope is left at the scope found,
 * so lb_lookup_slot reads that scope's slots. */
static __always_inline struct lb_service_value *
lb_lookup_service(struct lb_service_key *key, const int scope_switch)
{
	struct lb_service_value *svc;

	key->scope = LB_SCOPE_DEFAULT;
	key->slot = 0;
	svc = bpf_map_lookup_elem(&lb_services, key);
	if (!svc || !scope_switch || !(svc->flags & LB_SVC_F_TWO_SCOPES))
		return svc;
	key->scope = LB_SCOPE_INTERNAL;
	return bpf_map_lookup_elem(&lb_services, key);
}

/* The entry of slot in the frontend and scope of key. */
static __always_inline struct lb_service_value *
lb_lookup_slot(const struct lb_service_key *frontend, __u16 slot)
{
	struct lb_service_key key = *frontend;

	key.slot = slot;
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* A random slot of the set the datapath picks from now: active backends,
 * or the terminating ones while none is active. 0 when there is none. */
static __always_inline __u16 lb_pick_slot(const struct lb_service_value *master)
{
	__u32 r = bpf_get_prandom_u32();

	if (master->count > 0)
		return (__u16)(r % master->count) + 1;
	if (master->terminating > 0)
		return master->count + (__u16)(r % master->terminating) + 1;
	return 0;
}

/* Whether slot is in the set lb_pick_slot picks from now. */
static __always_inline int lb_slot_in_use(const struct lb_service_value *master,
					  __u16 slot)
{
	if (slot == 0)
		return 0;
	if (master->count > 0)
		return slot <= master->count;
	return slot <= master->terminating;
}

static __always_inline struct lb_backend *lb_lookup_backend(__u32 backend_id)
{
	return bpf_map_lookup_elem(&lb_backends, &backend_id);
}

/* Picks a backend of the frontend in key (as lb_lookup_service left it) and
 * says where it was found. NULL with *reason set when there is none. */
static __always_inline struct lb_backend *
lb_select_backend(const struct lb_service_key *key,
		  const struct lb_service_value *master,
		  __u32 *backend_id, __u16 *slot, enum lb_reason *reason)
{
	struct lb_service_value *entry;
	struct lb_backend *backend;

	*slot = lb_pick_slot(master);
	if (!*slot) {
		*reason = LB_REASON_NO_BACKEND;
		return NULL;
	}
	entry = lb_lookup_slot(key, *slot);
	if (!entry) {
		*reason = LB_REASON_SLOT_MISSING;
		return NULL;
	}
	*backend_id = entry->backend_id;
	backend = lb_lookup_backend(*backend_id);
	if (!backend) {
		*reason = LB_REASON_BACKEND_MISSING;
		return NULL;
	}
	*reason = LB_REASON_TRANSLATED;
	return backend;
}

/* Counts one event of reason on this CPU. A plain increment: the slot is
 * this CPU's own, and the rare count lost when a preempted program races
 * another on the same CPU does not matter to a metric. */
static __always_inline void lb_count(enum lb_reason reason)
{
	__u32 key = reason;
	__u64 *n = bpf_map_lookup_elem(&lb_counters, &key);

	if (n)
		*n += 1;
}

#define LB_NS_PER_SEC 1000000000ULL

/* The backend of the client's affinity entry in akey (service_id set),
 * while its time is not up and its slot still holds it in the set picked
 * from now. The entry's clock restarts: the timeout counts from the last
 * connect, as kube-proxy's affinity sets count from the last packet. */
static __always_inline struct lb_backend *
lb_affinity_backend(const struct lb_service_key *key, const struct lb_service_value *master,
		    const struct lb_affinity_key *akey, __u64 now, __u32 *backend_id, __u16 *slot)
{
	struct lb_affinity_value *a = bpf_map_lookup_elem(&lb_affinity, akey);
	struct lb_service_value *entry;

	if (!a || now - a->last_ns > (__u64)master->affinity_timeout * LB_NS_PER_SEC ||
	    !lb_slot_in_use(master, a->slot))
		return NULL;
	entry = lb_lookup_slot(key, a->slot);
	if (!entry || entry->backend_id != a->backend_id)
		return NULL;
	a->last_ns = now;
	*backend_id = a->backend_id;
	*slot = a->slot;
	return lb_lookup_backend(*backend_id);
}

/* lb_select_backend for a frontend with LB_SVC_F_AFFINITY: the client of
 * akey keeps its backend while lb_affinity_backend allows (reason is then
 * LB_REASON_AFFINITY_HIT), and a backend picked anew becomes its entry. */
static __always_inline struct lb_backend *
lb_select_affine(const struct lb_service_key *key, const struct lb_service_value *master,
		 struct lb_affinity_key *akey, __u32 *backend_id, __u16 *slot, enum lb_reason *reason)
{
	struct lb_affinity_value val = {};
	struct lb_backend *backend;
	__u64 now = bpf_ktime_get_ns();

	akey->service_id = master->service_id;
	backend = lb_affinity_backend(key, master, akey, now, backend_id, slot);
	if (backend) {
		*reason = LB_REASON_AFFINITY_HIT;
		return backend;
	}
	backend = lb_select_backend(key, master, backend_id, slot, reason);
	if (!backend)
		return NULL;
	val.last_ns = now;
	val.backend_id = *backend_id;
	val.slot = *slot;
	if (bpf_map_update_elem(&lb_affinity, akey, &val, BPF_ANY))
		lb_count(LB_REASON_AFFINITY_WRITE);
	return backend;
}

/* A UDP socket's datagram to the backend it remembers keeps the client's
 * affinity entry fresh, as every packet does in kube-proxy, while the entry
 * still names that backend. */
static __always_inline void lb_affinity_touch(struct lb_affinity_key *akey,
					      const struct lb_service_value *master, __u32 backend_id)
{
	struct lb_affinity_value *a;

	akey->service_id = master->service_id;
	a = bpf_map_lookup_elem(&lb_affinity, akey);
	if (a && a->backend_id == backend_id)
		a->last_ns = bpf_ktime_get_ns();
}

#endif /* SOCKLB_LIB_LB_H */
