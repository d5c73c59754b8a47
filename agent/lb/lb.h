/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb.h - the agent's side of load balancing (DESIGN §7): what the kernel's
 * choice in connect4/6 reads, computed here without maps or sockets so it is
 * unit-tested alone (tests/unit/check_lb.c).
 *
 *  - Maglev lookup tables (Eisenbud et al., NSDI 2016, "Maglev: A Fast and
 *    Reliable Software Network Load Balancer", §3.4 permutation filling).
 *  - Locality tiers: same node, same zone (node label
 *    topology.kubernetes.io/zone), the rest.
 */
#ifndef NM_LB_LB_H
#define NM_LB_LB_H

#include <stdbool.h>
#include <stdint.h>

#include "nm_abi.h"

#define NM_LB_ZONE_LABEL "topology.kubernetes.io/zone"

/* The tier of an endpoint seen from this node (0 node, 1 zone, 2 other).
 * Zones compare as strings, "" equal to "" (as ztunnel compares locality). */
unsigned int nm_lb_tier(bool same_node, const char *self_zone,
			const char *ep_zone);

/*
 * The slots of a subset connect4/6 reads first with nothing ejected (the
 * domain of its Maglev table): failover the first non-empty tier, strict
 * tier 0, none the whole subset. The offset from the subset's start goes
 * to *off; returns the length.
 */
unsigned int nm_lb_primary_range(const struct nm_lb_subset *ss,
				 uint32_t locality, unsigned int *off);

bool nm_lb_is_prime(uint32_t n);
/*
 * Entries per endpoint a Maglev table aims at. The issue asks for at least
 * 100; at 100 the entries Maglev's turns reshuffle when one of N endpoints
 * goes reach 3.8 % beyond the 1/N that must move (N = 10), at 1000 they
 * stay below 1.2 % (tests/unit/check_lb.c prints the figures).
 */
#define NM_LB_MAGLEV_FACTOR 1000

/*
 * The table size for n endpoints: the smallest prime >= NM_LB_MAGLEV_FACTOR
 * * n, at most NM_MAGLEV_MAX (65537); 0 for n == 0. When prev (the size in
 * force) is still a prime >= that bound (or the cap) it is kept, so removing
 * an endpoint never changes the modulus (which would remap nearly every
 * client).
 */
uint32_t nm_lb_maglev_size(unsigned int n, uint32_t prev);
/*
 * Fills table[0..m-1] with endpoint positions 0..n-1. keys[i] identifies
 * endpoint i across syncs (nm_lb_endpoint_key()); the permutation of each
 * endpoint depends on its key only, so removing one endpoint moves only
 * the entries it owned plus a few. m must be a prime > n. 0 or -EINVAL.
 */
int nm_lb_maglev_fill(const uint64_t *keys, unsigned int n, uint32_t m,
		      uint32_t *table);
/* A stable 64-bit key of an endpoint: its address and port. */
uint64_t nm_lb_endpoint_key(const struct nm_addr *addr, uint16_t port_be);
/* The client hash connect4/6 computes (nm_lb.bpf.h nm_lb_hash_addr()). */
uint32_t nm_lb_hash_addr(const struct nm_addr *a);

#endif
