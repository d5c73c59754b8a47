// SPDX-License-Identifier: Apache-2.0
/*
 * ids.c - the ID registry (state.h): (kind, namespace, name) -> u32, for the
 * agent's whole life. IDs count up per kind from 1 and are never handed out
 * again, even after their object is gone: a redirect record written under an
 * older generation that still names an ID can only mean the object it was
 * written for, never a newcomer that took its number. 2^32 IDs per kind
 * outlast any agent; running out is an error, not a wrap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state/state.h"

struct nm_id_ent {
	struct nm_id_ent *next;
	uint64_t hash;
	uint32_t id;
	enum nm_kind kind;
	char key[]; /* "ns\0name\0" */
};

struct nm_ids {
	struct nm_id_ent **buckets;
	size_t n_buckets; /* power of two */
	size_t n;
	uint32_t last[NM_KIND_MAX];
};

static uint64_t str_hash(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	/* The terminator separates ns from name: ("a", "bc") != ("ab", "c"). */
	h ^= 0xff;
	return h * 0x100000001b3ull;
}

static uint64_t key_hash(enum nm_kind kind, const char *ns, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)kind;

	return str_hash(str_hash(h, ns), name);
}

int nm_ids_create(struct nm_ids **out)
{
	struct nm_ids *ids = calloc(1, sizeof(*ids));

	if (!ids)
		return -ENOMEM;
	ids->n_buckets = 64;
	ids->buckets = calloc(ids->n_buckets, sizeof(ids->buckets[0]));
	if (!ids->buckets) {
		free(ids);
		return -ENOMEM;
	}
	*out = ids;
	return 0;
}

void nm_ids_free(struct nm_ids *ids)
{
	if (!ids)
		return;
	for (size_t i = 0; i < ids->n_buckets; i++) {
		struct nm_id_ent *e = ids->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(ids->buckets);
	free(ids);
}

static int grow(struct nm_ids *ids)
{
	size_t nb = ids->n_buckets * 2;
	struct nm_id_ent **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < ids->n_buckets; i++) {
		struct nm_id_ent *e = ids->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(ids->buckets);
	ids->buckets = b;
	ids->n_buckets = nb;
	return 0;
}

int nm_ids_get(struct nm_ids *ids, enum nm_kind kind, const char *ns,
	       const char *name, uint32_t *id)
{
	uint64_t h = key_hash(kind, ns, name);
	size_t ln = strlen(ns), lm = strlen(name);
	struct nm_id_ent *e;

	for (e = ids->buckets[h & (ids->n_buckets - 1)]; e; e = e->next) {
		if (e->hash == h && e->kind == kind && !strcmp(e->key, ns) &&
		    !strcmp(e->key + ln + 1, name) && strlen(e->key) == ln) {
			*id = e->id;
			return 0;
		}
	}
	if (ids->last[kind] == UINT32_MAX)
		return -ERANGE;
	if (ids->n >= ids->n_buckets && grow(ids))
		return -ENOMEM;
	e = malloc(sizeof(*e) + ln + lm + 2);
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->kind = kind;
	e->id = ++ids->last[kind];
	memcpy(e->key, ns, ln + 1);
	memcpy(e->key + ln + 1, name, lm + 1);
	e->next = ids->buckets[h & (ids->n_buckets - 1)];
	ids->buckets[h & (ids->n_buckets - 1)] = e;
	ids->n++;
	*id = e->id;
	return 0;
}
