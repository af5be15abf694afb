// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * North-south load balancing on the node's devices: traffic from outside the
 * node to nodeIP:NodePort, a LoadBalancer IP or an external IP.
 *
 * XDP (nodeport_xdp), on ingress, translates the destination to a backend.
 * A backend on this node is reached by DNAT alone: the packet is passed to
 * the stack, which routes it to the pod, and the pod's reply leaves through
 * the device, where tc (nodeport_tc_egress) shows it as coming from the
 * frontend again. A backend on another node is reached with SNAT to this
 * node's address too, forwarded straight out of XDP after a FIB lookup; its
 * replies come back to this node's address and XDP translates them back.
 * Both directions of a flow are in lb_nat, so a flow keeps its backend while
 * the backend set changes. ICMP errors about a translated flow are
 * translated back, so the client sees them.
 *
 * When the FIB knows no neighbour for the next hop yet, XDP cannot forward
 * and passes the translated packet on; the stack would drop it (its source
 * is one of the node's own addresses), so tc ingress (nodeport_tc_ingress)
 * sends it with bpf_redirect_neigh, which resolves the neighbour.
 *
 * Anything this cannot translate safely (fragments, IP options, extension
 * headers, truncated or malformed headers) passes untouched: it never
 * reaches a wrong backend.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/lb.h"
#include "lib/nodeport_maps.h"
#include "lib/pkt.h"
#include "lib/csum.h"
#include "lib/maglev.h"

#define AF_INET  2
#define AF_INET6 10

/* Frontend kinds that outside clients reach; a ClusterIP is for the node's
 * own sockets, which the socket hooks serve. */
#define NORTH_SOUTH_FLAGS (LB_SVC_F_NODE_PORT | LB_SVC_F_LOAD_BALANCER | LB_SVC_F_EXTERNAL_IP)
/* Random SNAT ports tried before a new flow is refused: a
 * nearly full range (every port held by a live or recent flow toward the
 * same backend) must not refuse a flow that one more try would place. */
#define SNAT_TRIES 128
/* A flow idle this long is over: its SNAT port may go to a new flow, and a
 * packet on its old tuple starts a new one. Longer than TCP's TIME_WAIT
 * (60 s), which the backend holds after a close: reusing the port sooner
 * would meet that TIME_WAIT with another client's sequence numbers. */
#define LB_FLOW_IDLE_NS (70ULL * 1000000000ULL)
/* seen_ns is rewritten at most this often, not on every packet. */
#define LB_FLOW_SEEN_GRAIN_NS 1000000000ULL

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void flow_key_of(struct lb_flow_key *k, const struct lb_tuple *t,
					enum lb_flow_dir dir)
{
	addr_store(k->saddr, &t->saddr);
	addr_store(k->daddr, &t->daddr);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->dir = dir;
}

/* The tuple a reply to t has. */
static __always_inline void tuple_reverse(struct lb_tuple *r, const struct lb_tuple *t)
{
	r->saddr = t->daddr;
	r->daddr = t->saddr;
	r->sport = t->dport;
	r->dport = t->sport;
	r->proto = t->proto;
}

static __always_inline __u32 ports_word(__be16 sport, __be16 dport)
{
	__u32 w;

	((__be16 *)&w)[0] = sport;
	((__be16 *)&w)[1] = dport;
	return w;
}

/* Applies flow f to tuple t: the side f rewrites is replaced. */
static __always_inline void tuple_apply(struct lb_tuple *t, const struct lb_flow *f)
{
	union lb_addr a;

	addr_load(&a, f->new_saddr);
	if (!addr_is_zero(&a)) {
		t->saddr = a;
		t->sport = f->new_sport;
	}
	addr_load(&a, f->new_daddr);
	if (!addr_is_zero(&a)) {
		t->daddr = a;
		t->dport = f->new_dport;
	}
}

/* ---- XDP: packets rewritten in place, checksums updated by hand ---- */

/* Rewrites the IP addresses at l3_off to those of to and returns the
 * checksum difference that makes (for the transport pseudo-header); the
 * IPv4 header checksum is updated here. */
static __always_inline int xdp_rewrite_addrs(void *data, void *data_end, __u32 l3_off, int v6,
					     const struct lb_tuple *to, __u64 *diff)
{
	if (v6) {
		struct ipv6hdr *ip6 = data + l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		*diff = csum_diff_addr(ip6->saddr.in6_u.u6_addr32, to->saddr.w) +
			csum_diff_addr(ip6->daddr.in6_u.u6_addr32, to->daddr.w);
		__builtin_memcpy(ip6->saddr.in6_u.u6_addr8, to->saddr.b, 16);
		__builtin_memcpy(ip6->daddr.in6_u.u6_addr8, to->daddr.b, 16);
		return 0;
	}
	struct iphdr *ip4 = data + l3_off;

	if ((void *)(ip4 + 1) > data_end)
		return -1;
	*diff = csum_diff32(ip4->saddr, to->saddr.w[3]) + csum_diff32(ip4->daddr, to->daddr.w[3]);
	ip4->saddr = to->saddr.w[3];
	ip4->daddr = to->daddr.w[3];
	csum_apply(&ip4->check, *diff);
	return 0;
}

/* Rewrites the ports at l4_off and the TCP or UDP checksum (addr_diff is
 * the pseudo-header's change). Returns the change of the 8 bytes at l4_off,
 * for an ICMP checksum that covers them. need_csum: the checksum field is
 * there (a quoted TCP header is cut before it). */
static __always_inline int xdp_rewrite_ports(void *data, void *data_end, __u32 l4_off, int v6,
					     const struct lb_tuple *to, __u64 addr_diff,
					     int need_csum, __u64 *changed)
{
	__u32 *ports = data + l4_off;
	__u32 new_ports = ports_word(to->sport, to->dport);
	__u64 port_diff;

	if ((void *)(ports + 2) > data_end)
		return -1;
	port_diff = csum_diff32(*ports, new_ports);
	*ports = new_ports;
	*changed = port_diff;
	if (to->proto == IPPROTO_UDP) {
		__u16 *csum = (void *)ports + __builtin_offsetof(struct udphdr, check);
		__u16 old = *csum;

		csum_apply_udp(csum, addr_diff + port_diff, v6);
		*changed += csum_diff16(old, *csum);
		return 0;
	}
	if (!need_csum)
		return 0;
	__u16 *csum = (void *)ports + __builtin_offsetof(struct tcphdr, check);

	if ((void *)(csum + 1) > data_end)
		return -1;
	csum_apply(csum, addr_diff + port_diff);
	return 0;
}

/* Rewrites a TCP or UDP packet to tuple to. */
static __always_inline int xdp_rewrite_l4(struct xdp_md *ctx, const struct lb_pkt *p,
					  const struct lb_tuple *to)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 addr_diff, changed;

	if (xdp_rewrite_addrs(data, data_end, L3_OFF, p->v6, to, &addr_diff))
		return -1;
	return xdp_rewrite_ports(data, data_end, pkt_l4_off(p->v6), p->v6, to, addr_diff, 1, &changed);
}

