/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pool.h - the tunnel pool (issue 14, DESIGN §5 "Handshakes off the connect
 * path"): a few mTLS connections to peer agents, connected and handshaken
 * ahead of need, so an outbound flow that finds one sends its NMTP preamble
 * at once instead of waiting for TCP and TLS.
 *
 * Keyed by (source identity, peer node address, expected destination
 * identity), not by (source identity, peer node) as DESIGN §5 words it: the
 * client presents the source workload's certificate and names the
 * destination identity in SNI, and the server answers with that
 * destination's certificate, which the client checks exactly
 * (nm_tls_check_peer). A connection made for one destination identity can
 * therefore not serve another one on the same node without loosening that
 * check, so the destination identity is part of the key.
 *
 * One NMTP flow per connection: a pooled connection is used once and the
 * pool makes a new one in the background once that flow's status came
 * (deferred to a timer, never on the flow's critical path; the TLS 1.3 session cache makes it a resumed
 * handshake). The first flow to a key warms it; a key nobody took from in
 * idleTimeoutMs is not refilled, so quiet peers cost nothing.
 *
 * The peer agent waits NM_HANDSHAKE_TIMEOUT_MS (10 s) from accept for the
 * handshake and the preamble together (flow.c): idle connections retire
 * after idleTimeoutMs (default 8 s, at most 9 s) counted from their connect,
 * before the peer gives up on them, and a connection's liveness is checked
 * (SSL_read: close_notify, FIN, RST or stray data = dead) before a flow gets
 * it; a dead one is discarded and the flow falls back to its own handshake.
 *
 * Limits: each pooled connection, idle or in the making, holds one flow slot
 * (maxFlows; a flow holds two descriptors, a pooled connection one) and,
 * while its handshake runs, one handshake slot; the pool only warms when
 * both are free. cfg.max_total bounds the whole pool.
 *
 * Dropped whole when the certificates change (nm_pool_flush from certs.c
 * and reload.c) and on stop; per key when its node leaves the state
 * (nm_pool_prune). Event-loop thread only.
 */
#ifndef NM_MESH_POOL_H
#define NM_MESH_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "lib/spiffe.h"
#include "state/cluster.h" /* struct nm_pool_cfg */

#define NM_POOL_DEFAULT_SIZE 2
#define NM_POOL_DEFAULT_IDLE_MS 8000
#define NM_POOL_MAX_IDLE_MS 9000      /* below the peer's 10 s preamble wait */
#define NM_POOL_DEFAULT_MAX_TOTAL 256
#define NM_POOL_MAX_SIZE 64

struct nm_agent;
struct nm_state;

struct nm_pool_key {
	struct nm_spiffe_id src;        /* identity presented (client cert) */
	struct nm_spiffe_id peer;       /* expected server identity (SNI, check) */
	struct sockaddr_storage node;   /* the peer agent's tunnel address */
};

struct nm_pool_stats {
	uint64_t hits;        /* flows that took a pooled connection */
	uint64_t misses;      /* flows that found none (own handshake) */
	uint64_t discards;    /* found dead (peer closed, reset, stray data) */
	uint64_t retired;     /* idle past idleTimeoutMs, closed by us */
	uint64_t warmed;      /* connections handshaken into the pool */
	uint64_t warm_failed; /* connect or handshake failures while warming */
	uint64_t flushed;     /* dropped by a flush or a prune */
};

struct nm_pool_conn;
struct nm_pool_bucket;

struct nm_pool {
	struct nm_agent *agent;
	struct nm_pool_cfg cfg;
	struct nm_pool_bucket *buckets;
	uint32_t total;       /* connections, idle and in the making */
	uint32_t idle;        /* ready for a flow */
	uint64_t refill_timer;
	struct nm_pool_stats stats;
};

/* Pure: same identities (exact) and the same node address and port. */
bool nm_pool_key_equal(const struct nm_pool_key *a, const struct nm_pool_key *b);
/* Pure: how many connections to start for a key holding have (idle and in
 * the making) with total in the pool. */
uint32_t nm_pool_room(const struct nm_pool_cfg *cfg, uint32_t have,
		      uint32_t total);
/* Pure: a connection made at born_ms is past its use at now. */
bool nm_pool_stale(const struct nm_pool_cfg *cfg, int64_t born_ms, int64_t now);

/* Sets (or, on a reload, changes) the configuration; size 0 flushes. */
void nm_pool_configure(struct nm_pool *p, struct nm_agent *a,
		       const struct nm_pool_cfg *cfg);
/*
 * A flow wants a tunnel for k: 0 with *fd and *ssl (handshake done, peer
 * verified against k->peer; the caller owns both, registers fd with the
 * loop, checks the peer again and calls nm_pool_warm once the
 * peer's status came, which refills the key); or -ENOENT (none live: the flow makes its own tunnel and
 * calls nm_pool_warm once it answered). Dead or stale tunnels met on the
 * way are dropped (discards, retired).
 */
int nm_pool_take(struct nm_pool *p, const struct nm_pool_key *k, int *fd,
		 SSL **ssl);
/* A flow's tunnel for k (its own or a pooled one) works: its status came.
 * Keeps cfg.size ready for the next flows; the refill runs on a 0 ms timer. */
void nm_pool_warm(struct nm_pool *p, const struct nm_pool_key *k);
/* Periodic (the agent's sweep): retires stale idle connections and
 * handshakes past their deadline, forgets unused keys. */
void nm_pool_expire(struct nm_pool *p, int64_t now);
/* Closes every connection (certificates changed, stop); why is logged. */
void nm_pool_flush(struct nm_pool *p, const char *why);
/* Drops the keys whose node is no longer a node of s nor a forward's peer. */
void nm_pool_prune(struct nm_pool *p, const struct nm_state *s);
/* The "2 per key" / reason text for `nodemesh status`. */
void nm_pool_report(const struct nm_pool *p);

#endif
