// SPDX-License-Identifier: Apache-2.0
/*
 * index.c - open-addressing hash of 16-byte keys (index.h). Linear probing
 * in a power-of-two table at most half full: a lookup touches one or two
 * slots, which is what a per-flow lookup may cost.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "state/index.h"

struct nm_st_slot {
	struct nm_st_key key;
	const void *val; /* NULL: empty */
};

struct nm_st_index {
	size_t mask;
	struct nm_st_slot slots[];
};

struct nm_st_key nm_st_key_u64(uint64_t v)
{
	struct nm_st_key k = { 0 };

	memcpy(k.b, &v, sizeof(v));
	return k;
}

/* 64-bit FNV-1a over the key, then a murmur finalizer to spread low bits. */
static uint64_t key_hash(const struct nm_st_key *k)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < sizeof(k->b); i++) {
		h ^= k->b[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

struct nm_st_index *nm_st_index_create(unsigned int n)
{
	struct nm_st_index *ix;
	size_t cap = 8;

	while (cap < (size_t)n * 2)
		cap <<= 1;
	ix = calloc(1, sizeof(*ix) + cap * sizeof(ix->slots[0]));
	if (!ix)
		return NULL;
	ix->mask = cap - 1;
	return ix;
}

void nm_st_index_free(struct nm_st_index *ix)
{
	free(ix);
}

int nm_st_index_add(struct nm_st_index *ix, const struct nm_st_key *k,
		    const void *val, const void **old)
{
	size_t i = key_hash(k) & ix->mask;

	for (size_t probes = 0; probes <= ix->mask; probes++) {
		struct nm_st_slot *s = &ix->slots[i];

		if (!s->val) {
			s->key = *k;
			s->val = val;
			return 0;
		}
		if (!memcmp(&s->key, k, sizeof(*k))) {
			if (old)
				*old = s->val;
			return -EEXIST;
		}
		i = (i + 1) & ix->mask;
	}
	return -ENOSPC;
}

const void *nm_st_index_get(const struct nm_st_index *ix,
			    const struct nm_st_key *k)
{
	size_t i;

	if (!ix)
		return NULL;
	i = key_hash(k) & ix->mask;
	for (size_t probes = 0; probes <= ix->mask; probes++) {
		const struct nm_st_slot *s = &ix->slots[i];

		if (!s->val)
			return NULL;
		if (!memcmp(&s->key, k, sizeof(*k)))
			return s->val;
		i = (i + 1) & ix->mask;
	}
	return NULL;
}