/* Rewrites an ICMP error to outer and the packet it quotes to inner, with
 * every checksum: the outer IPv4 header, the quoted IPv4 header and UDP
 * checksum, and the ICMP checksum over all of it (for ICMPv6 including the
 * outer pseudo-header). */
static __always_inline int xdp_rewrite_icmp(struct xdp_md *ctx, const struct lb_pkt *p,
					    const struct lb_tuple *outer, const struct lb_tuple *inner)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 outer_diff, inner_addr_diff, inner_l4_changed, icmp_diff;
	__u16 *icmp_csum = data + pkt_l4_off(p->v6) + 2;

	if ((void *)(icmp_csum + 1) > data_end)
		return -1;
	if (xdp_rewrite_addrs(data, data_end, L3_OFF, p->v6, outer, &outer_diff))
		return -1;
	if (p->v6) {
		if (xdp_rewrite_addrs(data, data_end, pkt_inner_l3_off(p->v6), 1, inner, &inner_addr_diff))
			return -1;
		icmp_diff = outer_diff + inner_addr_diff;
	} else {
		struct iphdr *ip4 = data + pkt_inner_l3_off(p->v6);

		if ((void *)(ip4 + 1) > data_end)
			return -1;
		__u16 old_check = ip4->check;

		if (xdp_rewrite_addrs(data, data_end, pkt_inner_l3_off(p->v6), 0, inner, &inner_addr_diff))
			return -1;
		ip4 = data + pkt_inner_l3_off(p->v6);
		if ((void *)(ip4 + 1) > data_end)
			return -1;
		icmp_diff = inner_addr_diff + csum_diff16(old_check, ip4->check);
	}
	if (xdp_rewrite_ports(data, data_end, pkt_inner_l4_off(p->v6), p->v6, inner, inner_addr_diff, 0,
			      &inner_l4_changed))
		return -1;
	icmp_csum = data + pkt_l4_off(p->v6) + 2;
	if ((void *)(icmp_csum + 1) > data_end)
		return -1;
	csum_apply(icmp_csum, icmp_diff + inner_l4_changed);
	return 0;
}

