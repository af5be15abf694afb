/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The layouts of the north-south datapath (XDP in, tc out): the connection
 * table, the node's SNAT configuration and the LoadBalancer source ranges.
 * Declared here once, mirrored once in Go (pkg/lbmap); addresses are 16
 * bytes (IPv4 mapped) and ports in network order, as in lb_types.h.
 */
#ifndef SOCKLB_LIB_NODEPORT_TYPES_H
#define SOCKLB_LIB_NODEPORT_TYPES_H

#include <linux/types.h>

/* lb_flow_key.dir: which of a flow's two entries a key names. */
enum lb_flow_dir : __u8 {
	/* client -> frontend, as the packet arrived: where the flow was sent. */
	LB_FLOW_FWD = 0,
	/* the reply as it arrives or leaves: backend -> client for a local
	 * backend, backend -> node SNAT address for a remote one. */
	LB_FLOW_REV = 1,
};

/* lb_flow.flags. */
enum lb_flow_flags : __u16 {
	LB_FLOW_F_SNAT  = 1 << 0, /* the source was rewritten: a remote backend */
	LB_FLOW_F_LOCAL = 1 << 1, /* the backend is on this node */
};

/* lb_nat: one flow's tuple in one direction. */
struct lb_flow_key {
	__u8   saddr[16];
	__u8   daddr[16];
	__be16 sport;
	__be16 dport;
	__u8   proto;
	enum lb_flow_dir dir;
	__u8   pad[2];
};

/* What a packet of the flow in key's direction is rewritten to. An all-zero
 * address (and port) leaves that side alone. FWD: new_daddr is the backend,
 * new_saddr the SNAT source of a remote backend. REV: new_saddr is the
 * frontend the client talks to, new_daddr the client when the flow was
 * SNATed. */
struct lb_flow {
	__u8   new_saddr[16];
	__u8   new_daddr[16];
	__be16 new_sport;
	__be16 new_dport;
	__u32  backend_id;
	__u32  service_id;
	enum lb_flow_flags flags;
	__u16  pad;
	__u64  created_ns; /* bpf_ktime_get_ns() when the flow was first seen */
	/* The last packet in key's direction, to a second: a flow idle for
	 * LB_FLOW_IDLE_NS gives its SNAT port back (see nodeport.c). */
	__u64  seen_ns;
};

/* lb_node_cfg[0]: where a flow to a remote backend is SNATed from. */
struct lb_node_cfg {
	__u8  snat_addr4[16]; /* IPv4-mapped; zero: no IPv4 SNAT, such flows are passed */
	__u8  snat_addr6[16];
	__u16 snat_port_min;  /* host order, inclusive */
	__u16 snat_port_max;
	__u32 pad;
};

/* lb_source_ranges: (service id, client address prefix) -> allowed. The
 * prefix length counts the 32 bits of service_id too, so one trie holds every
 * Service's ranges. */
struct lb_source_range_key {
	__u32 prefixlen;
	__u32 service_id; /* network order: the trie matches bytes from the first */
	__u8  addr[16];
};

#endif /* SOCKLB_LIB_NODEPORT_TYPES_H */
