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

#include "lib/lb.h"

#define SYS_REJECT  0
#define SYS_PROCEED 1

#define SOCK_STREAM 1
#define SOCK_DGRAM  2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader after probing the kernel: bpf_set_retval (5.18+) lets a
 * refused connect() fail with ECONNREFUSED instead of the default EPERM. The
 * verifier prunes the call on kernels where this stays 0. */
volatile const __u32 cfg_have_set_retval = 0;

/* An address as the hooks see it: IPv4 is kept IPv4-mapped, like in the maps. */
union lb_addr {
	__u8  b[16];
	__u32 w[4];
};

static __always_inline void addr_from_v4(union lb_addr *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = ip4;
}

static __always_inline int addr_is_v4_mapped(const union lb_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

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

static __always_inline struct lb_service_value *
service_slot(const struct lb_service_key *frontend, __u16 slot)
{
	struct lb_service_key key = *frontend;

	key.slot = slot;
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* A remembered UDP backend is still right only while its slot still holds it
 * and it is in the set the datapath would pick from now. */
static __always_inline int sock_backend_valid(const struct lb_service_key *frontend,
					      const struct lb_service_value *master,
					      const struct lb_sock_backend_value *sb)
{
	struct lb_service_value *slot;

	if (sb->slot == 0 || sb->service_id != master->service_id)
		return 0;
	if (master->count > 0) {
		if (sb->slot > master->count)
			return 0;
	} else if (sb->slot > master->terminating) {
		return 0;
	}
	slot = service_slot(frontend, sb->slot);
	return slot && slot->backend_id == sb->backend_id;
}

static __always_inline __u16 pick_slot(const struct lb_service_value *master)
{
	__u32 r = bpf_get_prandom_u32();

	if (master->count > 0)
		return (__u16)(r % master->count) + 1;
	/* Terminating backends are a fallback, used only with no ready one. */
	if (master->terminating > 0)
		return master->count + (__u16)(r % master->terminating) + 1;
	return 0;
}

/* Translates the destination of ctx to a backend when it is a frontend.
 * Returns 0 when translated or not a frontend, a negative errno to refuse. */
static __always_inline int sock_xlate_fwd(struct bpf_sock_addr *ctx, int v6,
					  int udp_sendmsg)
{
	struct lb_service_key key = {};
	struct lb_service_value *master, *slot;
	struct lb_sock_key skey = {};
	struct lb_sock_backend_value *sb, new_sb = {};
	struct lb_sock_rev_nat_value rnat = {};
	struct lb_backend *backend;
	union lb_addr dst, baddr;
	__u64 cookie;
	__u32 backend_id = 0;
	__u16 slot_nr = 0;
	__u8 proto;

	proto = ctx_get_proto(ctx);
	if (!proto)
		return 0;

	ctx_get_dst(ctx, v6, &dst);
	copy_addr(key.addr, &dst);
	key.port = ctx_get_port(ctx);
	key.proto = proto;
	key.scope = LB_SCOPE_DEFAULT;

	master = bpf_map_lookup_elem(&lb_services, &key);
	if (!master)
		return 0;

	cookie = bpf_get_socket_cookie(ctx);

	if (udp_sendmsg) {
		skey.cookie = cookie;
		copy_addr(skey.addr, &dst);
		skey.port = key.port;
		skey.proto = proto;
		sb = bpf_map_lookup_elem(&lb_sock_backend, &skey);
		if (sb && sock_backend_valid(&key, master, sb)) {
			backend_id = sb->backend_id;
			slot_nr = sb->slot;
		}
	}

	if (!backend_id) {
		slot_nr = pick_slot(master);
		if (!slot_nr)
			return -ECONNREFUSED;
		slot = service_slot(&key, slot_nr);
		if (!slot)
			return -ECONNREFUSED;
		backend_id = slot->backend_id;
	}

	backend = bpf_map_lookup_elem(&lb_backends, &backend_id);
	if (!backend)
		return -ECONNREFUSED;
	__builtin_memcpy(baddr.b, backend->addr, 16);
	/* A backend of the other family cannot be reached from this socket. */
	if (!v6 && !addr_is_v4_mapped(&baddr))
		return -ECONNREFUSED;

	if (udp_sendmsg) {
		new_sb.backend_id = backend_id;
		new_sb.service_id = master->service_id;
		new_sb.slot = slot_nr;
		bpf_map_update_elem(&lb_sock_backend, &skey, &new_sb, BPF_ANY);
	}

	skey.cookie = cookie;
	copy_addr(skey.addr, &baddr);
	skey.port = backend->port;
	skey.proto = proto;
	rnat.service_id = master->service_id;
	/* Best effort: without it only getpeername/recvfrom show the backend. */
	bpf_map_update_elem(&lb_sock_rev_nat, &skey, &rnat, BPF_ANY);

	ctx_set_dst(ctx, v6, &baddr);
	ctx_set_port(ctx, backend->port);
	return 0;
}

/* Shows the VIP again where the socket would see the backend's address. */
static __always_inline void sock_xlate_rev(struct bpf_sock_addr *ctx, int v6)
{
	struct lb_sock_key skey = {};
	struct lb_sock_rev_nat_value *rnat;
	struct lb_rev_nat_value *vip;
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

	rnat = bpf_map_lookup_elem(&lb_sock_rev_nat, &skey);
	if (!rnat)
		return;
	vip = bpf_map_lookup_elem(&lb_rev_nat, &rnat->service_id);
	if (!vip)
		return; /* the Service is gone: the backend is the truth now */

	__builtin_memcpy(src.b, vip->addr, 16);
	if (!v6 && !addr_is_v4_mapped(&src))
		return;
	ctx_set_dst(ctx, v6, &src);
	ctx_set_port(ctx, vip->port);
}

static __always_inline int verdict(int err)
{
	if (!err)
		return SYS_PROCEED;
	if (cfg_have_set_retval)
		bpf_set_retval(err);
	return SYS_REJECT;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return verdict(sock_xlate_fwd(ctx, 0, 0));
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return verdict(sock_xlate_fwd(ctx, 1, 0));
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return verdict(sock_xlate_fwd(ctx, 0, 1));
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return verdict(sock_xlate_fwd(ctx, 1, 1));
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
