// SPDX-License-Identifier: Apache-2.0
/*
 * breaker.c - per-service circuit breakers (breaker.h): a table keyed by
 * service ID (open addressing, linear probing, no deletion) and the take/put
 * rules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/breaker.h"

static uint32_t id_hash(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static struct nm_breaker_svc *probe(const struct nm_breakers *b, uint32_t id)
{
	uint32_t mask = b->cap - 1;

	for (uint32_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
		struct nm_breaker_svc *s = &b->slots[i];

		if (!s->service_id || s->service_id == id)
			return s;
	}
}

struct nm_breaker_svc *nm_breaker_find(const struct nm_breakers *b,
				       uint32_t service_id)
{
	struct nm_breaker_svc *s;

	if (!b->cap || !service_id)
		return NULL;
	s = probe(b, service_id);
	return s->service_id ? s : NULL;
}

static int grow(struct nm_breakers *b)
{
	uint32_t cap = b->cap ? b->cap * 2 : 16, old_cap = b->cap;
	struct nm_breaker_svc *old = b->slots;

	b->slots = calloc(cap, sizeof(*b->slots));
	if (!b->slots) {
		b->slots = old;
		return -ENOMEM;
	}
	b->cap = cap;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i].service_id)
			*probe(b, old[i].service_id) = old[i];
	free(old);
	return 0;
}

struct nm_breaker_svc *nm_breaker_get(struct nm_breakers *b, uint32_t service_id)
{
	struct nm_breaker_svc *s;

	if (!service_id)
		return NULL;
	s = nm_breaker_find(b, service_id);
	if (s)
		return s;
	if ((b->used + 1) * 2 > b->cap && grow(b))
		return NULL;
	s = probe(b, service_id);
	memset(s, 0, sizeof(*s));
	s->service_id = service_id;
	b->used++;
	return s;
}

int nm_breaker_take_conn(struct nm_breaker_svc *s, uint32_t max)
{
	if (s->connections >= max) {
		s->refused_connections++;
		return -EBUSY;
	}
	s->connections++;
	s->admitted++;
	return 0;
}

void nm_breaker_put_conn(struct nm_breaker_svc *s)
{
	if (s->connections)
		s->connections--;
}

int nm_breaker_take_pending(struct nm_breaker_svc *s, uint32_t max)
{
	if (s->pending >= max) {
		s->refused_pending++;
		return -EBUSY;
	}
	s->pending++;
	return 0;
}

void nm_breaker_put_pending(struct nm_breaker_svc *s)
{
	if (s->pending)
		s->pending--;
}

void nm_breakers_free(struct nm_breakers *b)
{
	free(b->slots);
	memset(b, 0, sizeof(*b));
}
