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

/*
 * Inbound, the NMTP SRC field (issue 9, source preservation): the peer
 * agent vouches for the client's address, and the destination agent uses
 * it for policy and as the source of its connection to the pod. It is
 * believed only when the workload that owns that address in the state has
 * exactly the verified peer identity: a peer holding a valid certificate
 * cannot speak for another workload's address. 0, or -EACCES with *why
 * naming the rule (the address is nobody's, or someone else's).
 */
int nm_route_check_src(const struct nm_state *s,
		       const struct sockaddr_storage *src,
		       const struct nm_spiffe_id *peer, const char **why);

/* spiffe://<trust domain of s>/ns/<ns>/sa/<sa> as a struct. */
void nm_route_identity(const struct nm_state *s, const char *ns,
		       const char *sa, struct nm_spiffe_id *id);

/*
 * Retries (issue 12): the service a record names (its state ID), or NULL.
 */
const struct nm_st_service *nm_route_service(const struct nm_state *s,
					     uint32_t service_id);

/* true: leave the endpoint addr:port (network order) out of the choice. */
typedef bool (*nm_route_skip_fn)(const struct nm_addr *addr, uint16_t port_be,
				 void *arg);

/*
 * Endpoints of svc for the VIP destination dst (its port picks the port map,
 * its family the endpoint address, as the map model does): how many there
 * are, and how many skip (may be NULL) leaves.
 */
unsigned int nm_route_endpoints(const struct nm_state *s,
				const struct nm_st_service *svc,
				const struct sockaddr_storage *dst,
				nm_route_skip_fn skip, void *arg,
				unsigned int *left);

/*
 * Another endpoint of svc for the VIP destination dst: the pick-th (mod the
 * count) of those skip does not leave out, in state order. Fills
 * out->backend, connect_to, remote and peer_id as nm_route_outbound() does
 * and leaves the rest of out alone. 0, or -ENOENT when none is left.
 */
int nm_route_alternate(const struct nm_state *s,
		       const struct nm_st_service *svc,
		       const struct sockaddr_storage *dst,
		       nm_route_skip_fn skip, void *arg, uint32_t pick,
		       struct nm_route_out *out);

/*
 * The service a flow to endpoint ep (pod address and target port) counts
 * against when the client did not name one (a direct pod-address connect,
 * an inbound tunnel): of the services selecting that pod on that target
 * port, the one with the lowest ID. NULL: none.
 */
const struct nm_st_service *nm_route_service_of(const struct nm_state *s,
						const struct sockaddr_storage *ep);

#endif
