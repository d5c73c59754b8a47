/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fastpath.h - which accelerated paths this agent runs (issue 14, DESIGN §2
 * paths 3 and 4): each is chosen at start, or by the policy in force, and
 * has a plain fallback. `nodemesh status` prints them from agent.json.
 *
 * Each part fills its own entry; runstate.c only reports them.
 */
#ifndef NM_MESH_FASTPATH_H
#define NM_MESH_FASTPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct nm_path_state {
	bool active;      /* the fast path is in use (or ready for use) */
	char mode[32];    /* what runs: e.g. "sockmap", "splice", "copy" */
	char reason[96];  /* why not (or why this mode); "" when active */
	uint64_t flows;   /* flows that took it since start */
};

struct nm_fastpaths {
	struct nm_path_state kernel_path; /* same-node connect4/6 rewrite */
	struct nm_path_state ktls;        /* TLS record layer in the kernel */
	struct nm_path_state agent_records; /* or in the agent (no kTLS) */
	struct nm_path_state ec_builtin;  /* certificate keys: OpenSSL's built-in
					   * EC code, not its decoders (ecmeth.h) */
	struct nm_path_state relay;       /* plaintext legs: sockmap, splice, copy */
	struct nm_path_state tunnel_pool; /* pre-established mTLS connections */
	struct nm_path_state busy_poll;   /* SO_BUSY_POLL on the agent's sockets */
	uint32_t busy_poll_us;            /* SO_BUSY_POLL value while active */
	uint64_t reported;                /* flow total agent.json last showed */
	uint64_t kernel_map_total;        /* kernel_path: 1 + the nm_wl_stats
					   * kernel_flows sum last read, 0 none */
};

static inline void nm_path_set(struct nm_path_state *p, bool active,
			       const char *mode, const char *reason)
{
	p->active = active;
	snprintf(p->mode, sizeof(p->mode), "%s", mode ? mode : "");
	snprintf(p->reason, sizeof(p->reason), "%s", reason ? reason : "");
}

/* True (once) when the flow counts moved since agent.json last showed them:
 * the heartbeat rewrites it at most once a second. */
static inline bool nm_fastpaths_changed(struct nm_fastpaths *fp)
{
	uint64_t sum = fp->kernel_path.flows + fp->ktls.flows +
		       fp->agent_records.flows + fp->ec_builtin.flows +
		       fp->relay.flows +
		       fp->tunnel_pool.flows + fp->busy_poll.flows;

	if (sum == fp->reported)
		return false;
	fp->reported = sum;
	return true;
}

#endif