/* A router's duty when XDP forwards: one hop less. 0 when the packet may
 * go on. */
static __always_inline int xdp_decrement_ttl(void *data, void *data_end, const struct lb_pkt *p)
{
	if (p->v6) {
		struct ipv6hdr *ip6 = data + L3_OFF;

		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return -1;
		ip6->hop_limit--;
		return 0;
	}
	struct iphdr *ip4 = data + L3_OFF;

	if ((void *)(ip4 + 1) > data_end || ip4->ttl <= 1)
		return -1;
	/* ttl and protocol share the header's fifth 16-bit word. */
	__u16 *word = (void *)ip4 + 8;
	__u16 old = *word;

	ip4->ttl--;
	csum_apply(&ip4->check, csum_diff16(old, *word));
	return 0;
}

/* The FIB question for a packet of p now addressed as t, arriving on ifindex. */
static __always_inline void fib_params_of(struct bpf_fib_lookup *fib, const struct lb_pkt *p,
					  const struct lb_tuple *t, __u32 ifindex)
{
	fib->ifindex = ifindex;
	fib->l4_protocol = t->proto;
	fib->sport = t->sport;
	fib->dport = t->dport;
	fib->tot_len = p->l3_len;
	if (p->v6) {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, t->saddr.w, 16);
		__builtin_memcpy(fib->ipv6_dst, t->daddr.w, 16);
	} else {
		fib->family = AF_INET;
		fib->ipv4_src = t->saddr.w[3];
		fib->ipv4_dst = t->daddr.w[3];
	}
}

/* Sends a translated packet (now addressed as t) on its way: straight out of
 * the device the FIB names, or, when the FIB cannot tell (no neighbour
 * entry yet, a route that needs the stack), to the stack, which forwards it. */
static __always_inline int xdp_forward(struct xdp_md *ctx, const struct lb_pkt *p,
				       const struct lb_tuple *t)
{
	struct bpf_fib_lookup fib = {};
	void *data, *data_end;
	struct ethhdr *eth;
	long rc;

	fib_params_of(&fib, p, t, ctx->ingress_ifindex);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		lb_count(LB_REASON_FIB_PASS);
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (xdp_decrement_ttl(data, data_end, p))
		return XDP_PASS; /* the stack answers with time exceeded */
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib.ifindex, 0);
}

/* Whether client may reach the LoadBalancer frontend of service_id. */
static __always_inline int source_allowed(__u32 service_id, const union lb_addr *client)
{
	struct lb_source_range_key key = {
		.prefixlen = 32 + 128,
		.service_id = bpf_htonl(service_id),
	};

	addr_store(key.addr, client);
	return bpf_map_lookup_elem(&lb_source_ranges, &key) != NULL;
}

/* The flow's backend is still the one it was sent to. */
static __always_inline int flow_backend_alive(const struct lb_flow *f)
{
	struct lb_backend *b = lb_lookup_backend(f->backend_id);
	union lb_addr have, want;

	if (!b)
		return 0;
	addr_load(&have, b->addr);
	addr_load(&want, f->new_daddr);
	return addr_equal(&have, &want) && b->port == f->new_dport;
}

static __always_inline int flow_idle(const struct lb_flow *f, __u64 now)
{
	return now - f->seen_ns > LB_FLOW_IDLE_NS;
}

/* Notes a packet of f; the entry is written at most once a second. */
static __always_inline void flow_seen(struct lb_flow *f, __u64 now)
{
	if (now - f->seen_ns > LB_FLOW_SEEN_GRAIN_NS)
		f->seen_ns = now;
}

