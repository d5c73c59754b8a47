/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netlink.h - node facts from the kernel over rtnetlink (libnl-route): the
 * addresses configured in this network namespace.
 */
#ifndef NM_NETLINK_H
#define NM_NETLINK_H

#include <stdbool.h>
#include <stdint.h>

#include "state/cluster.h"

/* Fills *out (malloc'd, IPv4-mapped for v4) with every local address. */
int nm_netlink_local_addrs(struct nm_addr **out, unsigned int *n);
/* Index of the cluster node one of whose addresses is local, or -ENOENT
 * (or -EEXIST when several nodes match). */
int nm_netlink_find_local_node(const struct nm_cluster *c);

/*
 * Source preservation (mesh/srcaddr.c): packets carrying mark (under mask
 * mark) are looked up in routing table `table`, which sends everything to
 * the local stack (`local default dev lo`), IPv4 and IPv6, the rule at
 * priority prio. add false removes both again (what is not there is no
 * error). 0 or -errno; a failed add removes what it had added.
 */
int nm_netlink_tproxy_routing(bool add, uint32_t mark, uint32_t table,
			      uint32_t prio);

/* A destination prefix that the main table reaches on-link (no gateway). */
struct nm_prefix {
	struct nm_addr addr;   /* IPv4-mapped for v4 */
	uint8_t len;           /* bits of addr's 128 (v4: 96 + prefix) */
};

/* Fills *out (malloc'd) with the main table's on-link prefixes. */
int nm_netlink_onlink_prefixes(struct nm_prefix **out, unsigned int *n);

#endif
