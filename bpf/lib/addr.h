/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * An address as every program handles it: 16 bytes, IPv4 kept IPv4-mapped
 * (::ffff:a.b.c.d), as the maps store it.
 */
#ifndef SOCKLB_LIB_ADDR_H
#define SOCKLB_LIB_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

union lb_addr {
	__u8   b[16];
	__u32  w[4];
	__u64  d[2];
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

static __always_inline int addr_is_zero(const union lb_addr *a)
{
	return (a->d[0] | a->d[1]) == 0;
}

static __always_inline int addr_equal(const union lb_addr *a, const union lb_addr *b)
{
	return a->d[0] == b->d[0] && a->d[1] == b->d[1];
}

static __always_inline void addr_load(union lb_addr *a, const __u8 *src)
{
	__builtin_memcpy(a->b, src, 16);
}

static __always_inline void addr_store(__u8 *dst, const union lb_addr *a)
{
	__builtin_memcpy(dst, a->b, 16);
}

#endif /* SOCKLB_LIB_ADDR_H */
