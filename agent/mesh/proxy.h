/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy.h - the proxy's context (struct nm_agent): the current state
 * (state/state.h) and the snapshot it was built from, the datapath, TLS
 * credentials, listeners and live flows, on one event loop. It lives in
 * mesh/ because mesh/ uses it; core/main.c builds and wires it, so the
 * arrow runs core -> mesh only.
 */
#ifndef NM_MESH_PROXY_H
#define NM_MESH_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "datapath/datapath.h"
#include "lib/log.h"
#include "lib/spiffe.h"
#include "core/loop.h"
#include "mesh/authz.h"
#include "mesh/breaker.h"
#include "mesh/limits.h"
#include "mesh/outlier.h"
#include "mesh/relay.h"
#include "mesh/fastpath.h"
#include "mesh/pool.h"
#include "mesh/srcaddr.h"
#include "mesh/tls.h"
#include "mesh/zerocopy.h"
#include "state/state.h"

#define NM_CONNECT_TIMEOUT_MS 5000
#define NM_HANDSHAKE_TIMEOUT_MS 10000

enum nm_listener_kind {
	NM_LST_OUTBOUND,  /* pods redirected by connect4/6 */
	NM_LST_INBOUND,   /* NMTP from peer agents */
	NM_LST_FWD_OUT,   /* static forward: plain in, NMTP out */
	NM_LST_FWD_IN,    /* static forward: NMTP in, fixed destination */
};

struct nm_agent;

struct nm_listener {
	struct nm_agent *agent;
	enum nm_listener_kind kind;
	int fd;
	struct sockaddr_storage addr;
	const struct nm_forward_cfg *fwd; /* forwards only */
	struct nm_listener *next;
	/* Accept failed for want of descriptors or memory: polling is off
	 * until paused_until (agent's accept_timer); backoff_ms grows
	 * 250 ms -> 1 s while it keeps failing. */
	int64_t paused_until;     /* monotonic ms, 0: polling */
	int64_t backoff_ms;
	uint64_t failed;          /* accept failures since the last log line */
	uint64_t shed;            /* connections reset for want of an fd, ditto */
	int last_errno;
};

struct nm_flow;

struct nm_agent_stats {
	uint64_t flows_opened;
	uint64_t flows_closed;
	uint64_t flows_active;
	uint64_t no_record;
	uint64_t bad_record;      /* records refused: generation, age, address, IDs */
	uint64_t policy_denied;   /* same-node relays refused by policy */
	uint64_t tls_failures;
	uint64_t preamble_errors;
	uint64_t upstream_failures;
	uint64_t bytes_up;
	uint64_t bytes_down;
	uint64_t accept_errors;      /* EMFILE/ENFILE/ENOMEM/ENOBUFS on accept */
	uint64_t accept_shed;        /* accepted with the spare fd and reset */
	uint64_t refused_limit;      /* refused by a limit (see limits.refused) */
	uint64_t status_overloaded;  /* inbound flows answered NMTP status 4 */
	/* Resilience (issue 12); per service and endpoint in breakers and
	 * outlier below. */
	uint64_t retries;            /* attempts moved to another endpoint */
	uint64_t refused_breaker;    /* refused by a service's circuit breaker */
	uint64_t ejections;          /* endpoints ejected */
	uint64_t idle_timeouts;      /* flows reset for idleTimeoutMs */
};

/* One rate-limit state per data-path log reason (lib/log.h). */
struct nm_agent_ratelimits {
	struct nm_ratelimit accept;
	struct nm_ratelimit accept_pause;  /* one line a second at most */
	struct nm_ratelimit connect;
	struct nm_ratelimit tls;
	struct nm_ratelimit preamble;
	struct nm_ratelimit refused;
	struct nm_ratelimit status;
	struct nm_ratelimit timeout;
	struct nm_ratelimit limit[NM_LIMIT__COUNT];
	struct nm_ratelimit breaker;
	struct nm_ratelimit retry;
	struct nm_ratelimit other;
};

struct nm_agent {
	struct nm_loop *loop;
	struct nm_cluster *cluster; /* snapshot behind state (owned) */
	struct nm_state *state;     /* current state; state->self NULL: forwards only */
	struct nm_ids *ids;         /* stable IDs for the agent's life */
	uint32_t first_generation;  /* this run's first; older records are refused */
	const char *instance;
	struct nm_datapath *dp;   /* NULL without a datapath */
	struct nm_tls *tls;
	struct nm_listener *listeners;
	struct nm_flow *flows;    /* doubly linked list of live flows */
	struct nm_bufpool pool;
	uint64_t flow_base;
	uint64_t flow_seq;
	uint64_t sweep_timer;
	uint64_t heartbeat_timer;
	struct nm_agent_stats stats;
	bool stopping;
	struct nm_limits limits;  /* nm_limits_init() after raise_fd_limit() */
	struct nm_authz authz;    /* the policy set in force and its counts */
	bool policy_recheck;      /* policy.applyToExisting of the snapshot */
	struct nm_agent_ratelimits rl;
	uint64_t accept_timer;    /* resumes paused listeners */
	unsigned int listeners_paused;
	int spare_fd;             /* reserve descriptor for EMFILE, if has_spare_fd */
	bool has_spare_fd;
	/* Resilience (issue 12): per-service breakers and counters, and the
	 * outlier state of every endpoint this agent connected to. */
	struct nm_breakers breakers;
	struct nm_outlier outlier;
	/* Source preservation (issue 9): whether pods see the client. */
	struct nm_srcaddr srcaddr;
	/* Fast paths (issue 14): what runs, for `nodemesh status`. */
	struct nm_fastpaths paths;
	/* Established tunnels to peer agents (mesh/pool.h). */
	struct nm_pool tpool;
	struct nm_zc_ctx zc;      /* the relay mode of plain-plain flows */
	struct nm_telemetry *tel; /* metrics, flow log (telemetry/hooks.h); may be NULL */
};

/* Opens the listeners the configuration asks for; 0 or -errno (logged). */
int nm_proxy_listen(struct nm_agent *a);
/* Opens the state's outbound/inbound listeners that are not open yet. */
int nm_proxy_listen_mesh(struct nm_agent *a, const struct nm_state *s);
/* Closes outbound/inbound listeners on ports the state no longer uses. */
void nm_proxy_close_stale_mesh(struct nm_agent *a, const struct nm_state *s);
/* A flow gave descriptors back: paused listeners may accept again now. */
void nm_proxy_fds_freed(struct nm_agent *a);
/* Stops accepting: closes the listeners. */
void nm_proxy_stop_listening(struct nm_agent *a);
/* Closes every live flow (reset when reset is true). */
void nm_proxy_close_all(struct nm_agent *a, bool reset);
/* Resets established flows the policy set in force now denies. */
void nm_proxy_recheck(struct nm_agent *a);
/* Periodic: closes flows past their connect or handshake deadline. */
void nm_proxy_sweep(struct nm_agent *a);

#endif
