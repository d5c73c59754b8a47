/* SPDX-License-Identifier: Apache-2.0 */
/*
 * relay.h - one end of a proxied connection (plain TCP or TLS) and the
 * non-blocking I/O primitives the proxy pumps bytes with (buffers:
 * mesh/bufpool.h).
 */
#ifndef NM_RELAY_H
#define NM_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "mesh/bufpool.h"
#include "mesh/fastpath.h"

struct nm_records;

struct nm_side {
	int fd;
	SSL *ssl;            /* NULL for plain TCP */
	bool readable;       /* epoll said so and no EAGAIN since */
	bool writable;
	bool rd_eof;         /* peer finished sending (FIN or close_notify) */
	bool wr_shut;        /* we sent FIN or close_notify */
	bool rd_want_write;  /* SSL_read needs the socket writable */
	bool wr_want_read;   /* SSL_write needs the socket readable */
	bool rst_armed;      /* SO_LINGER {1,0}: dying with it open sends RST */
	int rd_err;          /* a TLS read error held back behind bytes read */
	bool ktls_want;      /* prepared for kTLS, RX not switched yet */
	bool ktls;           /* records in the kernel both ways: plain I/O */
	bool ssl_wpend;      /* an SSL_write waits to be retried (no switch) */
	struct nm_records *recs; /* the agent's records after the switch */
	struct nm_fastpaths *paths; /* counts switched flows */
	struct nm_bufpool *bufpool; /* where recs takes its buffers */
	bool rd_split;       /* the last plain read filled its buffer: an skb
			      * may be left half read at the queue's head */
	uint64_t bytes_read;
};

/* I/O results: > 0 bytes, 0 end of stream, or -EAGAIN, -ECONNRESET, -EPROTO
 * and other -errno. */
int nm_side_read(struct nm_side *s, uint8_t *buf, size_t len);
int nm_side_write(struct nm_side *s, const uint8_t *buf, size_t len);
/* Sends FIN (plain) or close_notify (TLS); 0 done, -EAGAIN retry, -errno. */
int nm_side_shutdown(struct nm_side *s);
/* TLS bytes decrypted and waiting inside OpenSSL. */
bool nm_side_pending(const struct nm_side *s);
/*
 * Tunes a TLS side once its SSL has its connected socket. With ktls active
 * (the probe's verdict, mesh/ktls.h) the side is prepared for the kernel's
 * record layer, else with agent_records active for the agent's own
 * (mesh/records.h); either switches after its first application read.
 * Otherwise, or if that preparation fails, 64 KiB read-ahead and a
 * buffering write BIO so the records of one nm_side_write() leave in one
 * write(). pool: the relay's buffers. 0 or -ENOMEM.
 */
int nm_side_tls_setup(struct nm_side *s, struct nm_fastpaths *fp,
		      struct nm_bufpool *pool);
/* The same for an SSL made outside a flow (the tunnel pool), before its
 * handshake: 1 prepared for a switch, 0 tuned for OpenSSL, -ENOMEM. */
int nm_ssl_tune(SSL *ssl, int fd, const struct nm_fastpaths *fp);
/* A flow takes over such an SSL (after nm_ssl_tune and its handshake). */
void nm_side_tls_adopt(struct nm_side *s, struct nm_fastpaths *fp,
		       struct nm_bufpool *pool);
/* The side's records are the agent's own (mesh/records.h). */
static inline bool nm_side_agent_records(const struct nm_side *s)
{
	return s->recs != NULL;
}
/* The socket carries kTLS both ways: plain read()/write()/splice() on it
 * are encrypted and decrypted by the kernel (for the zero-copy relay). */
static inline bool nm_side_ktls(const struct nm_side *s)
{
	return s->ktls;
}
/* Encrypted bytes accepted by nm_side_write()/shutdown but not yet on the
 * socket: the side wants EPOLLOUT and nm_side_flush() until this is false. */
bool nm_side_wpending(const struct nm_side *s);
/* Writes them out; 0 all sent, -EAGAIN (writable cleared), -errno. */
int nm_side_flush(struct nm_side *s);
/*
 * Arms SO_LINGER {1,0} on a pod-facing socket: if the agent dies with the
 * flow open, the kernel resets the pod's connection instead of sending a
 * FIN that would pass a truncated stream off as complete. 0 or -errno.
 */
int nm_side_arm_reset(struct nm_side *s);
/* Closes the socket; with reset, the peer gets an RST (SO_LINGER 0). A
 * clean close disarms a side armed by nm_side_arm_reset() first. */
void nm_side_close(struct nm_side *s, bool reset);
/*
 * mesh.busyPoll: at start, checks SO_BUSY_POLL (and SO_PREFER_BUSY_POLL)
 * on a test socket and fills fp->busy_poll, which is active whenever
 * mesh.busyPoll is set because the event loop spins then too (the caller
 * sets that up, core/loop.h). nm_side_busy_poll() sets the socket options
 * on every relay socket when the test socket took them. Raising
 * SO_BUSY_POLL above the net.core.busy_read default needs CAP_NET_ADMIN,
 * which the agent then keeps. Returns whether the socket options are in
 * use (so, whether to keep that capability).
 */
bool nm_relay_busy_poll_setup(struct nm_fastpaths *fp, uint32_t us);
void nm_side_busy_poll(const struct nm_fastpaths *fp, int fd);
/* Describes the last TLS error for logs. */
const char *nm_ssl_error_string(char *buf, size_t len);

#endif
