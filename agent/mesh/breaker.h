/* SPDX-License-Identifier: Apache-2.0 */
/*
 * breaker.h - per-service circuit breakers of one agent (issue 12): live
 * flows of a service on this agent (circuitBreaker.maxConnections) and
 * upstream connects in progress (circuitBreaker.maxPendingConnects), with
 * the per-service counters of every resilience decision.
 *
 * Pure bookkeeping like limits.h: a flow takes a slot before it spends a
 * descriptor on the service and gives it back when it ends; beyond the
 * maximum the take fails with -EBUSY (counted) and the caller refuses the
 * client at once. Keyed by the state's stable service ID; entries stay for
 * the agent's life (their counters are the service's history). The table
 * grows: keep service IDs, not entry pointers, across calls that insert.
 */
#ifndef NM_MESH_BREAKER_H
#define NM_MESH_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"

struct nm_breaker_svc {
	uint32_t service_id;     /* 0: empty slot (state IDs start at 1) */
	uint32_t connections;    /* live flows holding a connection slot */
	uint32_t pending;        /* upstream connects in progress */
	/* Counters, one per decision (exported with telemetry later). */
	uint64_t admitted;           /* flows that took a connection slot */
	uint64_t refused_connections; /* over maxConnections */
	uint64_t refused_pending;     /* over maxPendingConnects */
	uint64_t attempts;           /* upstream connects started */
	uint64_t connect_failures;   /* ... failed (error, refusal, timeout) */
	uint64_t connect_timeouts;   /* ... among them: connectTimeoutMs */
	uint64_t retries;            /* attempts on another endpoint */
	uint64_t retries_exhausted;  /* failures with no retry left */
	uint64_t no_alternative;     /* failures with no other endpoint to try */
	uint64_t avoided_ejected;    /* kernel's choice ejected: agent chose again */
	uint64_t ejections;          /* endpoints ejected */
	uint64_t ejections_capped;   /* held back by maxEjectionPercent */
	uint64_t returns;            /* endpoints back from ejection */
	uint64_t idle_timeouts;      /* flows closed for idleTimeoutMs */
};

struct nm_breakers {
	struct nm_breaker_svc *slots;
	uint32_t cap;   /* power of two, 0 before the first insert */
	uint32_t used;
};

/* The entry of service_id (non-zero), made on first use; NULL: no memory.
 * Good until the next call that may insert. */
struct nm_breaker_svc *nm_breaker_get(struct nm_breakers *b, uint32_t service_id);
/* The entry or NULL; never inserts. */
struct nm_breaker_svc *nm_breaker_find(const struct nm_breakers *b,
				       uint32_t service_id);

/* 0, or -EBUSY when max slots are taken (counted). */
int nm_breaker_take_conn(struct nm_breaker_svc *s, uint32_t max);
void nm_breaker_put_conn(struct nm_breaker_svc *s);
int nm_breaker_take_pending(struct nm_breaker_svc *s, uint32_t max);
void nm_breaker_put_pending(struct nm_breaker_svc *s);
void nm_breakers_free(struct nm_breakers *b);

/* Endpoints one flow may try: the first choice and up to 10 retries. */
#define NM_RES_MAX_TRIED 11

/*
 * What one flow holds and remembers for resilience (struct nm_flow.res).
 * service_id is the service whose breaker, timeouts and keepalive apply;
 * vip says the client asked for the service VIP, the only case with
 * alternatives to retry on.
 */
struct nm_flow_res {
	uint32_t service_id;        /* 0: no service, nothing applies */
	bool vip;                   /* outbound to a service VIP: may retry */
	bool held_conn;             /* a maxConnections slot */
	bool held_pending;          /* a maxPendingConnects slot */
	bool failed_attempt;        /* the error at hand is the upstream's */
	bool replay;                /* keep the client's early bytes */
	uint32_t retries_left;
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms;   /* 0: none */
	uint32_t pre_len;           /* preamble bytes at the start of buf[0] */
	uint32_t attempts;
	int64_t attempt_deadline;   /* ms: the attempt's connect timeout */
	int64_t last_io_ms;         /* a byte moved either way */
	unsigned int n_tried;
	struct nm_addr tried_addr[NM_RES_MAX_TRIED];
	uint16_t tried_port[NM_RES_MAX_TRIED]; /* network order */
};

#endif