/* Keeps the reply entry of the SNAT flow fwd (of client) alive along with
 * it, since a client that only sends keeps its flow going too. 0 when that
 * entry is no longer this flow's: its port went to another flow. */
static __always_inline int flow_touch_reply(const struct lb_flow *fwd, const struct lb_tuple *client,
					    __u64 now)
{
	struct lb_flow_key rkey = {};
	struct lb_flow *rev;
	union lb_addr to;

	__builtin_memcpy(rkey.saddr, fwd->new_daddr, 16);
	__builtin_memcpy(rkey.daddr, fwd->new_saddr, 16);
	rkey.sport = fwd->new_dport;
	rkey.dport = fwd->new_sport;
	rkey.proto = client->proto;
	rkey.dir = LB_FLOW_REV;
	rev = bpf_map_lookup_elem(&lb_nat, &rkey);
	if (!rev)
		return 0;
	addr_load(&to, rev->new_daddr);
	if (!addr_equal(&to, &client->saddr) || rev->new_dport != client->sport)
		return 0;
	flow_seen(rev, now);
	return 1;
}

/* Whether the flow cur may carry this packet of client: still the
 * frontend's, not idle, its backend alive and, for a SNATed flow checked
 * once a second, its SNAT port still its own. */
static __always_inline int flow_current(struct lb_flow *cur, const struct lb_service_value *master,
					const struct lb_tuple *client, __u64 now)
{
	if (cur->service_id != master->service_id || flow_idle(cur, now) || !flow_backend_alive(cur))
		return 0;
	if ((cur->flags & LB_FLOW_F_SNAT) && now - cur->seen_ns > LB_FLOW_SEEN_GRAIN_NS &&
	    !flow_touch_reply(cur, client, now))
		return 0;
	flow_seen(cur, now);
	return 1;
}

/* Inserts rev with a SNAT port of cfg as its destination port: a free one,
 * or one whose flow is idle (over). */
static __always_inline int snat_reserve(struct lb_flow_key *rev, const struct lb_flow *val,
					const struct lb_node_cfg *cfg, __u64 now)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 range;
	struct lb_flow *held;

	if (min == 0 || max < min)
		return -1;
	range = max - min + 1;
	/* A fresh random port each try: probing on from one start would grow
	 * runs of taken ports, as linear probing does in a full hash table. */
	for (int i = 0; i < SNAT_TRIES; i++) {
		rev->dport = bpf_htons((__u16)(min + bpf_get_prandom_u32() % range));
		if (!bpf_map_update_elem(&lb_nat, rev, val, BPF_NOEXIST))
			return 0;
		held = bpf_map_lookup_elem(&lb_nat, rev);
		if (held && flow_idle(held, now) &&
		    !bpf_map_update_elem(&lb_nat, rev, val, BPF_EXIST))
			return 0;
	}
	return -1;
}

/* Picks a backend for a new flow to the frontend in key and writes both of
 * the flow's entries, the reply's first so that no reply can arrive before
 * it. Returns the reason it could not. */
static __always_inline enum lb_reason
flow_create(const struct lb_pkt *p, const struct lb_service_key *key,
	    const struct lb_service_value *master, const struct lb_flow_key *fkey,
	    struct lb_flow *fwd, __u64 now)
{
	struct lb_flow rev = {};
	struct lb_flow_key rkey = {};
	struct lb_backend *backend;
	enum lb_reason reason;
	union lb_addr baddr;
	__u32 backend_id = 0;
	__u16 slot = 0;

	if (master->flags & LB_SVC_F_AFFINITY) {
		/* From outside, the client is its source address. */
		struct lb_affinity_key akey = {};

		addr_store(akey.client, &p->t.saddr);
		backend = lb_select_affine(key, master, &akey, &backend_id, &slot, &reason);
	} else {
		backend = maglev_select_backend(fkey, key, master, &backend_id, &slot, &reason);
	}
	if (!backend)
		return master->flags & LB_SVC_F_EXT_LOCAL ? LB_REASON_NO_LOCAL_BACKEND : reason;
	addr_load(&baddr, backend->addr);
	if (addr_is_v4_mapped(&baddr) == p->v6)
		return LB_REASON_WRONG_FAMILY;

