/* SPDX-License-Identifier: Apache-2.0 */
/*
 * index.h - a fixed-size open-addressing hash from a 16-byte key to a
 * pointer, for the state's lookups by address, cgroup id and ID. Built once
 * per state (the state is immutable), so there is no delete and the table is
 * sized at creation to stay under half full.
 */
#ifndef NM_STATE_INDEX_H
#define NM_STATE_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct nm_st_key {
	uint8_t b[16];
};

struct nm_st_index;

/* A table for up to n keys; NULL when out of memory. */
struct nm_st_index *nm_st_index_create(unsigned int n);
void nm_st_index_free(struct nm_st_index *ix);
/* 0, -EEXIST (the key is there: *old, if given, gets its value) or -ENOSPC. */
int nm_st_index_add(struct nm_st_index *ix, const struct nm_st_key *k,
		    const void *val, const void **old);
const void *nm_st_index_get(const struct nm_st_index *ix,
			    const struct nm_st_key *k);

struct nm_st_key nm_st_key_u64(uint64_t v);

#endif
