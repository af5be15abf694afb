/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing for the north-south programs (XDP and tc share it: both
 * read the packet directly between data and data_end).
 *
 * Only what a translation can handle safely is parsed: Ethernet, IPv4 without
 * options and unfragmented, IPv6 without extension headers, then TCP, UDP or
 * an ICMP error quoting a TCP or UDP packet. Anything else is PKT_OTHER and
 * passes untouched: a fragment, an option or a truncated header never reaches
 * a wrong backend, it is simply not translated.
 */
#ifndef SOCKLB_LIB_PKT_H
#define SOCKLB_LIB_PKT_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "addr.h"

/* ICMP types (linux/icmp.h would pull in libc headers). */
#define ICMP_DEST_UNREACH   3
#define ICMP_TIME_EXCEEDED  11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG   2
#define ICMPV6_TIME_EXCEED  3

#define IP4_HLEN  ((__u32)sizeof(struct iphdr))
#define IP6_HLEN  ((__u32)sizeof(struct ipv6hdr))
#define ICMP_HLEN 8u
/* What an ICMP error quotes at least: the IP header and the first 8 bytes of
 * the transport header (RFC 792), which hold both ports. */
#define QUOTED_L4_LEN 8u

enum pkt_kind {
	PKT_OTHER = 0, /* not translatable: pass it on */
	PKT_L4,        /* TCP or UDP */
	PKT_ICMP_ERR,  /* an ICMP error quoting a TCP or UDP packet */
};

struct lb_tuple {
	union lb_addr saddr;
	union lb_addr daddr;
	__be16 sport;
	__be16 dport;
	__u8   proto;
};

struct lb_pkt {
	struct lb_tuple t;     /* the packet itself; ports zero for ICMP */
	struct lb_tuple inner; /* PKT_ICMP_ERR: the packet it quotes */
	__u16 l3_len;          /* the IP packet's length as its header says */
	__u8  v6;
};

/* Where each header starts. Only fixed-size headers are parsed, so every
 * offset follows from the family alone and stays a constant the verifier can
 * bound (an offset read back from the stack would not be). */
#define L3_OFF ((__u32)sizeof(struct ethhdr))

static __always_inline __u32 pkt_l4_off(int v6)
{
	return L3_OFF + (v6 ? IP6_HLEN : IP4_HLEN);
}

static __always_inline __u32 pkt_inner_l3_off(int v6)
{
	return pkt_l4_off(v6) + ICMP_HLEN;
}

static __always_inline __u32 pkt_inner_l4_off(int v6)
{
	return pkt_inner_l3_off(v6) + (v6 ? IP6_HLEN : IP4_HLEN);
}

/* Parses the IP header at off (the family from v6) into t and returns the
 * offset of the transport header, or 0 when it is not translatable. */
static __always_inline __u32 pkt_parse_ip(void *data, void *data_end, __u32 off,
					  int v6, struct lb_tuple *t, __u16 *l3_len)
{
	if (v6) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return 0;
		addr_load(&t->saddr, ip6->saddr.in6_u.u6_addr8);
		addr_load(&t->daddr, ip6->daddr.in6_u.u6_addr8);
		t->proto = ip6->nexthdr; /* an extension header is none of ours */
		*l3_len = bpf_ntohs(ip6->payload_len) + IP6_HLEN;
		return off + IP6_HLEN;
	}
	struct iphdr *ip4 = data + off;

	if ((void *)(ip4 + 1) > data_end || ip4->version != 4 || ip4->ihl != 5)
		return 0;
	/* Any fragment: only the first has ports, and translating it alone
	 * would split the datagram between two destinations. */
	if (ip4->frag_off & bpf_htons(0x3fff))
		return 0;
	addr_from_v4(&t->saddr, ip4->saddr);
	addr_from_v4(&t->daddr, ip4->daddr);
	t->proto = ip4->protocol;
	*l3_len = bpf_ntohs(ip4->tot_len);
	if (*l3_len < IP4_HLEN)
		return 0;
	return off + IP4_HLEN;
}

/* Reads the ports of the TCP or UDP header at off; 0 when truncated or not
 * TCP/UDP. need is how many header bytes must be there. */
static __always_inline int pkt_parse_ports(void *data, void *data_end, __u32 off,
					   struct lb_tuple *t, __u32 need)
{
	__be16 *ports = data + off;

	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP)
		return 0;
	if (data + off + need > data_end)
		return 0;
	t->sport = ports[0];
	t->dport = ports[1];
	return 1;
}

static __always_inline int icmp_is_error(int v6, __u8 type)
{
	if (v6)
		return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
		       type == ICMPV6_TIME_EXCEED;
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
}

/* Parses the Ethernet frame between data and data_end. */
static __always_inline enum pkt_kind pkt_parse(void *data, void *data_end, struct lb_pkt *p)
{
	struct ethhdr *eth = data;
	__u32 l4;

	if ((void *)(eth + 1) > data_end)
		return PKT_OTHER;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		p->v6 = 1;
	else if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PKT_OTHER;
	l4 = pkt_parse_ip(data, data_end, L3_OFF, p->v6, &p->t, &p->l3_len);
	if (!l4)
		return PKT_OTHER;

	__u8 icmp_proto = p->v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
	if (p->t.proto != icmp_proto) {
		__u32 need = p->t.proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);

		return pkt_parse_ports(data, data_end, l4, &p->t, need) ? PKT_L4 : PKT_OTHER;
	}

	__u8 *icmp = data + l4;
	if ((void *)(icmp + ICMP_HLEN) > data_end || !icmp_is_error(p->v6, icmp[0]))
		return PKT_OTHER;
	__u16 inner_len;
	if (!pkt_parse_ip(data, data_end, pkt_inner_l3_off(p->v6), p->v6, &p->inner, &inner_len))
		return PKT_OTHER;
	if (!pkt_parse_ports(data, data_end, pkt_inner_l4_off(p->v6), &p->inner, QUOTED_L4_LEN))
		return PKT_OTHER;
	return PKT_ICMP_ERR;
}

/* The offset of the checksum in a TCP or UDP header. */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? __builtin_offsetof(struct tcphdr, check)
				    : __builtin_offsetof(struct udphdr, check);
}

#endif /* SOCKLB_LIB_PKT_H */
