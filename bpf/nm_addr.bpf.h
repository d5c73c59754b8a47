/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_addr.bpf.h - the 16-byte address form every map key uses (nm_abi.h:
 * IPv6, IPv4 as IPv4-mapped ::ffff:a.b.c.d), shared by the redirect,
 * telemetry and ingress programs.
 */
#ifndef NM_ADDR_BPF_H
#define NM_ADDR_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>

#include "nm_abi.h"

static __always_inline void nm_addr_set_v4(struct nm_addr *a, __u32 ip4_be)
{
	__u32 *w = (__u32 *)a->a;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = ip4_be;
}

#endif
