/* SPDX-License-Identifier: Apache-2.0 */
/*
 * agent.h - the node agent's state: its node's view of the cluster, the
 * datapath, TLS credentials, listeners and live flows, wired to one event
 * loop. main.c builds it; proxy.c moves the bytes.
 */
#ifndef NM_AGENT_H
#define NM_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "datapath/datapath.h"
#include "lib/spiffe.h"
#include "core/loop.h"
#include "mesh/relay.h"
#include "mesh/tls.h"

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
};

struct nm_flow;

struct nm_agent_stats {
	uint64_t flows_opened;
	uint64_t flows_closed;
	uint64_t flows_active;
	uint64_t no_record;
	uint64_t tls_failures;
	uint64_t preamble_errors;
	uint64_t upstream_failures;
	uint64_t bytes_up;
	uint64_t bytes_down;
};

struct nm_agent {
	struct nm_loop *loop;
	struct nm_cluster *cluster;
	int node;                 /* index in cluster->nodes, -1: forwards only */
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
};

/* Opens the listeners the configuration asks for; 0 or -errno (logged). */
int nm_proxy_listen(struct nm_agent *a);
/* Stops accepting: closes the listeners. */
void nm_proxy_stop_listening(struct nm_agent *a);
/* Closes every live flow (reset when reset is true). */
void nm_proxy_close_all(struct nm_agent *a, bool reset);
/* Periodic: closes flows past their connect or handshake deadline. */
void nm_proxy_sweep(struct nm_agent *a);

#endif
