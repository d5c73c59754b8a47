/* SPDX-License-Identifier: Apache-2.0 */
/*
 * authz.h - the destination agent's access decision for one connection:
 * the state says which workload is reached, the policy set in force
 * (policy/policy.h) says whether this source may reach it. Used for
 * inbound tunnels, same-node relays and, with policy.applyToExisting, to
 * re-check established flows after a policy change.
 */
#ifndef NM_MESH_AUTHZ_H
#define NM_MESH_AUTHZ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/spiffe.h"
#include "policy/policy.h"
#include "state/state.h"
#include "telemetry/hooks.h"

/* Decisions counted since the policy set came into force. */
struct nm_authz {
	struct nm_policy_set *policies; /* NULL: no policies, all allowed */
	uint64_t allowed;
	uint64_t denied;
	uint64_t *by_policy;            /* decisions per policy index */
	unsigned int n_policies;
	struct nm_telemetry *tel;       /* decisions by policy (telemetry/hooks.h); may be NULL */
};

/* Takes ps (may be NULL) into force, freeing the previous set; counters
 * restart. 0 or -ENOMEM (then nothing changed). */
int nm_authz_replace(struct nm_authz *z, struct nm_policy_set *ps);
void nm_authz_free(struct nm_authz *z);

/*
 * May src (verified identity peer, NULL for a plaintext source; address
 * src) reach workload dst at address/port dst_addr? Fills v, counts, and
 * returns v->allow. *policy_name (may be NULL) gets "ns/name" of the
 * deciding policy or "-".
 */
bool nm_authz_check(struct nm_authz *z, const struct nm_state *s,
		    const struct nm_st_workload *dst,
		    const struct sockaddr_storage *dst_addr,
		    const struct nm_spiffe_id *peer,
		    const struct sockaddr_storage *src,
		    struct nm_policy_verdict *v, char *policy_name,
		    size_t len);

#endif
