/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meshconn.h - strict inbound, agent side (docs/strict.md): before the agent
 * connects to a local pod whose mode is STRICT, the connection's 4-tuple goes
 * into nm_mesh_conns, so nm_ingress admits its SYN; it comes out when the
 * socket closes.
 *
 * The tuple must be known before connect() sends the SYN. A socket that is
 * already bound (source preservation binds the client's address and port
 * with IP_TRANSPARENT) keeps its binding; an unbound one is bound to the
 * source address the kernel's route to the pod would pick, port 0, so the
 * port is chosen now rather than in connect().
 */
#ifndef NM_MESH_MESHCONN_H
#define NM_MESH_MESHCONN_H

#include <stdbool.h>
#include <sys/socket.h>

#include "nm_abi.h"

struct nm_agent;

struct nm_meshconn {
	bool active;            /* key is in nm_mesh_conns */
	struct nm_conn_key key;
};

/*
 * Call between socket() and connect() of an upstream socket fd that will
 * connect to `to`. Registers the tuple when `to` is a local STRICT workload
 * with a datapath; otherwise does nothing (mc->active stays false). 0, or
 * -errno when the tuple could not be registered (the SYN would be dropped:
 * the caller fails the connect at once instead).
 */
int nm_meshconn_register(struct nm_agent *a, int fd,
			 const struct sockaddr_storage *to,
			 struct nm_meshconn *mc);
/* Deletes the tuple when mc->active; before or after close(fd). */
void nm_meshconn_unregister(struct nm_agent *a, struct nm_meshconn *mc);

#endif
