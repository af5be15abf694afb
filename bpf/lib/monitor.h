/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * `socklb monitor`: the socket hooks' load-balancing decisions, streamed
 * through a ring buffer while someone watches. Nobody watching costs one
 * array lookup per decision and no ring buffer write: the watcher sets
 * lb_monitor_config's flag while it runs.
 */
#ifndef SOCKLB_LIB_MONITOR_H
#define SOCKLB_LIB_MONITOR_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_types.h"

#define LB_MONITOR_RING_SIZE (1 << 20) /* about 8,000 events */
/* The reader is woken once this much is waiting, not per event: a wakeup
 * costs the hook 10 µs or more. The reader also polls every 100 ms. */
#define LB_MONITOR_WAKEUP_BYTES (64 << 10)

/* lb_monitor_event.verdict: what the hook did. */
enum lb_monitor_verdict : __u8 {
	LB_MONITOR_TRANSLATED   = 0, /* sent to a backend */
	LB_MONITOR_NO_ENDPOINTS = 1, /* refused: the Service has no endpoint */
	LB_MONITOR_REFUSED      = 2, /* refused for another reason (see reason) */
	LB_MONITOR_AFFINITY_HIT = 3, /* sent to the client's affinity backend */
};

/* lb_monitor_event.hook. */
enum lb_monitor_hook : __u8 {
	LB_MONITOR_CONNECT = 0,
	LB_MONITOR_SENDMSG = 1,
};

/* One decision. Addresses 16 bytes and ports in network order, as in every
 * map; backend is all zero when the connect was refused. */
struct lb_monitor_event {
	__u64 time_ns;      /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 cookie;       /* the socket's */
	__u64 netns_cookie; /* the socket's network namespace's */
	__u32 pid;          /* the thread group (process) id */
	__u32 service_id;
	enum lb_reason reason;
	__u8  frontend[16];
	__u8  backend[16];
	__be16 frontend_port;
	__be16 backend_port;
	__u8  proto;
	enum lb_monitor_verdict verdict;
	enum lb_monitor_hook hook;
	__u8  pad;
	char  comm[16];
};

/* Key 0: whether someone watches. */
struct lb_monitor_cfg {
	__u32 enabled;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LB_MONITOR_RING_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_monitor_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_monitor_cfg);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_monitor_config SEC(".maps");

/* Key 0: the events lost because the ring buffer was full (the watcher
 * reads too slowly), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_monitor_drops SEC(".maps");

/* Set by the loader after probing: whether bpf_get_current_pid_tgid and
 * bpf_get_current_comm may be called from the socket hooks (Linux 6.1; the
 * event's pid and command stay zero before). The verifier prunes the calls
 * where this stays 0. */
volatile const __u32 cfg_monitor_task = 0;

static __always_inline int monitor_watched(void)
{
	__u32 zero = 0;
	struct lb_monitor_cfg *cfg = bpf_map_lookup_elem(&lb_monitor_config, &zero);

	return cfg && cfg->enabled;
}

/* Records a decision of a socket hook; ctx's destination is the backend
 * when the hook translated it. */
static __always_inline void monitor_sock(struct bpf_sock_addr *ctx, int v6, int sendmsg,
					 const struct lb_service_key *key,
					 const struct lb_service_value *master,
					 enum lb_reason reason)
{
	struct lb_monitor_event *e;
	__u32 zero = 0;
	__u64 *drops;

	if (!monitor_watched())
		return;
	e = bpf_ringbuf_reserve(&lb_monitor_events, sizeof(*e), 0);
	if (!e) {
		drops = bpf_map_lookup_elem(&lb_monitor_drops, &zero);
		if (drops)
			*drops += 1;
		return;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(ctx);
	e->netns_cookie = bpf_get_netns_cookie(ctx);
	e->pid = cfg_monitor_task ? bpf_get_current_pid_tgid() >> 32 : 0;
	e->service_id = master->service_id;
	e->reason = reason;
	__builtin_memcpy(e->frontend, key->addr, 16);
	e->frontend_port = key->port;
	e->proto = key->proto;
	e->hook = sendmsg ? LB_MONITOR_SENDMSG : LB_MONITOR_CONNECT;
	e->pad = 0;
	__builtin_memset(e->backend, 0, 16);
	e->backend_port = 0;
	if (reason == LB_REASON_TRANSLATED || reason == LB_REASON_AFFINITY_HIT) {
		e->verdict = reason == LB_REASON_AFFINITY_HIT ? LB_MONITOR_AFFINITY_HIT : LB_MONITOR_TRANSLATED;
		e->reason = LB_REASON_TRANSLATED;
		if (v6) {
			__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
			__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];

			__builtin_memcpy(&e->backend[0], &w0, 4);
			__builtin_memcpy(&e->backend[4], &w1, 4);
			__builtin_memcpy(&e->backend[8], &w2, 4);
			__builtin_memcpy(&e->backend[12], &w3, 4);
		} else {
			__u32 w2 = bpf_htonl(0x0000ffff), w3 = ctx->user_ip4;

			__builtin_memcpy(&e->backend[8], &w2, 4);
			__builtin_memcpy(&e->backend[12], &w3, 4);
		}
		e->backend_port = (__be16)ctx->user_port;
	} else {
		e->verdict = reason == LB_REASON_NO_BACKEND ? LB_MONITOR_NO_ENDPOINTS : LB_MONITOR_REFUSED;
	}
	if (cfg_monitor_task)
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	else
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&lb_monitor_events, BPF_RB_AVAIL_DATA) >= LB_MONITOR_WAKEUP_BYTES ?
				  BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

#endif /* SOCKLB_LIB_MONITOR_H */
