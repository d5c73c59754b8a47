// SPDX-License-Identifier: Apache-2.0
/*
 * maglev.c - Maglev lookup tables and locality tiers (lb.h). Pure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"

unsigned int nm_lb_tier(bool same_node, const char *self_zone,
			const char *ep_zone)
{
	if (same_node)
		return 0;
	if (strcmp(self_zone ? self_zone : "", ep_zone ? ep_zone : "") == 0)
		return 1;
	return 2;
}

unsigned int nm_lb_primary_range(const struct nm_lb_subset *ss,
				 uint32_t locality, unsigned int *off)
{
	*off = 0;
	if (locality == NM_LB_LOC_NONE)
		return (unsigned int)ss->n[0] + ss->n[1] + ss->n[2];
	if (locality == NM_LB_LOC_STRICT)
		return ss->n[0];
	for (unsigned int t = 0; t < NM_LB_TIERS; t++) {
		if (ss->n[t])
			return ss->n[t];
		*off += ss->n[t];
	}
	return 0;
}

bool nm_lb_is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	if (n % 2 == 0)
		return n == 2;
	for (uint32_t d = 3; (uint64_t)d * d <= n; d += 2)
		if (n % d == 0)
			return false;
	return true;
}

uint32_t nm_lb_maglev_size(unsigned int n, uint32_t prev)
{
	uint64_t want = (uint64_t)n * NM_LB_MAGLEV_FACTOR;
	uint32_t m;

	if (n == 0)
		return 0;
	if ((prev >= want || prev == NM_MAGLEV_MAX) && prev > n &&
	    prev <= NM_MAGLEV_MAX && nm_lb_is_prime(prev))
		return prev;
	if (want >= NM_MAGLEV_MAX)
		return NM_MAGLEV_MAX;
	for (m = (uint32_t)want; !nm_lb_is_prime(m); m++)
		;
	return m;
}

/* splitmix64's finaliser: the two permutation hashes from one key. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

int nm_lb_maglev_fill(const uint64_t *keys, unsigned int n, uint32_t m,
		      uint32_t *table)
{
	uint32_t *offset = NULL, *skip = NULL, *next = NULL;
	uint32_t filled = 0;
	int ret = -ENOMEM;

	if (n == 0 || m <= n || !nm_lb_is_prime(m))
		return -EINVAL;
	offset = calloc(n, sizeof(*offset));
	skip = calloc(n, sizeof(*skip));
	next = calloc(n, sizeof(*next));
	if (!offset || !skip || !next)
		goto out;
	for (unsigned int i = 0; i < n; i++) {
		offset[i] = (uint32_t)(mix64(keys[i] ^ 0x6d61676c65763031ull) % m);
		skip[i] = (uint32_t)(mix64(keys[i] ^ 0x6d61676c65763032ull) % (m - 1)) + 1;
	}
	for (uint32_t j = 0; j < m; j++)
		table[j] = UINT32_MAX;
	/* Each endpoint in turn takes its next preferred free entry: m prime
	 * and 0 < skip < m make every permutation visit every entry. */
	while (filled < m) {
		for (unsigned int i = 0; i < n && filled < m; i++) {
			uint32_t c;

			do {
				c = (uint32_t)(((uint64_t)offset[i] +
						(uint64_t)next[i] * skip[i]) % m);
				next[i]++;
			} while (table[c] != UINT32_MAX);
			table[c] = i;
			filled++;
		}
	}
	ret = 0;
out:
	free(offset);
	free(skip);
	free(next);
	return ret;
}

uint64_t nm_lb_endpoint_key(const struct nm_addr *addr, uint16_t port_be)
{
	uint64_t h = 0xcbf29ce484222325ull;

	/* FNV-1a over address and port, then mixed. */
	for (unsigned int i = 0; i < sizeof(addr->a); i++)
		h = (h ^ addr->a[i]) * 0x100000001b3ull;
	h = (h ^ (port_be & 0xff)) * 0x100000001b3ull;
	h = (h ^ (port_be >> 8)) * 0x100000001b3ull;
	return mix64(h);
}

/* murmur3's fmix32; must stay equal to nm_lb.bpf.h's. */
static uint32_t fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

uint32_t nm_lb_hash_addr(const struct nm_addr *a)
{
	uint32_t w[4], h = 0x9e3779b9u;

	memcpy(w, a->a, sizeof(w));
	for (unsigned int i = 0; i < 4; i++)
		h = fmix32(h ^ w[i]);
	return h;
}
