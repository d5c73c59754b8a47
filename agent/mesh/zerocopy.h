/* SPDX-License-Identifier: Apache-2.0 */
/*
 * zerocopy.h - the relay phase of a flow whose two legs are plain byte
 * streams at the socket level (DESIGN §2 path 4): the bytes move from one
 * socket to the other inside the kernel instead of through the agent's
 * buffers. Three modes, chosen once at start (mesh.relay):
 *
 *   sockmap  an sk_skb stream verdict program redirects each skb of one
 *            leg to the other leg's socket (datapath/sockmap.h);
 *   splice   splice(2) through a pipe per direction;
 *   copy     the buffer relay of flow.c (recv/send).
 *
 * A flow is handed over only once its relay buffers are empty and both
 * sides are plain byte streams at the socket level (plain TCP, or kTLS
 * both ways with nothing held in OpenSSL: spliced, never sockmap);
 * semantics are those of the copy relay: the same bytes, FIN only after
 * every byte went out, RST for RST, the same counts.
 */
#ifndef NM_MESH_ZEROCOPY_H
#define NM_MESH_ZEROCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "state/cluster.h" /* enum nm_relay_mode, mesh.relay */

struct nm_agent;
struct nm_flow;
struct nm_sockmap;

/* The agent-wide choice (a->zc). */
struct nm_zc_ctx {
	enum nm_relay_mode mode;   /* what runs: never AUTO */
	struct nm_sockmap *sm;     /* mode SOCKMAP only */
	uint64_t fallbacks;        /* flows that stayed on copy (no pipe fds) */
};

/* Per flow, while handed over (f->zc). */
struct nm_zc_flow;

const char *nm_relay_mode_name(enum nm_relay_mode m);

/*
 * Chooses the mode at start from `wanted` (mesh.relay) and what the kernel
 * offers, loads what it needs and fills a->paths.relay. Never fails: the
 * copy relay is always there. Needs the start-up privileges (BPF load).
 */
void nm_zc_setup(struct nm_agent *a, enum nm_relay_mode wanted);
void nm_zc_teardown(struct nm_agent *a);

/* Hands f over when it can go (relay phase, both legs plain or kTLS,
 * buffers empty): true when f->zc is set from now on. */
bool nm_zc_begin(struct nm_flow *f);
/* The relay step of a handed-over flow: 0, or -errno to reset the flow. */
int nm_zc_pump(struct nm_flow *f);
/* The epoll mask side i of a handed-over flow needs. */
unsigned int nm_zc_mask(const struct nm_flow *f, int i);
/* Refreshes the byte counts (written[], idle clock) from the kernel. */
void nm_zc_sync(struct nm_flow *f);
/* Gives back what the flow holds (pipes, map entries); counts are synced
 * first. Before the sockets close. */
void nm_zc_end(struct nm_flow *f);

#endif
