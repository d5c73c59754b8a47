/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bufpool.h - the relay's byte buffers: taken from a small pool only while
 * they carry bytes, so an idle connection costs no buffer memory. The copy
 * relay (relay.h) and the agent's TLS records (records.h) draw on it.
 */
#ifndef NM_MESH_BUFPOOL_H
#define NM_MESH_BUFPOOL_H

#include <stdbool.h>
#include <stdint.h>

/*
 * 64 KiB: one recv() from the plain side fills four full TLS records, which
 * leave in one write() (the tunnel's buffering write BIO, or the agent's
 * records), and the other side reads four records per recv(). Buffers are held
 * only while they carry bytes; the pool keeps 64 (4 MiB) for reuse.
 */
#define NM_BUF_SIZE (64 * 1024)
#define NM_BUFPOOL_KEEP 64
/*
 * What a pool buffer really holds: the relay fills NM_BUF_SIZE, and the
 * agent's record layer (mesh/records.h) seals those 64 KiB into four full
 * records, 22 bytes longer each, plus a close_notify, in one buffer.
 */
#define NM_BUF_ALLOC (NM_BUF_SIZE + 512)

struct nm_buf {
	uint8_t *data; /* NULL while empty */
	uint32_t off;  /* next byte to write out */
	uint32_t len;  /* bytes held */
};

struct nm_bufpool {
	uint8_t **free;
	unsigned int n_free;
	unsigned int in_use;
};

int nm_buf_get(struct nm_bufpool *pool, struct nm_buf *b);
void nm_buf_put(struct nm_bufpool *pool, struct nm_buf *b);
void nm_bufpool_drain(struct nm_bufpool *pool);
static inline bool nm_buf_empty(const struct nm_buf *b)
{
	return b->off >= b->len;
}

#endif
