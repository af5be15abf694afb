/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Incremental Internet checksum updates (RFC 1624) for programs that edit
 * packets in place without the skb helpers (XDP). A change is described by
 * its one's complement difference, summed in a 64-bit accumulator and folded
 * once when applied, so several edits cost one update per checksum.
 *
 * Every field handled here sits at an even offset of what its checksum
 * covers, and sums are taken over the bytes as they lie in memory: the one's
 * complement sum does not depend on byte order then.
 */
#ifndef SOCKLB_LIB_CSUM_H
#define SOCKLB_LIB_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* The difference of a 16-bit word going from old to new. */
static __always_inline __u64 csum_diff16(__u16 old, __u16 new)
{
	return (__u64)(__u16)~old + new;
}

/* The difference of 32-bit words going from old to new. */
static __always_inline __u64 csum_diff32(__u32 old, __u32 new)
{
	return (__u64)(__u32)~old + new;
}

/* The difference of a 16-byte address going from old to new. */
static __always_inline __u64 csum_diff_addr(const __u32 *old, const __u32 *new)
{
	return csum_diff32(old[0], new[0]) + csum_diff32(old[1], new[1]) +
	       csum_diff32(old[2], new[2]) + csum_diff32(old[3], new[3]);
}

/* Applies diff to the checksum field *sum: HC' = ~(~HC + diff). */
static __always_inline void csum_apply(__u16 *sum, __u64 diff)
{
	*sum = ~csum_fold64((__u64)(__u16)~*sum + csum_fold64(diff));
}

/* As csum_apply, for a UDP checksum: 0 means "none" over IPv4 and stays so;
 * a result of 0 is sent as 0xffff (RFC 768). */
static __always_inline void csum_apply_udp(__u16 *sum, __u64 diff, int v6)
{
	if (*sum == 0 && !v6)
		return;
	csum_apply(sum, diff);
	if (*sum == 0)
		*sum = 0xffff;
}

#endif /* SOCKLB_LIB_CSUM_H */
