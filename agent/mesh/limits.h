/* SPDX-License-Identifier: Apache-2.0 */
/*
 * limits.h - overload limits of one agent (issue 8, "Bounded under
 * overload"): live flows, TLS handshakes in progress, flows per source pod
 * (outbound, by workload ID) and per peer address (inbound, by IP).
 *
 * Pure bookkeeping, no I/O: the flow code takes a slot before it spends a
 * descriptor or a TLS object on a connection and puts it back when the flow
 * ends. Beyond a limit the take fails with -EBUSY and the caller refuses the
 * connection at once. Per-key counts live in small open-addressing hash
 * tables (no scan over the flows).
 *
 * Defaults derive from RLIMIT_NOFILE, read after the agent raised its soft
 * limit (two descriptors per flow, 64 kept for listeners, maps, logs):
 *   maxFlows        = (nofile - 64) / 2
 *   maxHandshakes   = maxFlows / 4, at least 64, at most maxFlows
 *   maxFlowsPerPod  = maxFlows / 4 (at least 1)
 *   maxFlowsPerPeer = maxFlows / 2 (at least 1)
 * A non-zero value in the cluster file ("mesh": {"limits": {...}}) wins.
 */
#ifndef NM_MESH_LIMITS_H
#define NM_MESH_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "state/cluster.h"

#define NM_LIMITS_FD_RESERVE 64
#define NM_LIMITS_MIN_HANDSHAKES 64

/* One key -> count table; keys are 16 bytes (an address, or a workload ID
 * zero-padded). Entries vanish when their count drops to 0. */
struct nm_count_entry {
	uint8_t key[16];
	uint32_t count;  /* 0: empty slot */
};

struct nm_count_table {
	struct nm_count_entry *slots;
	uint32_t cap;    /* power of two, or 0 before the first insert */
	uint32_t used;
};

/* Why a connection was refused; indexes nm_limits.refused[]. */
enum nm_limit_kind {
	NM_LIMIT_FLOWS = 0,
	NM_LIMIT_HANDSHAKES,
	NM_LIMIT_POD,
	NM_LIMIT_PEER,
	NM_LIMIT__COUNT,
};

struct nm_limits {
	struct nm_limits_cfg max;       /* effective limits (never 0) */
	uint32_t flows;                 /* live flows holding a slot */
	uint32_t handshakes;            /* handshakes in progress */
	struct nm_count_table pods;
	struct nm_count_table peers;
	uint64_t refused[NM_LIMIT__COUNT];
};

/* Pure: effective limits from a descriptor limit and configured overrides
 * (0 = default). cfg may be NULL. */
void nm_limits_derive(uint64_t nofile, const struct nm_limits_cfg *cfg,
		      struct nm_limits_cfg *out);
/* Reads RLIMIT_NOFILE and sets l->max (counts are kept, so it also serves a
 * reload); logs the figures. 0 or -errno. */
int nm_limits_init(struct nm_limits *l, const struct nm_limits_cfg *cfg);
/* As nm_limits_init with a given descriptor limit (tests). */
void nm_limits_configure(struct nm_limits *l, uint64_t nofile,
			 const struct nm_limits_cfg *cfg);
void nm_limits_free(struct nm_limits *l);

/* Take: 0, -EBUSY when at the limit (counted in refused[]), -ENOMEM. */
int nm_limits_take_flow(struct nm_limits *l);
void nm_limits_put_flow(struct nm_limits *l);
int nm_limits_take_handshake(struct nm_limits *l);
void nm_limits_put_handshake(struct nm_limits *l);
int nm_limits_take_pod(struct nm_limits *l, uint32_t workload);
void nm_limits_put_pod(struct nm_limits *l, uint32_t workload);
int nm_limits_take_peer(struct nm_limits *l, const struct nm_addr *peer);
void nm_limits_put_peer(struct nm_limits *l, const struct nm_addr *peer);
/* Current count for a key (tests, status). */
uint32_t nm_limits_pod_count(const struct nm_limits *l, uint32_t workload);
uint32_t nm_limits_peer_count(const struct nm_limits *l,
			      const struct nm_addr *peer);

/* The table itself: add delta (+1/-1) to key's count; returns the new
 * count, or -ENOMEM. A count never goes below 0. */
int nm_count_add(struct nm_count_table *t, const uint8_t key[16], int delta);
uint32_t nm_count_get(const struct nm_count_table *t, const uint8_t key[16]);
void nm_count_free(struct nm_count_table *t);

#endif
