/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_policy.bpf.h - the in-kernel half of AuthorizationPolicy (DESIGN §6):
 * what connect4/6 does with the records the agent compiled into nm_policy
 * (agent/policy/compile.h, docs/policy-maps.md).
 *
 * A record is the destination agent's verdict for (meshed source workload
 * of this node, destination workload, backend port), with port 0 standing
 * for every port no policy names. The port-specific record wins over the
 * port-0 one. DENY refuses the connect before any packet leaves; ALLOW and
 * no record let it take the mesh path, where the destination agent decides
 * again (it is authoritative; the kernel only ever refuses earlier).
 *
 * Two hash lookups and nothing else: no loops, only helpers of 5.10.
 */
#ifndef NM_POLICY_BPF_H
#define NM_POLICY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_abi.h"
#include "nm_maps.bpf.h"

/*
 * The record that decides (src_wl -> dst_wl on backend port `port`, network
 * order), or NULL when the agent compiled none and the destination agent
 * decides alone.
 */
static __always_inline const struct nm_policy_val *
nm_policy_lookup(__u32 src_wl, __u32 dst_wl, __be16 port)
{
	/* Declared whole and zeroed: the padding is part of the hash key. */
	struct nm_policy_key key __attribute__((aligned(8))) = {};
	const struct nm_policy_val *v;

	key.src_workload_id = src_wl;
	key.dst_workload_id = dst_wl;
	key.port = port;
	v = bpf_map_lookup_elem(&nm_policy, &key);
	if (v || port == 0)
		return v;
	key.port = 0;
	return bpf_map_lookup_elem(&nm_policy, &key);
}

/* True when the compiled policy says the destination would refuse it. */
static __always_inline bool nm_policy_denies(__u32 src_wl, __u32 dst_wl,
					     __be16 port)
{
	const struct nm_policy_val *v = nm_policy_lookup(src_wl, dst_wl, port);

	/* Any other value (ALLOW, or one a newer agent defines) admits: the
	 * kernel may refuse only what the agent said it would refuse. */
	return v && v->verdict == NM_PV_DENY;
}

#endif /* NM_POLICY_BPF_H */
