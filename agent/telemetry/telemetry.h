/* SPDX-License-Identifier: Apache-2.0 */
/*
 * telemetry.h - the agent's telemetry (DESIGN §9, docs/telemetry.md): the
 * metrics registry fed by the mesh hooks (hooks.h), the flow log, and two
 * HTTP servers (libmicrohttpd, own threads): Prometheus on
 * telemetry.metricsPort and the admin API on telemetry.adminPort.
 *
 * Threads: everything here but the servers runs on the event loop. Every
 * NM_TEL_PUBLISH_MS the loop renders what the servers serve (metrics text,
 * /stats, /config_dump, the live-flow list) and swaps it in under a mutex;
 * closed-flow records go to a bounded ring under the same mutex. A server
 * thread only copies from there, so a slow scraper never holds up a flow.
 */
#ifndef NM_TELEMETRY_H
#define NM_TELEMETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "telemetry/hooks.h"

#define NM_TEL_PUBLISH_MS 250

struct nm_agent;
struct nm_features;
struct nm_choices;

/* Builds the registry and opens the flow log (a->cluster->telemetry); the
 * servers start with nm_tel_start(). 0 or -errno (logged). */
int nm_tel_create(struct nm_agent *a, struct nm_telemetry **out);
/* Starts the HTTP servers and the publish timer. A server that cannot
 * bind is logged and skipped (not fatal). */
int nm_tel_start(struct nm_telemetry *t);
/* Kernel features for /config_dump (copied). */
void nm_tel_set_features(struct nm_telemetry *t, const struct nm_features *f,
			 const struct nm_choices *chosen);
/* Publishes at once (state applied, certificates reloaded). */
void nm_tel_publish(struct nm_telemetry *t);
/* Stops the servers (waiting for their threads), flushes the flow log. */
void nm_tel_free(struct nm_telemetry *t);

/* A flow the kernel decided (bpftel's nm_events reader), for the flow log
 * and /flows with path "kernel". Addresses as text; names may be NULL. */
struct nm_tel_kernel_flow {
	const char *src_addr, *dst_addr;
	uint32_t src_workload_id, dst_workload_id;
	uint64_t bytes_up, bytes_down;
	uint64_t duration_ns;
	uint32_t srtt_us, retransmits;
	const char *verdict;  /* "allow", "deny" */
	const char *reason;
};
void nm_tel_kernel_flow(struct nm_telemetry *t, const struct nm_tel_kernel_flow *k);

/* Pure, for the admin API and its fuzz target: the /logging level query
 * value ("debug", "info", "warn"/"warning"/"error", or Envoy's
 * "level=debug"-free form "module=level,..." whose last level wins).
 * 0 and *level, or -EINVAL. */
int nm_tel_parse_log_level(const char *q, int *level);

#endif
