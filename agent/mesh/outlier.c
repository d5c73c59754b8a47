// SPDX-License-Identifier: Apache-2.0
/*
 * outlier.c - passive outlier detection (outlier.h): an open-addressing
 * table of endpoints (linear probing, no deletion: an endpoint's counters
 * outlive its ejections) and the ejection rules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/outlier.h"

_Static_assert(sizeof(struct nm_outlier_key) == 24, "outlier key");

void nm_outlier_key_make(struct nm_outlier_key *k, uint32_t service_id,
			 const struct nm_addr *addr, uint16_t port_be)
{
	memset(k, 0, sizeof(*k));
	k->service_id = service_id;
	k->port = port_be;
	k->addr = *addr;
}

/* FNV-1a over the key, then a final mix. */
static uint32_t key_hash(const struct nm_outlier_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h;
}

static struct nm_outlier_ep *probe(const struct nm_outlier *o,
				   const struct nm_outlier_key *k)
{
	uint32_t mask = o->cap - 1;

	for (uint32_t i = key_hash(k) & mask;; i = (i + 1) & mask) {
		struct nm_outlier_ep *e = &o->slots[i];

		if (!e->used || !memcmp(&e->key, k, sizeof(*k)))
			return e;
	}
}

struct nm_outlier_ep *nm_outlier_find(const struct nm_outlier *o,
				      const struct nm_outlier_key *k)
{
	struct nm_outlier_ep *e;

	if (!o->cap)
		return NULL;
	e = probe(o, k);
	return e->used ? e : NULL;
}

/* Keeps the load at most 1/2. */
static int grow(struct nm_outlier *o)
{
	uint32_t cap = o->cap ? o->cap * 2 : 16;
	struct nm_outlier_ep *old = o->slots;
	uint32_t old_cap = o->cap;

	o->slots = calloc(cap, sizeof(*o->slots));
	if (!o->slots) {
		o->slots = old;
		return -ENOMEM;
	}
	o->cap = cap;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i].used)
			*probe(o, &old[i].key) = old[i];
	free(old);
	return 0;
}

struct nm_outlier_ep *nm_outlier_get(struct nm_outlier *o,
				     const struct nm_outlier_key *k)
{
	struct nm_outlier_ep *e = nm_outlier_find(o, k);

	if (e)
		return e;
	if ((o->used + 1) * 2 > o->cap && grow(o))
		return NULL;
	e = probe(o, k);
	memset(e, 0, sizeof(*e));
	e->key = *k;
	e->used = true;
	o->used++;
	return e;
}

bool nm_outlier_is_ejected(const struct nm_outlier *o,
			   const struct nm_outlier_key *k, int64_t now)
{
	const struct nm_outlier_ep *e = nm_outlier_find(o, k);

	return e && e->ejected_until && e->ejected_until > now;
}

unsigned int nm_outlier_ejected_count(const struct nm_outlier *o,
				      uint32_t service_id, int64_t now)
{
	unsigned int n = 0;

	for (uint32_t i = 0; i < o->cap; i++) {
		const struct nm_outlier_ep *e = &o->slots[i];

		n += e->used && e->key.service_id == service_id &&
		     e->ejected_until > now;
	}
	return n;
}

void nm_outlier_success(struct nm_outlier_ep *e)
{
	e->successes++;
	e->consecutive = 0;
}

enum nm_outlier_verdict nm_outlier_failure(struct nm_outlier *o,
					   struct nm_outlier_ep *e,
					   const struct nm_resilience_cfg *cfg,
					   unsigned int n_endpoints,
					   int64_t now)
{
	unsigned int out;

	e->failures++;
	e->consecutive++;
	if (e->ejected_until > now || e->consecutive < cfg->outlier_failures)
		return NM_OUTLIER_KEPT;
	/* Ejecting this one must leave the share of ejected endpoints at
	 * or below the percentage: with 3 endpoints and 50 %, one at most;
	 * a service's only endpoint is never ejected below 100 %. */
	out = nm_outlier_ejected_count(o, e->key.service_id, now);
	if ((uint64_t)(out + 1) * 100 >
	    (uint64_t)cfg->outlier_max_percent * n_endpoints) {
		e->eject_refused++;
		return NM_OUTLIER_CAPPED;
	}
	e->ejections++;
	e->consecutive = 0;
	e->ejected_until = now + (int64_t)cfg->outlier_base_ms * e->ejections;
	return NM_OUTLIER_EJECTED;
}

unsigned int nm_outlier_expire(struct nm_outlier *o, int64_t now,
			       nm_outlier_return_fn fn, void *arg)
{
	unsigned int n = 0;

	for (uint32_t i = 0; i < o->cap; i++) {
		struct nm_outlier_ep *e = &o->slots[i];

		if (!e->used || !e->ejected_until || e->ejected_until > now)
			continue;
		e->ejected_until = 0;
		e->consecutive = 0;
		n++;
		if (fn)
			fn(e, arg);
	}
	return n;
}

int64_t nm_outlier_next_expiry(const struct nm_outlier *o)
{
	int64_t t = 0;

	for (uint32_t i = 0; i < o->cap; i++) {
		const struct nm_outlier_ep *e = &o->slots[i];

		if (e->used && e->ejected_until && (!t || e->ejected_until < t))
			t = e->ejected_until;
	}
	return t;
}

void nm_outlier_free(struct nm_outlier *o)
{
	free(o->slots);
	memset(o, 0, sizeof(*o));
}
