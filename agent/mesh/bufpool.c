// SPDX-License-Identifier: Apache-2.0
/*
 * bufpool.c - the relay's buffer pool (bufpool.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "mesh/bufpool.h"

int nm_buf_get(struct nm_bufpool *pool, struct nm_buf *b)
{
	if (b->data)
		return 0;
	if (pool->n_free)
		b->data = pool->free[--pool->n_free];
	else
		b->data = malloc(NM_BUF_ALLOC);
	if (!b->data)
		return -ENOMEM;
	b->off = b->len = 0;
	pool->in_use++;
	return 0;
}

void nm_buf_put(struct nm_bufpool *pool, struct nm_buf *b)
{
	if (!b->data)
		return;
	pool->in_use--;
	if (!pool->free)
		pool->free = calloc(NM_BUFPOOL_KEEP, sizeof(*pool->free));
	if (pool->free && pool->n_free < NM_BUFPOOL_KEEP)
		pool->free[pool->n_free++] = b->data;
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

void nm_bufpool_drain(struct nm_bufpool *pool)
{
	while (pool->n_free)
		free(pool->free[--pool->n_free]);
	free(pool->free);
	pool->free = NULL;
}
