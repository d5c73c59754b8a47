/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hooks.h - what the mesh tells telemetry: one call per event (a flow
 * accepted, opened, failed, closed; a TLS handshake's result; a policy
 * decision). The calls run on the event loop, update the metrics registry
 * and queue flow records; they never block and never touch HTTP (the
 * servers read what telemetry.c publishes). All take a NULL telemetry
 * (tests, tools) and then do nothing.
 */
#ifndef NM_TELEMETRY_HOOKS_H
#define NM_TELEMETRY_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/spiffe.h"

struct nm_telemetry;
struct nm_flow;
struct nm_metric_series;

/* ztunnel's response_flags values. */
enum nm_tel_flag {
	NM_TEL_FLAG_NONE = 0,   /* "-" */
	NM_TEL_FLAG_DENY,       /* "DENY": refused by policy */
	NM_TEL_FLAG_CONNECT,    /* "CONNECT": upstream connect failed */
	NM_TEL_FLAG_TLS,        /* "TLS_FAILURE" */
	NM_TEL_FLAG_IDENTITY,   /* "IDENTITY_ERROR": no certificate for the source */
	NM_TEL_FLAG__COUNT,
};

/* Per-flow telemetry state, inside struct nm_flow (zeroed with it). */
struct nm_tel_flow {
	int64_t start_ns;        /* accepted (CLOCK_MONOTONIC) */
	int64_t start_wall_ms;   /* accepted (CLOCK_REALTIME) */
	int64_t open_ns;         /* established, 0 = not yet */
	/* istio_tcp_* series per reporter: [0] source, [1] destination. */
	struct nm_metric_series *opened[2], *sent[2], *recv[2];
	uint64_t acct[2];        /* bytes already counted: up, down */
	uint8_t reporters;       /* bit 0 source, bit 1 destination */
	uint8_t flag;            /* enum nm_tel_flag */
	bool counted;            /* in connections_opened */
	const char *reason;      /* static text: why it failed, or NULL */
	char policy[2 * NM_NAME_MAX + 2]; /* deciding policy, "" = none */
};

/* flow_new(): the accept time. */
void nm_tel_flow_start(struct nm_tel_flow *tf);
/* The flow is established (upstream connected, tunnel up): labels are
 * resolved from the state, connections_opened and the connect latency
 * counted. Again after a retry: a no-op. */
void nm_tel_flow_open(struct nm_telemetry *t, struct nm_flow *f);
/* The flow fails for reason (static text): counted as opened (once) and,
 * at close, closed with response_flags flag. policy may be NULL. */
void nm_tel_flow_fail(struct nm_telemetry *t, struct nm_flow *f,
		      enum nm_tel_flag flag, const char *reason,
		      const char *policy);
/* flow_free(), sockets still open: the rest of the bytes, closed, srtt,
 * and one flow record ("how" it ended: "eof", "reset", "refused", ...). */
void nm_tel_flow_close(struct nm_telemetry *t, struct nm_flow *f,
		       const char *how);
void nm_tel_tls_handshake(struct nm_telemetry *t, bool outbound, bool ok,
			  bool resumed);
/* CPU time (this thread's) one handshake step took inside OpenSSL: the
 * share of the agent's CPU new connections cost (bench/handshakes.sh). */
void nm_tel_tls_handshake_cpu(struct nm_telemetry *t, bool outbound,
			      uint64_t cpu_ns);
/* policy: "ns/name", or "-" when no policy decided (default allow/deny). */
void nm_tel_policy_decision(struct nm_telemetry *t, const char *policy,
			    bool allow);

#endif