	__builtin_memset(fwd, 0, sizeof(*fwd));
	addr_store(fwd->new_daddr, &baddr);
	fwd->new_dport = backend->port;
	fwd->backend_id = rev.backend_id = backend_id;
	fwd->service_id = rev.service_id = master->service_id;
	fwd->created_ns = rev.created_ns = now;
	fwd->seen_ns = rev.seen_ns = now;
	/* The reply must appear to come from the frontend. */
	addr_store(rev.new_saddr, &p->t.daddr);
	rev.new_sport = p->t.dport;
	addr_store(rkey.saddr, &baddr);
	rkey.sport = backend->port;
	rkey.proto = p->t.proto;
	rkey.dir = LB_FLOW_REV;

	if ((backend->flags & LB_BACKEND_F_LOCAL) || (master->flags & LB_SVC_F_EXT_LOCAL)) {
		fwd->flags = rev.flags = LB_FLOW_F_LOCAL;
		addr_store(rkey.daddr, &p->t.saddr);
		rkey.dport = p->t.sport;
		if (bpf_map_update_elem(&lb_nat, &rkey, &rev, BPF_ANY))
			return LB_REASON_NAT_WRITE;
	} else {
		__u32 zero = 0;
		struct lb_node_cfg *cfg = bpf_map_lookup_elem(&lb_node_config, &zero);
		union lb_addr snat;

		if (!cfg)
			return LB_REASON_SNAT_PORTS;
		addr_load(&snat, p->v6 ? cfg->snat_addr6 : cfg->snat_addr4);
		if (addr_is_zero(&snat))
			return LB_REASON_SNAT_PORTS;
		fwd->flags = rev.flags = LB_FLOW_F_SNAT;
		addr_store(rkey.daddr, &snat);
		/* The reply goes back to the client. */
		addr_store(rev.new_daddr, &p->t.saddr);
		rev.new_dport = p->t.sport;
		if (snat_reserve(&rkey, &rev, cfg, now))
			return LB_REASON_SNAT_PORTS;
		addr_store(fwd->new_saddr, &snat);
		fwd->new_sport = rkey.dport;
	}
	if (bpf_map_update_elem(&lb_nat, fkey, fwd, BPF_ANY)) {
		bpf_map_delete_elem(&lb_nat, &rkey);
		return LB_REASON_NAT_WRITE;
	}
	return LB_REASON_TRANSLATED;
}

/* A packet from outside to a north-south frontend. Each of the three paths
 * below is a function of its own (__noinline): the verifier then bounds the
 * stack per call chain instead of summing every path's locals. */
static __noinline int xdp_frontend(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_service_key key = {};
	struct lb_service_value *master;
	struct lb_flow_key fkey = {};
	struct lb_flow *cur, fwd;
	struct lb_tuple to = p->t;
	enum lb_reason reason;
	__u64 now;

	addr_store(key.addr, &p->t.daddr);
	key.port = p->t.dport;
	key.proto = p->t.proto;
	/* Clients from outside use the default (external) scope. */
	master = lb_lookup_service(&key, 0);
	if (!master || !(master->flags & NORTH_SOUTH_FLAGS))
		return XDP_PASS;
	if ((master->flags & LB_SVC_F_SOURCE_RANGES) &&
	    !source_allowed(master->service_id, &p->t.saddr)) {
		lb_count(LB_REASON_SOURCE_RANGE);
		return XDP_DROP;
	}

	flow_key_of(&fkey, &p->t, LB_FLOW_FWD);
	now = bpf_ktime_get_ns();
	cur = bpf_map_lookup_elem(&lb_nat, &fkey);
	if (cur && flow_current(cur, master, &p->t, now)) {
		fwd = *cur;
	} else {
		reason = flow_create(p, &key, master, &fkey, &fwd, now);
		if (reason != LB_REASON_TRANSLATED) {
			lb_count(reason);
			/* No endpoint at all: nothing listens on the frontend, so the
			 * stack refuses it (RST or port unreachable), as kube-proxy's
			 * REJECT does. Everything else is dropped. */
			return reason == LB_REASON_NO_BACKEND ? XDP_PASS : XDP_DROP;
		}
	}
	tuple_apply(&to, &fwd);
	if (xdp_rewrite_l4(ctx, p, &to))
		return XDP_DROP;
	lb_count(LB_REASON_TRANSLATED);
	if (fwd.flags & LB_FLOW_F_SNAT)
		return xdp_forward(ctx, p, &to);
	return XDP_PASS; /* a local backend: the stack routes it to the pod */
}

