/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-socket state in socket-local storage (BPF_MAP_TYPE_SK_STORAGE): freed
 * with the socket and never evicted, unlike the LRU maps of sock_maps.h,
 * where other sockets' entries push out a long-lived socket's (measured: 36
 * of 60 long-lived UDP sockets changed backend after 300,000 others), and
 * cheaper to write than a hash insert. One socket holds one reverse-NAT
 * entry (the peer a connect gave it) and one remembered backend (of the one
 * VIP an unconnected UDP socket sends to); a second VIP or backend of an
 * unconnected socket, and every socket on a kernel without socket-local
 * storage in these hooks, use the LRU maps as before.
 */
#ifndef SOCKLB_LIB_SOCK_STATE_H
#define SOCKLB_LIB_SOCK_STATE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_types.h"
#include "sock_maps.h"

/* Set by the loader after probing (and off with --socket-storage=false):
 * whether the socket hooks may use lb_sock_storage. The verifier prunes the
 * calls where this stays 0. */
volatile const __u32 cfg_have_sk_storage = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lb_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_storage SEC(".maps");

static __always_inline int sock_addr_key_equal(const __u8 *addr, __be16 port, __u8 proto,
					       const struct lb_sock_key *k)
{
	__u64 a[2], b[2];

	if (port != k->port || proto != k->proto)
		return 0;
	__builtin_memcpy(a, addr, 16);
	__builtin_memcpy(b, k->addr, 16);
	return a[0] == b[0] && a[1] == b[1];
}

static __always_inline struct lb_sock_state *sock_state(struct bpf_sock_addr *ctx, int create)
{
	struct bpf_sock *sk = ctx->sk;

	if (!cfg_have_sk_storage || !sk)
		return NULL;
	return bpf_sk_storage_get(&lb_sock_storage, sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

/* The backend the socket was given for the VIP in key. */
static __always_inline struct lb_sock_backend_value *
sock_state_backend(struct bpf_sock_addr *ctx, const struct lb_sock_key *key)
{
	struct lb_sock_state *st = sock_state(ctx, 0);

	if (st && sock_addr_key_equal(st->vip, st->vip_port, st->vip_proto, key))
		return &st->backend;
	return bpf_map_lookup_elem(&lb_sock_backend, key);
}

static __always_inline int sock_state_set_backend(struct bpf_sock_addr *ctx, const struct lb_sock_key *key,
						  const struct lb_sock_backend_value *val)
{
	struct lb_sock_state *st = sock_state(ctx, 1);

	if (st && (!st->vip_proto || sock_addr_key_equal(st->vip, st->vip_port, st->vip_proto, key))) {
		__builtin_memcpy(st->vip, key->addr, 16);
		st->vip_port = key->port;
		st->vip_proto = key->proto;
		st->backend = *val;
		return 0;
	}
	return bpf_map_update_elem(&lb_sock_backend, key, val, BPF_ANY);
}

/* The service id of the frontend the socket reached through the backend in
 * key, 0 when none. */
static __always_inline __u32 sock_state_rev_nat(struct bpf_sock_addr *ctx, const struct lb_sock_key *key)
{
	struct lb_sock_state *st = sock_state(ctx, 0);
	struct lb_sock_rev_nat_value *rnat;

	if (st && st->rev_proto && sock_addr_key_equal(st->rev_addr, st->rev_port, st->rev_proto, key))
		return st->rev_service_id;
	rnat = bpf_map_lookup_elem(&lb_sock_rev_nat, key);
	return rnat ? rnat->service_id : 0;
}

/* Records which frontend the socket reached through the backend in key. A
 * connect takes the socket's one entry (a socket has one peer); a sendmsg
 * takes it while it is free or its own, and the LRU otherwise. A hash write
 * costs far more than a lookup, and every datagram comes here: the LRU is
 * written only when its entry differs. */
static __always_inline int sock_state_set_rev_nat(struct bpf_sock_addr *ctx, const struct lb_sock_key *key,
						  __u32 service_id, int sendmsg)
{
	struct lb_sock_rev_nat_value *cur, val = {.service_id = service_id};
	struct lb_sock_state *st = sock_state(ctx, 1);

	if (st && (!sendmsg || !st->rev_proto ||
		   sock_addr_key_equal(st->rev_addr, st->rev_port, st->rev_proto, key))) {
		__builtin_memcpy(st->rev_addr, key->addr, 16);
		st->rev_port = key->port;
		st->rev_proto = key->proto;
		st->rev_service_id = service_id;
		return 0;
	}
	cur = bpf_map_lookup_elem(&lb_sock_rev_nat, key);
	if (cur && cur->service_id == service_id)
		return 0;
	return bpf_map_update_elem(&lb_sock_rev_nat, key, &val, BPF_ANY);
}

#endif /* SOCKLB_LIB_SOCK_STATE_H */
