/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netlink.h - node facts from the kernel over rtnetlink (libnl-route): the
 * addresses configured in this network namespace.
 */
#ifndef NM_NETLINK_H
#define NM_NETLINK_H

#include "state/cluster.h"

/* Fills *out (malloc'd, IPv4-mapped for v4) with every local address. */
int nm_netlink_local_addrs(struct nm_addr **out, unsigned int *n);
/* Index of the cluster node one of whose addresses is local, or -ENOENT
 * (or -EEXIST when several nodes match). */
int nm_netlink_find_local_node(const struct nm_cluster *c);

#endif
