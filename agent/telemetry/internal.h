/* SPDX-License-Identifier: Apache-2.0 */
/*
 * internal.h - what the event-loop side (telemetry.c) shares with the HTTP
 * side (http.c). Only the fields under "shared" cross threads, always under
 * mu; the rest belongs to the loop.
 */
#ifndef NM_TELEMETRY_INTERNAL_H
#define NM_TELEMETRY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "state/cluster.h"
#include "telemetry/telemetry.h"

#define NM_TEL_RING 1024        /* closed-flow records kept for /flows */
#define NM_TEL_RECENT 100       /* of which /flows lists the newest */
#define NM_TEL_MAX_ACTIVE 1000  /* live flows listed by /flows */

/* One flow as /flows shows it, with the names its ?workload= filter
 * matches ("ns/name"). */
struct nm_tel_entry {
	uint64_t seq;
	char *json;
	char src[2 * NM_NAME_MAX + 2];
	char dst[2 * NM_NAME_MAX + 2];
};

struct nm_tel_shared {
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* a record was added, or stopping */
	bool stopping;
	char *metrics;              /* text format 0.0.4 */
	size_t metrics_len;
	char *stats, *stats_json, *config_dump;
	struct nm_tel_entry *active;
	unsigned int n_active;
	bool active_truncated;
	uint64_t active_total;
	struct nm_tel_entry ring[NM_TEL_RING];
	uint64_t next_seq;          /* seq of the next record; ring[seq % N] */
	uint64_t scrapes;           /* /metrics answered */
};

struct nm_tel_http;

/* http.c */
int nm_tel_http_start(struct nm_tel_shared *sh, const struct nm_telemetry_cfg *cfg,
		      struct nm_tel_http **out);
void nm_tel_http_stop(struct nm_tel_http *h);
/* Does an entry match the ?workload= filter ("name" or "ns/name")? */
bool nm_tel_entry_match(const struct nm_tel_entry *e, const char *w);

#endif
