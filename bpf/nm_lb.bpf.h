/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_lb.bpf.h - the kernel's choice of a service backend in connect4/6
 * (DESIGN §7, docs/load-balancing.md), from maps the agent keeps:
 *
 *   1. subset: by integer weight over nm_lb_set.subsets (random; maglev uses
 *      the client hash so a client stays in its subset);
 *   2. locality tier: same node, same zone, the rest (failover: the first
 *      tier with a usable endpoint; strict: same node only; none: all);
 *   3. slot in the tier by algorithm: random, round_robin (per-CPU counter),
 *      least_request (power of two choices on nm_lb_active), maglev
 *      (nm_maglev table of the client address hash).
 *
 * A slot whose backend carries NM_EP_EJECTED (outlier detection) is skipped:
 * the next NM_LB_PROBES slots of the tier are tried, then the next tier; when
 * every candidate is ejected the first one is used rather than refusing.
 *
 * Loops have constant bounds (5.3+); helpers are 5.10's. The verifier sees
 * every index masked or compared against a constant before use.
 */
#ifndef NM_LB_BPF_H
#define NM_LB_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nm_abi.h"
#include "nm_maps.bpf.h"

/* murmur3's fmix32; agent/lb/maglev.c's nm_lb_hash_addr() is the same. */
static __always_inline __u32 nm_lb_fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 nm_lb_hash_addr(const struct nm_addr *a)
{
	const __u32 *w = (const __u32 *)a->a;
	__u32 h = 0x9e3779b9u;

	h = nm_lb_fmix32(h ^ w[0]);
	h = nm_lb_fmix32(h ^ w[1]);
	h = nm_lb_fmix32(h ^ w[2]);
	h = nm_lb_fmix32(h ^ w[3]);
	return h;
}

static __always_inline struct nm_backend *nm_lb_slot(__u32 service_id,
						     __u32 base, __u32 k)
{
	struct nm_backend_key key = { .service_id = service_id,
				      .slot = base | (k & 0x7fffu) };

	return bpf_map_lookup_elem(&nm_backends, &key);
}

/* round_robin: this CPU's next position of the subset, created on first
 * use at a random start so CPUs do not all begin with slot 0. */
static __always_inline __u32 nm_lb_rr_next(__u32 service_id, __u32 set)
{
	struct nm_backend_key key = { .service_id = service_id, .slot = set };
	__u32 *v = bpf_map_lookup_elem(&nm_lb_rr, &key);

	if (!v) {
		__u32 init = bpf_get_prandom_u32();

		nm_map_update(&nm_lb_rr, NM_MAP_LB_RR, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&nm_lb_rr, &key);
		if (!v)
			return init;
	}
	return (*v)++;
}

static __always_inline __u64 nm_lb_active_of(__u32 workload_id)
{
	__u64 *c = bpf_map_lookup_elem(&nm_lb_active, &workload_id);

	return c ? *c : 0;
}

/* least_request: of two distinct random slots, the one with fewer open
 * connections from this node (the first on a tie). */
static __always_inline __u32 nm_lb_p2c(__u32 service_id, __u32 base,
				       __u32 start, __u32 n)
{
	struct nm_backend *ba, *bb;
	__u32 a, b;

	a = bpf_get_prandom_u32() % n;
	if (n < 2)
		return a;
	b = (a + 1 + bpf_get_prandom_u32() % (n - 1)) % n;
	ba = nm_lb_slot(service_id, base, start + a);
	bb = nm_lb_slot(service_id, base, start + b);
	if (!ba || !bb)
		return a;
	if ((ba->flags & NM_EP_EJECTED) && !(bb->flags & NM_EP_EJECTED))
		return b;
	if (nm_lb_active_of(bb->workload_id) < nm_lb_active_of(ba->workload_id) &&
	    !(bb->flags & NM_EP_EJECTED))
		return b;
	return a;
}

/*
 * Picks a backend slot of the VIP port's set. Returns the backend, or NULL
 * with *err -1 (nothing to choose: refuse) or -2 (a slot the set announces
 * is missing: a sync in progress).
 */