/* A reply of a remote backend, addressed to this node's SNAT address; -1
 * when p is none. */
static __noinline int xdp_reply(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_flow_key rkey = {};
	struct lb_tuple to = p->t;
	struct lb_flow *rev;

	flow_key_of(&rkey, &p->t, LB_FLOW_REV);
	rev = bpf_map_lookup_elem(&lb_nat, &rkey);
	if (!rev || !(rev->flags & LB_FLOW_F_SNAT))
		return -1;
	flow_seen(rev, bpf_ktime_get_ns());
	tuple_apply(&to, rev);
	if (xdp_rewrite_l4(ctx, p, &to))
		return XDP_DROP;
	lb_count(LB_REASON_REPLY);
	return xdp_forward(ctx, p, &to);
}

/* An ICMP error about a packet this node sent to a remote backend: it goes
 * to the client, about the packet the client sent. */
static __noinline int xdp_icmp_error(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_flow_key rkey = {};
	struct lb_tuple reply, outer = p->t, inner;
	struct lb_flow *found, rev;

	tuple_reverse(&reply, &p->inner);
	flow_key_of(&rkey, &reply, LB_FLOW_REV);
	found = bpf_map_lookup_elem(&lb_nat, &rkey);
	if (!found || !(found->flags & LB_FLOW_F_SNAT))
		return XDP_PASS;
	rev = *found;

	/* The quoted packet becomes the one the client sent... */
	tuple_apply(&reply, &rev);
	tuple_reverse(&inner, &reply);
	/* ...and the error goes to the client, from the frontend when the
	 * backend itself reported it (from a router on the way it stays). */
	addr_load(&outer.daddr, rev.new_daddr);
	if (addr_equal(&p->t.saddr, &p->inner.daddr))
		addr_load(&outer.saddr, rev.new_saddr);
	if (xdp_rewrite_icmp(ctx, p, &outer, &inner))
		return XDP_DROP;
	lb_count(LB_REASON_ICMP_ERROR);
	return xdp_forward(ctx, p, &outer);
}

SEC("xdp")
int nodeport_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_pkt p = {};
	int verdict;

	switch (pkt_parse(data, data_end, &p)) {
	case PKT_L4:
		verdict = xdp_reply(ctx, &p);
		return verdict >= 0 ? verdict : xdp_frontend(ctx, &p);
	case PKT_ICMP_ERR:
		return xdp_icmp_error(ctx, &p);
	default:
		return XDP_PASS;
	}
}

/* ---- tc egress: replies of local backends, through the skb helpers, which
 * keep checksums right whatever offload state the skb is in ---- */

static __always_inline __u64 mangled_0(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites one IP address of the packet (the source when src) at l3_off,
 * with the IPv4 header and the checksum at csum_off (its pseudo-header). */
static __always_inline int tc_rewrite_addr(struct __sk_buff *skb, const struct lb_pkt *p,
					   __u32 l3_off, __u32 csum_off, __u64 csum_flags,
					   const union lb_addr *old, const union lb_addr *new, int src)
{
	if (addr_equal(old, new))
		return 0;
	if (p->v6) {
		__u32 off = l3_off + (src ? __builtin_offsetof(struct ipv6hdr, saddr)
					  : __builtin_offsetof(struct ipv6hdr, daddr));
		__s64 diff = bpf_csum_diff((__be32 *)old->w, 16, (__be32 *)new->w, 16, 0);

		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, csum_flags | BPF_F_PSEUDO_HDR))
			return -1;
		return bpf_skb_store_bytes(skb, off, new->b, 16, 0);
	}
	__u32 off = l3_off + (src ? __builtin_offsetof(struct iphdr, saddr)
				  : __builtin_offsetof(struct iphdr, daddr));

	if (bpf_l4_csum_replace(skb, csum_off, old->w[3], new->w[3], csum_flags | BPF_F_PSEUDO_HDR | 4))
		return -1;
	if (bpf_l3_csum_replace(skb, l3_off + __builtin_offsetof(struct iphdr, check),
				old->w[3], new->w[3], 4))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new->w[3], 4, 0);
}

