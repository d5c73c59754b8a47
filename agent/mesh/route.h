/* SPDX-License-Identifier: Apache-2.0 */
/*
 * route.h - where a connection goes, decided from the state alone (pure: no
 * sockets, no maps, no TLS), so every rule is unit-tested.
 *
 * Outbound: the redirect record connect4/6 and sockops wrote for an
 * accepted pod connection is trusted only if its generation belongs to
 * this agent's run, it is fresh, the connection really comes from the
 * source workload's address, and every ID in it names what the state says
 * is at the addresses it carries. The identity presented to the peer comes
 * from the record's identity ID through the state, never from a position.
 *
 * Inbound: the preamble's destination must be a workload on this node, and
 * the identity the client asked for by SNI must be that workload's.
 */
#ifndef NM_MESH_ROUTE_H
#define NM_MESH_ROUTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/spiffe.h"
#include "nm_abi.h"
#include "state/state.h"

struct nm_route_out {
	bool remote;                         /* via the peer node's agent */
	uint32_t src_workload;               /* state workload ID */
	struct sockaddr_storage dst;         /* what the pod asked for */
	struct sockaddr_storage backend;     /* the chosen endpoint */
	struct sockaddr_storage connect_to;  /* backend, or peer agent:15008 */
	struct nm_spiffe_id local_id;        /* the source's identity */
	struct nm_spiffe_id peer_id;         /* remote: the backend's identity */
};

/*
 * 0, or -EACCES (refuse; *why names the rule) for a record rec taken for a
 * connection from peer, at now_ns on the BPF clock (CLOCK_MONOTONIC).
 * first_gen is this agent run's first generation.
 */
int nm_route_outbound(const struct nm_state *s, uint32_t first_gen,
		      const struct nm_orig *rec,
		      const struct sockaddr_storage *peer, uint64_t now_ns,
		      struct nm_route_out *out, const char **why);

/*
 * Inbound: 0 with *wl the local destination workload and *local_id its
 * identity; -ENOENT when dst is not a workload on this node, -EACCES when
 * asked (the SNI identity, NULL/empty when none) is not its identity.
 */
int nm_route_inbound(const struct nm_state *s,
		     const struct sockaddr_storage *dst,
		     const struct nm_spiffe_id *asked,
		     const struct nm_st_workload **wl,
		     struct nm_spiffe_id *local_id);

/* spiffe://<trust domain of s>/ns/<ns>/sa/<sa> as a struct. */
void nm_route_identity(const struct nm_state *s, const char *ns,
		       const char *sa, struct nm_spiffe_id *id);

#endif
