/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flow.h - one proxied connection: its two sides, buffers and phase. The
 * listener hands accepted sockets to nm_flow_accept(); the state machine in
 * flow.c drives them from then on.
 */
#ifndef NM_MESH_FLOW_H
#define NM_MESH_FLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mesh/meshconn.h"
#include "mesh/proxy.h"
#include "telemetry/hooks.h"

enum nm_flow_phase {
	NM_PH_CONNECTING,
	NM_PH_HANDSHAKE,
	NM_PH_PREAMBLE,
	NM_PH_AWAIT_STATUS, /* outbound tunnel: bytes go up, none down yet */
	NM_PH_RELAY,
	NM_PH_DRAIN,
	NM_PH_CLOSED,
};

enum nm_flow_dir {
	NM_DIR_OUTBOUND,
	NM_DIR_INBOUND,
};

struct nm_zc_flow;

struct nm_flow {
	struct nm_agent *agent;
	struct nm_listener *lst;
	enum nm_flow_dir dir;
	enum nm_flow_phase phase;
	uint64_t id;
	int64_t deadline_ms;         /* 0 = none */
	int64_t start_ms;
	struct nm_side side[2];
	struct nm_buf buf[2];
	uint64_t written[2];         /* bytes of buf[i] written to the other side */
	uint32_t overhead[2];        /* preamble/status bytes among written[i] */
	int tunnel;                  /* index of the TLS side, -1 for none */
	bool remote;
	bool has_expected;
	bool pooled;                 /* tunnel taken from the pool (mesh/pool.h) */
	uint8_t drain_status;
	struct sockaddr_storage src;     /* the client as we saw it */
	/* src is a workload's address the agent vouches for (outbound: the
	 * record check; inbound: the SRC ownership check): the upstream to
	 * a pod may be made from it (mesh/srcaddr.h). */
	bool src_trusted;
	struct sockaddr_storage dst;     /* original destination */
	struct sockaddr_storage backend;     /* the pod or fixed destination */
	struct sockaddr_storage connect_to;  /* where side 1 connects */
	struct nm_spiffe_id local_id;    /* identity we present */
	struct nm_spiffe_id expected_peer;
	struct nm_spiffe_id peer_id;     /* verified peer identity */
	struct nm_flow *prev, *next;
	/* Outbound: the source workload's ID, set before flow_connect(); a
	 * non-zero ID counts against maxFlowsPerPod. 0 = not counted. */
	uint32_t src_workload;
	struct nm_addr peer_ip;          /* inbound: key of the per-peer count */
	/* Limit slots this flow holds (limits.h), given back by flow_free. */
	bool held_flow, held_handshake, held_pod, held_peer;
	struct nm_flow_res res;          /* resilience (mesh/breaker.h) */
	struct nm_tel_flow tel;          /* metrics and flow record (telemetry/hooks.h) */
	struct nm_meshconn meshconn;     /* side 1's tuple in nm_mesh_conns */
	/* The relay runs in the kernel (mesh/zerocopy.h); tried once. */
	struct nm_zc_flow *zc;
	bool zc_tried;
	const char *relayed; /* the kernel relay's mode it began in, or NULL */
};

void nm_flow_accept(struct nm_listener *l, int fd,
		    const struct sockaddr_storage *peer);
/* Counts an outbound flow against its source pod's limit (f->src_workload,
 * no-op when 0 or already counted). 0, or -EBUSY (logged, counted) when the
 * pod is at maxFlowsPerPod: the caller then resets the pod's connection.
 * flow_connect() calls it for outbound flows. */
int nm_flow_admit_pod(struct nm_flow *f);
/* Runs the flow's state machine after an event outside its sockets (the
 * kernel relay's signals and timers); the flow may be freed. */
void nm_flow_advance(struct nm_flow *f);
/* Closes a connection refused before it became a flow: an RST, at once. */
void nm_flow_reset_fd(int fd);

#endif