/* A local backend's reply to an outside client: from the frontend again. */
static __noinline int tc_reply(struct __sk_buff *skb, const struct lb_pkt *p,
				    const struct lb_flow *rev)
{
	struct lb_tuple to = p->t;
	__u32 csum_off = pkt_l4_off(p->v6) + l4_csum_off(p->t.proto);
	__u64 flags = mangled_0(p->t.proto);

	tuple_apply(&to, rev);
	if (tc_rewrite_addr(skb, p, L3_OFF, csum_off, flags, &p->t.saddr, &to.saddr, 1))
		return TC_ACT_SHOT;
	if (to.sport != p->t.sport) {
		if (bpf_l4_csum_replace(skb, csum_off, p->t.sport, to.sport, flags | 2) ||
		    bpf_skb_store_bytes(skb, pkt_l4_off(p->v6), &to.sport, 2, 0))
			return TC_ACT_SHOT;
	}
	lb_count(LB_REASON_REPLY);
	return TC_ACT_OK;
}

/* A local pod's ICMP error about a packet of an outside client (it quotes
 * client -> backend): it must be about client -> frontend, and come from the
 * frontend when the backend itself sent it. The quoted headers are inside
 * the ICMP payload, so they are rewritten with bpf_skb_store_bytes and their
 * change summed into the ICMP checksum. */
static __noinline int tc_icmp_error(struct __sk_buff *skb, const struct lb_pkt *p,
					 const struct lb_flow *rev)
{
	__u32 icmp_csum_off = pkt_l4_off(p->v6) + 2;
	union lb_addr frontend;
	__be16 fport = rev->new_sport;
	__u64 icmp_diff = 0;
	__u16 inner_check = 0, new_inner_check = 0;

	addr_load(&frontend, rev->new_saddr);
	if (addr_equal(&p->t.saddr, &p->inner.daddr)) {
		/* ICMPv6 covers the outer addresses (pseudo-header); ICMPv4 does not. */
		if (p->v6) {
			if (tc_rewrite_addr(skb, p, L3_OFF, icmp_csum_off, 0, &p->t.saddr, &frontend, 1))
				return TC_ACT_SHOT;
		} else {
			__u32 off = L3_OFF + __builtin_offsetof(struct iphdr, saddr);

			if (bpf_l3_csum_replace(skb, L3_OFF + __builtin_offsetof(struct iphdr, check),
						p->t.saddr.w[3], frontend.w[3], 4) ||
			    bpf_skb_store_bytes(skb, off, &frontend.w[3], 4, 0))
				return TC_ACT_SHOT;
		}
	}

	/* The quoted destination: address, port, and the quoted checksums. */
	if (p->v6) {
		__u32 off = pkt_inner_l3_off(p->v6) + __builtin_offsetof(struct ipv6hdr, daddr);

		icmp_diff += csum_diff_addr(p->inner.daddr.w, frontend.w);
		if (bpf_skb_store_bytes(skb, off, frontend.b, 16, 0))
			return TC_ACT_SHOT;
	} else {
		__u32 off = pkt_inner_l3_off(p->v6) + __builtin_offsetof(struct iphdr, daddr);
		__u32 check_off = pkt_inner_l3_off(p->v6) + __builtin_offsetof(struct iphdr, check);
		__u64 d = csum_diff32(p->inner.daddr.w[3], frontend.w[3]);

		if (bpf_skb_load_bytes(skb, check_off, &inner_check, 2))
			return TC_ACT_SHOT;
		new_inner_check = inner_check;
		csum_apply(&new_inner_check, d);
		icmp_diff += d + csum_diff16(inner_check, new_inner_check);
		if (bpf_skb_store_bytes(skb, off, &frontend.w[3], 4, 0) ||
		    bpf_skb_store_bytes(skb, check_off, &new_inner_check, 2, 0))
			return TC_ACT_SHOT;
	}
	__u32 old_ports = ports_word(p->inner.sport, p->inner.dport);
	__u32 new_ports = ports_word(p->inner.sport, fport);

	icmp_diff += csum_diff32(old_ports, new_ports);
	if (bpf_skb_store_bytes(skb, pkt_inner_l4_off(p->v6), &new_ports, 4, 0))
		return TC_ACT_SHOT;
	if (p->inner.proto == IPPROTO_UDP) {
		__u32 off = pkt_inner_l4_off(p->v6) + __builtin_offsetof(struct udphdr, check);
		__u16 old = 0, new;
		__u64 pseudo = p->v6 ? csum_diff_addr(p->inner.daddr.w, frontend.w)
				     : csum_diff32(p->inner.daddr.w[3], frontend.w[3]);

		if (bpf_skb_load_bytes(skb, off, &old, 2))
			return TC_ACT_SHOT;
		new = old;
		csum_apply_udp(&new, pseudo + csum_diff32(old_ports, new_ports), p->v6);
		icmp_diff += csum_diff16(old, new);
		if (bpf_skb_store_bytes(skb, off, &new, 2, 0))
			return TC_ACT_SHOT;
	}
	if (bpf_l4_csum_replace(skb, icmp_csum_off, 0, csum_fold64(icmp_diff), 0))
		return TC_ACT_SHOT;
	lb_count(LB_REASON_ICMP_ERROR);
	return TC_ACT_OK;
}

