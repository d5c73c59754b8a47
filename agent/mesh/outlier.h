/* SPDX-License-Identifier: Apache-2.0 */
/*
 * outlier.h - passive outlier detection of one agent (issue 12, DESIGN §7):
 * per (service, endpoint address, port) the run of consecutive connect
 * failures this agent saw, the ejections and the counters of every decision.
 *
 * Pure bookkeeping on a clock the caller passes (ms): no sockets, no maps.
 * After cfg->outlier_failures failures in a row an endpoint is ejected for
 * outlier_base_ms x (its number of ejections so far, this one included),
 * unless that would put more than outlier_max_percent of the service's
 * endpoints out at once (then it stays in and the refusal is counted). A
 * success ends the run. When the time is up nm_outlier_expire() returns it;
 * its run starts from 0 again, its ejection count stays (a flapping
 * endpoint is out longer each time).
 *
 * Entries are keyed by value, not by pointer: the table grows, so callers
 * keep keys, never entry pointers, across calls that may insert.
 */
#ifndef NM_MESH_OUTLIER_H
#define NM_MESH_OUTLIER_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "state/cluster.h"

struct nm_outlier_key {
	uint32_t service_id;
	uint16_t port;      /* network order, as in nm_backend */
	uint16_t pad;
	struct nm_addr addr;
};

/* One endpoint of one service as this agent sees it. */
struct nm_outlier_ep {
	struct nm_outlier_key key;
	bool used;
	uint32_t consecutive;    /* connect failures in a row */
	uint32_t ejections;      /* times ejected, ever */
	int64_t ejected_until;   /* ms on the caller's clock; 0: in service */
	/* Counters, one per decision (exported with telemetry later). */
	uint64_t attempts;       /* upstream connects started to it */
	uint64_t successes;      /* ... that became usable */
	uint64_t failures;       /* ... that failed (error, refusal, timeout) */
	uint64_t timeouts;       /* among failures: the connect timeout */
	uint64_t retried_away;   /* failed attempts that moved to another endpoint */
	uint64_t skipped;        /* choices that passed it over while ejected */
	uint64_t eject_refused;  /* ejections held back by maxEjectionPercent */
};

struct nm_outlier {
	struct nm_outlier_ep *slots;
	uint32_t cap;   /* power of two, 0 before the first insert */
	uint32_t used;
};

/* What nm_outlier_failure() decided. */
enum nm_outlier_verdict {
	NM_OUTLIER_KEPT = 0,     /* below the threshold */
	NM_OUTLIER_EJECTED = 1,  /* ejected now: take it out of the maps */
	NM_OUTLIER_CAPPED = 2,   /* at the threshold, held back by the percent */
};

void nm_outlier_key_make(struct nm_outlier_key *k, uint32_t service_id,
			 const struct nm_addr *addr, uint16_t port_be);
/* The entry for k, made on first use; NULL when out of memory. The pointer
 * is good until the next call that may insert. */
struct nm_outlier_ep *nm_outlier_get(struct nm_outlier *o,
				     const struct nm_outlier_key *k);
/* The entry for k or NULL; never inserts. */
struct nm_outlier_ep *nm_outlier_find(const struct nm_outlier *o,
				      const struct nm_outlier_key *k);
/* Is k ejected at now? */
bool nm_outlier_is_ejected(const struct nm_outlier *o,
			   const struct nm_outlier_key *k, int64_t now);
/* Endpoints of service_id ejected at now. */
unsigned int nm_outlier_ejected_count(const struct nm_outlier *o,
				      uint32_t service_id, int64_t now);

/* An attempt became usable: the run ends. */
void nm_outlier_success(struct nm_outlier_ep *e);
/*
 * An attempt failed. n_endpoints is how many endpoints the service has on
 * that port (the base of maxEjectionPercent). Returns the verdict; with
 * NM_OUTLIER_EJECTED, e->ejected_until says until when.
 */
enum nm_outlier_verdict nm_outlier_failure(struct nm_outlier *o,
					   struct nm_outlier_ep *e,
					   const struct nm_resilience_cfg *cfg,
					   unsigned int n_endpoints,
					   int64_t now);

/* Called by nm_outlier_expire() for each endpoint that returns. */
typedef void (*nm_outlier_return_fn)(const struct nm_outlier_ep *e, void *arg);
/* Returns every endpoint whose ejection ended at now; how many did. */
unsigned int nm_outlier_expire(struct nm_outlier *o, int64_t now,
			       nm_outlier_return_fn fn, void *arg);
/* The earliest ejected_until among ejected endpoints, 0 when none. */
int64_t nm_outlier_next_expiry(const struct nm_outlier *o);
void nm_outlier_free(struct nm_outlier *o);

#endif
