/* SPDX-License-Identifier: Apache-2.0 */
/*
 * records.h - a tunnel socket read and written through the agent's own TLS
 * 1.3 record layer (mesh/tlsrec.h) once OpenSSL's handshake is done and
 * the kernel has no kTLS: relay.c's nm_side_* call these instead of
 * SSL_read()/SSL_write() after the switch.
 *
 * Ciphertext sits in buffers of the relay's pool only while it waits:
 * received bytes short of a whole record, or sealed records the socket did
 * not take yet. An idle tunnel holds neither. Reads open records straight
 * into the caller's buffer when it has room for one; only a record larger
 * than the room left is opened in place and handed out in pieces.
 */
#ifndef NM_MESH_RECORDS_H
#define NM_MESH_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mesh/bufpool.h"
#include "mesh/fastpath.h"
#include "mesh/tlsrec.h"

struct nm_records {
	struct nm_tlsrec tx, rx;
	struct nm_bufpool *pool;
	struct nm_buf in;     /* ciphertext received, not yet opened */
	uint8_t *plain;       /* inside in.data: a record opened in place */
	uint32_t plain_off, plain_len;
	uint32_t plain_next;  /* in.data offset of the record after it */
	struct nm_buf out;    /* sealed records the socket has not taken */
	bool eof;             /* close_notify read */
	int err;              /* a read error held back behind bytes returned */
};

/* The layer for one socket, from OpenSSL's keys (nm_ktls_switch_agent()).
 * 0, -ENOMEM or nm_tlsrec_init()'s errors. */
int nm_records_new(struct nm_bufpool *pool, const struct nm_ktls_params *tx,
		   const struct nm_ktls_params *rx, struct nm_records **out);
void nm_records_free(struct nm_records *r);

/*
 * Up to len bytes of application data: > 0, 0 after close_notify,
 * -EAGAIN, -ECONNRESET (FIN without close_notify: a truncated stream),
 * -EPROTO (a malformed or unexpected record, an alert other than
 * close_notify), -EBADMSG (a record failed authentication) or -errno.
 * *drained: a recv() came back short or empty, the socket has nothing more.
 */
ssize_t nm_records_read(struct nm_records *r, int fd, uint8_t *buf, size_t len,
			bool *drained);
/* Whole records, opened bytes or the stream's end wait: readable without
 * the socket. */
bool nm_records_pending(const struct nm_records *r);

/*
 * Seals as much of buf as the output buffer takes (four full records) and
 * sends it: bytes accepted (their records may still wait for EPOLLOUT,
 * nm_records_wpending()), -EAGAIN (earlier records still wait) or -errno.
 */
ssize_t nm_records_write(struct nm_records *r, int fd, const uint8_t *buf,
			 size_t len);
/* Queues a close_notify alert behind the records waiting and sends. 0 (it
 * may still wait), or -errno. */
int nm_records_close_notify(struct nm_records *r, int fd);
bool nm_records_wpending(const struct nm_records *r);
/* Sends what waits: 0 all sent, -EAGAIN, -ECONNRESET or -errno. */
int nm_records_flush(struct nm_records *r, int fd);

/*
 * At start, after the kTLS probe: the agent's records for tunnels where
 * the kernel's are not in use, unless mesh.tlsRecords is "openssl".
 * Fills fp->agent_records.
 */
void nm_records_choose(bool openssl, struct nm_fastpaths *fp);

#endif
