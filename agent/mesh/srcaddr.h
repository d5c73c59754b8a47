/* SPDX-License-Identifier: Apache-2.0 */
/*
 * srcaddr.h - source preservation (issue 9): the agent connects to a pod on
 * its node from the original client's address and port, so the pod's
 * getpeername(), logs and own rules see the real client, as ztunnel does.
 *
 * How (docs/architecture.md, "Source preservation"):
 *  - the upstream socket gets IP_TRANSPARENT (IPV6_TRANSPARENT) and is bound
 *    to the client's address:port before connect (needs CAP_NET_ADMIN);
 *  - the pod's replies go to that non-local address: an nftables rule in the
 *    node netns marks TCP packets that belong to a transparent socket
 *    (`socket transparent 1`), and policy routing (`fwmark NM_SRC_MARK
 *    lookup NM_SRC_TABLE`, `local default dev lo table NM_SRC_TABLE`) hands
 *    the marked packets to the local stack, where they find the socket;
 *  - a host-network pod (its address is the node's) answers from the
 *    node's own stack, past prerouting: such a flow uses the agent's address;
 *  - a pod that reaches the client on-link (both on one connected prefix of
 *    the node, e.g. pods of one bridge subnet) would answer the client
 *    directly, past the node: such a flow uses the agent's address, counted.
 * Fallback, never silent: mesh.preserveSourceAddress false, a missing
 * capability or nft/routing set-up that fails leaves every flow on the
 * agent's address; the reason is logged once at warn and published in
 * agent.json ("features": "source_address", "source_address_reason").
 */
#ifndef NM_MESH_SRCADDR_H
#define NM_MESH_SRCADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "datapath/netlink.h"
#include "lib/addr.h"
#include "lib/log.h"

#define NM_SRC_MARK 0x00800000u  /* one bit of skb->mark; its own mask */
#define NM_SRC_TABLE 15008u       /* routing table: the inbound port */
#define NM_SRC_RULE_PRIO 15008u   /* before "main" (32766) */

struct nm_srcaddr {
	bool active;          /* flows are preserved */
	bool routing;         /* this agent installed nft + rules: remove at exit */
	char reason[160];     /* why not active, "" when active */
	/* on-link prefixes and local addresses of the node, refreshed at
	 * most every second */
	struct nm_prefix *onlink;
	unsigned int n_onlink;
	struct nm_addr *local;
	unsigned int n_local;
	int64_t onlink_ms;
	bool warned_onlink;
	struct nm_ratelimit rl;  /* bind failures */
	/* counters (agent.json "source_address_counts") */
	uint64_t preserved;    /* upstream connects bound to the client */
	uint64_t onlink_pairs; /* client and pod on-link: agent's address */
	uint64_t bind_failed;  /* bind to the client failed: agent's address */
	uint64_t local_dst;    /* the pod is in the node's netns (host network) */
	uint64_t forged;       /* inbound SRC refused (ownership) */
	uint64_t published;    /* sum of the counters last written out */
};

/* true once per change of the counters: agent.json is due again. */
bool nm_srcaddr_counts_changed(struct nm_srcaddr *sa);

/*
 * At start, before capabilities are dropped. want: the configuration's
 * mesh.preserveSourceAddress. Sets up nft + routing; on failure sa stays
 * inactive with the reason (logged at warn). Never fails the start.
 */
void nm_srcaddr_setup(struct nm_srcaddr *sa, bool want);
/* After capabilities are dropped: IP_TRANSPARENT really works (else
 * inactive, reason logged). */
void nm_srcaddr_probe(struct nm_srcaddr *sa);
/* At exit: removes what setup installed; frees the prefix cache. */
void nm_srcaddr_teardown(struct nm_srcaddr *sa);

/*
 * Pure: does one of the n prefixes hold both a and b (so they reach each
 * other on-link)?
 */
bool nm_srcaddr_onlink_pair(const struct nm_prefix *p, unsigned int n,
			    const struct nm_addr *a, const struct nm_addr *b);

/*
 * An upstream connect to pod dst on this node for a client at src: 1 when
 * the socket fd was made transparent and bound to src (the caller then
 * connects), 0 when the flow uses the agent's address (inactive, families
 * differ, on-link pair, bind failure: counted), never an error.
 */
int nm_srcaddr_bind(struct nm_srcaddr *sa, int fd,
		    const struct sockaddr_storage *src,
		    const struct sockaddr_storage *dst, int64_t now_ms);

#endif
