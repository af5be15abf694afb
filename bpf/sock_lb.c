// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * Socket-level load balancing at the cgroup v2 sock_addr hooks.
 *
 * connect4/6 and sendmsg4/6 pick a backend once per socket and rewrite the
 * destination, so a connection to a ClusterIP goes to the pod directly with no
 * per-packet work afterwards. recvmsg4/6 and getpeername4/6 translate the
 * backend address back to the VIP so the application only ever sees the VIP.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/addr.h"
#include "lib/lb.h"
#include "lib/sock_maps.h"
#include "lib/monitor.h"
#include "lib/sock_state.h"

#define SYS_REJECT  0
#define SYS_PROCEED 1

#define SOCK_STREAM 1
#define SOCK_DGRAM  2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader after probing the kernel: bpf_set_retval (5.18+) lets a
 * refused connect() fail with ECONNREFUSED instead of the default EPERM. The
 * verifier prunes the call on kernels where this stays 0. */
volatile const __u32 cfg_have_set_retval = 0;

/* The verifier wants the ctx address fields read and written as whole,
 * constant-offset 32-bit words. */
static __always_inline void ctx_get_dst(struct bpf_sock_addr *ctx, int v6,
					union lb_addr *a)
{
	if (v6) {
		a->w[0] = ctx->user_ip6[0];
		a->w[1] = ctx->user_ip6[1];
		a->w[2] = ctx->user_ip6[2];
		a->w[3] = ctx->user_ip6[3];
	} else {
		addr_from_v4(a, ctx->user_ip4);
	}
}

static __always_inline void ctx_set_dst(struct bpf_sock_addr *ctx, int v6,
					const union lb_addr *a)
{
	if (v6) {
		ctx->user_ip6[0] = a->w[0];
		ctx->user_ip6[1] = a->w[1];
		ctx->user_ip6[2] = a->w[2];
		ctx->user_ip6[3] = a->w[3];
	} else {
		ctx->user_ip4 = a->w[3];
	}
}

static __always_inline __be16 ctx_get_port(struct bpf_sock_addr *ctx)
{
	/* user_port holds a __be16 in a 32-bit field. */
	volatile __u32 port = ctx->user_port;
	return (__be16)port;
}

static __always_inline void ctx_set_port(struct bpf_sock_addr *ctx, __be16 port)
{
	ctx->user_port = (__u32)port;
}

static __always_inline __u8 ctx_get_proto(struct bpf_sock_addr *ctx)
{
	switch (ctx->type) {
	case SOCK_STREAM:
		return ctx->protocol == 0 || ctx->protocol == IPPROTO_TCP ? IPPROTO_TCP : 0;
	case SOCK_DGRAM:
		return ctx->protocol == 0 || ctx->protocol == IPPROTO_UDP ? IPPROTO_UDP : 0;
	}
	return 0;
}

static __always_inline void copy_addr(__u8 *dst, const union lb_addr *src)
{
	__builtin_memcpy(dst, src->b, 16);
}

/* The frontend key of ctx's destination, in the default scope. 0 when the
 * socket's protocol is none a frontend can have. */
static __always_inline int sock_frontend_key(struct bpf_sock_addr *ctx, int v6,
					     struct lb_service_key *key)
{
	union lb_addr dst;

	key->proto = ctx_get_proto(ctx);
	if (!key->proto)
		return 0;
	ctx_get_dst(ctx, v6, &dst);
	copy_addr(key->addr, &dst);
	key->port = ctx_get_port(ctx);
	return 1;
}

/* The backend an unconnected UDP socket was given for this frontend, while
 * its slot still holds it and is in the set the datapath picks from now. */
static __always_inline struct lb_backend *
sock_remembered_backend(struct bpf_sock_addr *ctx, const struct lb_sock_key *skey,
			const struct lb_service_key *key,
			const struct lb_service_value *master,
			__u32 *backend_id, __u16 *slot)
{
	struct lb_sock_backend_value *sb;
	struct lb_service_value *entry;

	sb = sock_state_backend(ctx, skey);
	if (!sb || sb->service_id != master->service_id ||
	    !lb_slot_in_use(master, sb->slot))
		return NULL;
	entry = lb_lookup_slot(key, sb->slot);
	if (!entry || entry->backend_id != sb->backend_id)
		return NULL;
	*backend_id = sb->backend_id;
	*slot = sb->slot;
	return lb_lookup_backend(*backend_id);
}

static __always_inline void sock_key_init(struct lb_sock_key *skey, __u64 cookie,
					  const __u8 *addr, __be16 port, __u8 proto)
{
	skey->cookie = cookie;
	__builtin_memcpy(skey->addr, addr, 16);
	skey->port = port;
	skey->proto = proto;
}

/* Translates ctx's destination, the frontend of key and master, to one of
 * its backends. udp_sendmsg: the socket keeps the backend it was given for
 * as long as that backend stays in the set. */