static __always_inline struct nm_backend *
nm_lb_pick(const struct nm_service *svc, __u32 base, __u32 count,
	   const struct nm_addr *client, int *err)
{
	struct nm_backend_key lkey = { .service_id = svc->service_id,
				       .slot = base };
	struct nm_backend *be, *fallback = NULL;
	const struct nm_lb_subset *ss;
	const struct nm_lb_set *set;
	__u32 algo = svc->lb_algo, hash = 0, r, si = 0, start, first = 1;

	*err = -1;
	set = bpf_map_lookup_elem(&nm_lb_sets, &lkey);
	if (!set || set->total_weight == 0 || set->n_subsets == 0) {
		/* No layout (an older agent): uniform over every slot. */
		be = nm_lb_slot(svc->service_id, base,
				bpf_get_prandom_u32() % count);
		if (!be)
			*err = -2;
		return be;
	}
	if (algo == NM_LB_MAGLEV) {
		hash = nm_lb_hash_addr(client);
		r = nm_lb_fmix32(hash ^ 0x5ab5e7u) % set->total_weight;
	} else {
		r = bpf_get_prandom_u32() % set->total_weight;
	}
	/* The first subset whose cumulative weight exceeds r. */
#pragma unroll
	for (int i = 0; i < NM_LB_MAX_SUBSETS - 1; i++) {
		if ((__u32)i + 1 < set->n_subsets && r >= set->subsets[i].weight_end)
			si = i + 1;
	}
	ss = &set->subsets[si & (NM_LB_MAX_SUBSETS - 1)];
	start = ss->start;

#pragma unroll
	for (int t = 0; t < NM_LB_TIERS; t++) {
		__u32 n = ss->n[t], k;

		if (set->locality == NM_LB_LOC_NONE) {
			if (t > 0)
				break;
			n = (__u32)ss->n[0] + ss->n[1] + ss->n[2];
		}
		if (set->locality == NM_LB_LOC_STRICT && t > 0)
			break;
		if (n == 0 || n > NM_MAX_BACKENDS_PER_SVC)
			continue;
		switch (algo) {
		case NM_LB_ROUND_ROBIN:
			k = nm_lb_rr_next(svc->service_id, base | si) % n;
			break;
		case NM_LB_LEAST_REQUEST:
			k = nm_lb_p2c(svc->service_id, base, start, n);
			break;
		case NM_LB_MAGLEV:
			k = hash % n;
			if (first && ss->maglev_size) {
				struct nm_maglev_key mk = {
					.service_id = svc->service_id,
					.set = base | si,
					.idx = hash % ss->maglev_size,
				};
				__u32 *v = bpf_map_lookup_elem(&nm_maglev, &mk);

				if (v && *v < n)
					k = *v;
			}
			break;
		default:
			k = bpf_get_prandom_u32() % n;
			break;
		}
		first = 0;
		for (int p = 0; p <= NM_LB_PROBES; p++) {
			if ((__u32)p >= n)
				break;
			be = nm_lb_slot(svc->service_id, base,
					start + (k + p) % n);
			if (!be) {
				*err = -2;
				return NULL;
			}
			if (!(be->flags & NM_EP_EJECTED))
				return be;
			if (!fallback)
				fallback = be;
		}
		start += n;
	}
	/* Everything probed is ejected: better an ejected endpoint than none
	 * (the agent never ejects more than its configured share). */
	return fallback;
}

/*
 * least_request bookkeeping in sockops. TCP_CONNECT_CB (the SYN is about to
 * leave, so connect4/6 went through): count the connection on the endpoint
 * connect4/6 chose and ask for state callbacks; TCP_CLOSE: uncount it.
 * nm_lb_conn makes each socket count once and uncount once.
 */
static __always_inline void nm_lb_sockops_connect(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops), one = 1, *cnt;
	struct nm_orig *orig;
	__u32 wid;

	orig = bpf_map_lookup_elem(&nm_orig_cookie, &cookie);
	if (!orig || !(orig->flags & NM_ORIG_LB_COUNT))
		return;
	wid = orig->dst_workload_id;
	if (nm_map_update(&nm_lb_conn, NM_MAP_LB_CONN, &cookie, &wid, BPF_NOEXIST))
		return;
	cnt = bpf_map_lookup_elem(&nm_lb_active, &wid);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
	} else if (nm_map_update(&nm_lb_active, NM_MAP_LB_ACTIVE, &wid, &one,
				 BPF_NOEXIST)) {
		/* Another CPU created it meanwhile. */
		cnt = bpf_map_lookup_elem(&nm_lb_active, &wid);
		if (!cnt) {
			bpf_map_delete_elem(&nm_lb_conn, &cookie);
			return;
		}
		__sync_fetch_and_add(cnt, 1);
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					 BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void nm_lb_sockops_state(struct bpf_sock_ops *skops)
{
	__u64 cookie, *cnt;
	__u32 *wid, id;

	if (skops->args[1] != BPF_TCP_CLOSE)
		return;
	cookie = bpf_get_socket_cookie(skops);
	wid = bpf_map_lookup_elem(&nm_lb_conn, &cookie);
	if (!wid)
		return;
	id = *wid;
	bpf_map_delete_elem(&nm_lb_conn, &cookie);
	cnt = bpf_map_lookup_elem(&nm_lb_active, &id);
	if (cnt && *cnt > 0)
		__sync_fetch_and_add(cnt, -1);
}

#endif /* NM_LB_BPF_H */