SEC("tc")
int nodeport_tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct lb_pkt p = {};
	struct lb_tuple reply;
	struct lb_flow_key rkey = {};
	struct lb_flow *found, rev;
	enum pkt_kind kind;

	kind = pkt_parse(data, data_end, &p);
	if (kind == PKT_OTHER && skb->len > (__u32)(data_end - data)) {
		/* Headers may sit past the linear part: pull them in once. */
		if (bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128))
			return TC_ACT_OK;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		kind = pkt_parse(data, data_end, &p);
	}
	switch (kind) {
	case PKT_L4:
		flow_key_of(&rkey, &p.t, LB_FLOW_REV);
		break;
	case PKT_ICMP_ERR:
		tuple_reverse(&reply, &p.inner);
		flow_key_of(&rkey, &reply, LB_FLOW_REV);
		break;
	default:
		return TC_ACT_OK;
	}
	found = bpf_map_lookup_elem(&lb_nat, &rkey);
	if (!found || !(found->flags & LB_FLOW_F_LOCAL))
		return TC_ACT_OK;
	flow_seen(found, bpf_ktime_get_ns());
	rev = *found;
	if (kind == PKT_L4)
		return tc_reply(skb, &p, &rev);
	return tc_icmp_error(skb, &p, &rev);
}

/* ---- tc ingress: what XDP translated but could not forward ---- */

/* Whether p is a packet XDP translated for a SNATed flow and passed on:
 * toward the remote backend (its reply's REV entry exists), toward the
 * client (its FWD entry, reversed, exists), or an ICMP error about such a
 * flow going to the client. */
static __always_inline int xdp_left_behind(const struct lb_pkt *p, enum pkt_kind kind)
{
	struct lb_flow_key key = {};
	struct lb_tuple r;
	struct lb_flow *f;

	if (kind == PKT_ICMP_ERR) {
		flow_key_of(&key, &p->inner, LB_FLOW_FWD);
		f = bpf_map_lookup_elem(&lb_nat, &key);
		return f && (f->flags & LB_FLOW_F_SNAT);
	}
	tuple_reverse(&r, &p->t);
	flow_key_of(&key, &r, LB_FLOW_REV);
	f = bpf_map_lookup_elem(&lb_nat, &key);
	if (f && (f->flags & LB_FLOW_F_SNAT))
		return 1;
	key.dir = LB_FLOW_FWD;
	f = bpf_map_lookup_elem(&lb_nat, &key);
	return f && (f->flags & LB_FLOW_F_SNAT);
}

SEC("tc")
int nodeport_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct bpf_fib_lookup fib = {};
	struct lb_pkt p = {};
	enum pkt_kind kind;
	long rc;

	kind = pkt_parse(data, data_end, &p);
	if (kind == PKT_OTHER || !xdp_left_behind(&p, kind))
		return TC_ACT_OK;
	fib_params_of(&fib, &p, &p.t, skb->ingress_ifindex);
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		lb_count(LB_REASON_NEIGH_RESOLVE);
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
}