static __always_inline enum lb_reason
sock_xlate_fwd(struct bpf_sock_addr *ctx, int v6, int udp_sendmsg,
	       const struct lb_service_key *key,
	       const struct lb_service_value *master)
{
	struct lb_sock_key vip_key = {}, backend_key = {};
	struct lb_backend *backend = NULL;
	enum lb_reason reason = LB_REASON_TRANSLATED;
	union lb_addr baddr;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 backend_id = 0;
	__u16 slot = 0;
	int remembered = 0;

	if (udp_sendmsg) {
		sock_key_init(&vip_key, cookie, key->addr, key->port, key->proto);
		backend = sock_remembered_backend(ctx, &vip_key, key, master, &backend_id, &slot);
		remembered = backend != NULL;
	}
	if (master->flags & LB_SVC_F_AFFINITY) {
		/* Every socket of one network namespace (pod) is one client. */
		struct lb_affinity_key akey = {.netns_cookie = bpf_get_netns_cookie(ctx)};

		if (remembered)
			lb_affinity_touch(&akey, master, backend_id);
		else
			backend = lb_select_affine(key, master, &akey, &backend_id, &slot, &reason);
	} else if (!backend) {
		backend = lb_select_backend(key, master, &backend_id, &slot, &reason);
	}
	if (!backend)
		return reason;
	__builtin_memcpy(baddr.b, backend->addr, 16);
	/* A backend of the other family cannot be reached from this socket. */
	if (!v6 && !addr_is_v4_mapped(&baddr))
		return LB_REASON_WRONG_FAMILY;

	if (udp_sendmsg && !remembered) {
		struct lb_sock_backend_value sb = {
			.backend_id = backend_id,
			.service_id = master->service_id,
			.slot = slot,
		};
		if (sock_state_set_backend(ctx, &vip_key, &sb))
			lb_count(LB_REASON_SOCK_MAP_WRITE);
	}
	sock_key_init(&backend_key, cookie, backend->addr, backend->port, key->proto);
	/* Best effort: without it only getpeername/recvfrom show the backend. */
	if (sock_state_set_rev_nat(ctx, &backend_key, master->service_id, udp_sendmsg))
		lb_count(LB_REASON_SOCK_MAP_WRITE);

	ctx_set_dst(ctx, v6, &baddr);
	ctx_set_port(ctx, backend->port);
	return reason == LB_REASON_AFFINITY_HIT ? reason : LB_REASON_TRANSLATED;
}

/* Shows the VIP again where the socket would see the backend's address. */
static __always_inline void sock_xlate_rev(struct bpf_sock_addr *ctx, int v6)
{
	struct lb_sock_key skey = {};
	struct lb_rev_nat_value *vip;
	__u32 service_id;
	union lb_addr src;
	__u8 proto;

	proto = ctx_get_proto(ctx);
	if (!proto)
		return;

	ctx_get_dst(ctx, v6, &src);
	skey.cookie = bpf_get_socket_cookie(ctx);
	copy_addr(skey.addr, &src);
	skey.port = ctx_get_port(ctx);
	skey.proto = proto;

	service_id = sock_state_rev_nat(ctx, &skey);
	if (!service_id)
		return;
	vip = bpf_map_lookup_elem(&lb_rev_nat, &service_id);
	if (!vip)
		return; /* the Service is gone: the backend is the truth now */

	__builtin_memcpy(src.b, vip->addr, 16);
	if (!v6 && !addr_is_v4_mapped(&src))
		return;
	ctx_set_dst(ctx, v6, &src);
	ctx_set_port(ctx, vip->port);
}

/* The verdict on a connect or sendmsg whose destination is a frontend. A
 * refused one fails with ECONNREFUSED, as kube-proxy's REJECT makes it. */
static __always_inline int verdict(enum lb_reason reason)
{
	if (reason == LB_REASON_TRANSLATED)
		return SYS_PROCEED;
	if (cfg_have_set_retval)
		bpf_set_retval(-ECONNREFUSED);
	return SYS_REJECT;
}

/* Whether an address that is no frontend is refused, and why: a ClusterIP
 * on a port or protocol it does not serve, or an address of a Service CIDR
 * no Service holds. Anything else goes out untouched. */
static __always_inline int sock_refused(const struct lb_service_key *key, enum lb_reason *reason)
{
	struct lb_refuse_key rkey = {.prefixlen = 128};
	enum lb_refuse_kind *kind;

	__builtin_memcpy(rkey.addr, key->addr, 16);
	kind = bpf_map_lookup_elem(&lb_refuse, &rkey);
	if (!kind)
		return 0;
	*reason = *kind == LB_REFUSE_NO_PORT ? LB_REASON_NO_PORT : LB_REASON_UNALLOCATED;
	return 1;
}

static __always_inline int sock_fwd(struct bpf_sock_addr *ctx, int v6, int udp_sendmsg)
{
	struct lb_service_key key = {};
	struct lb_service_value *master;
	enum lb_reason reason;

	if (!sock_frontend_key(ctx, v6, &key))
		return SYS_PROCEED;
	/* Socket hooks see only clients on the node: scope_switch. */
	master = lb_lookup_service(&key, 1);
	if (!master) {
		if (!sock_refused(&key, &reason))
			return SYS_PROCEED;
		lb_count(reason);
		return verdict(reason);
	}
	reason = sock_xlate_fwd(ctx, v6, udp_sendmsg, &key, master);
	monitor_sock(ctx, v6, udp_sendmsg, &key, master, reason);
	if (reason == LB_REASON_AFFINITY_HIT) {
		lb_count(reason);
		reason = LB_REASON_TRANSLATED;
	}
	lb_count(reason);
	return verdict(reason);
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return sock_fwd(ctx, 0, 0);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return sock_fwd(ctx, 1, 0);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_fwd(ctx, 0, 1);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock_fwd(ctx, 1, 1);
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 0);
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 1);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int getpeername4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 0);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int getpeername6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 1);
	return SYS_PROCEED;
}
