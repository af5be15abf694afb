// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * Destroys connected UDP sockets the agent names (bpf_sock_destroy, Linux
 * 6.5+): a socket connected through a VIP to a backend that was removed
 * would otherwise send into the void forever, as UDP never notices. The
 * destroyed socket's next call fails with ECONNABORTED, and a client that
 * reconnects reaches a live backend. Unconnected sockets are never touched:
 * destroying one would change its source port under the application, and
 * sendmsg4/6 already move its next datagram to a live backend.
 *
 * A socket iterator walks the network namespace of whoever opens it; the
 * agent opens one in each namespace. Each destroyed socket's cookie is
 * written to the reader, which counts them. A second iterator lists the
 * connected UDP sockets whose reverse-NAT entry is in socket-local storage,
 * which user space cannot read: the agent picks the stale ones among them.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>

#include "lib/addr.h"
#include "lib/lb_types.h"
#include "lib/sock_destroy_maps.h"
#include "lib/sock_state.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET  2
#define AF_INET6 10
#define TCP_ESTABLISHED 1 /* what a connected UDP socket's state says */

/* The kernel's types, only the fields read; CO-RE finds them in the
 * running kernel's BTF, so no vmlinux.h is needed. */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct udp_sock;

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* The peer of a connected socket as the maps key it. 0 when the socket is
 * not connected or of a family socklb does not balance. */
static __always_inline int sock_peer_key(struct sock *sk, struct lb_sock_key *key)
{
	union lb_addr a;

	if (sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	switch (sk->__sk_common.skc_family) {
	case AF_INET:
		addr_from_v4(&a, sk->__sk_common.skc_daddr);
		break;
	case AF_INET6:
		a.w[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		a.w[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
		a.w[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
		a.w[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
		break;
	default:
		return 0;
	}
	addr_store(key->addr, &a);
	key->port = sk->__sk_common.skc_dport;
	key->proto = IPPROTO_UDP;
	return 1;
}

SEC("iter/udp")
int sock_destroy_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct lb_sock_key key = {};
	__u64 cookie;

	if (!sk || !sock_peer_key(sk, &key))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	key.cookie = cookie;
	if (!bpf_map_lookup_elem(&lb_sock_destroy, &key)) {
		key.cookie = 0;
		if (!bpf_map_lookup_elem(&lb_sock_destroy, &key))
			return 0;
	}
	if (bpf_sock_destroy((struct sock_common *)sk) == 0)
		bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}

/* What sock_list_udp writes per socket: its key as the LRU would hold it,
 * and the service id of its entry. */
struct lb_sock_listed {
	struct lb_sock_key key;
	__u32 service_id;
	__u32 pad;
};

SEC("iter/udp")
int sock_list_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct lb_sock_listed rec = {};
	struct lb_sock_state *st;

	if (!sk || !sock_peer_key(sk, &rec.key))
		return 0;
	st = bpf_sk_storage_get(&lb_sock_storage, sk, 0, 0);
	if (!st || !st->rev_proto ||
	    !sock_addr_key_equal(st->rev_addr, st->rev_port, st->rev_proto, &rec.key))
		return 0;
	rec.key.cookie = bpf_get_socket_cookie(sk);
	rec.service_id = st->rev_service_id;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
