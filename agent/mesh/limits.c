// SPDX-License-Identifier: Apache-2.0
/*
 * limits.c - overload limits: derived defaults, global counters and the
 * per-pod / per-peer count tables (open addressing, linear probing,
 * backward-shift deletion so no tombstones accumulate).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "lib/log.h"
#include "mesh/limits.h"

_Static_assert(sizeof(struct nm_addr) == 16, "peer keys are 16 bytes");

/* ------------------------------------------------------------- defaults */

void nm_limits_derive(uint64_t nofile, const struct nm_limits_cfg *cfg,
		      struct nm_limits_cfg *out)
{
	uint64_t flows = nofile > NM_LIMITS_FD_RESERVE + 2 ?
				 (nofile - NM_LIMITS_FD_RESERVE) / 2 : 1;
	uint64_t hs;

	if (flows > UINT32_MAX)
		flows = UINT32_MAX;
	if (cfg && cfg->max_flows)
		flows = cfg->max_flows;
	hs = flows / 4;
	if (hs < NM_LIMITS_MIN_HANDSHAKES)
		hs = NM_LIMITS_MIN_HANDSHAKES;
	if (hs > flows)
		hs = flows;
	out->max_flows = (uint32_t)flows;
	out->max_handshakes = cfg && cfg->max_handshakes ? cfg->max_handshakes :
							   (uint32_t)hs;
	out->max_flows_per_pod = cfg && cfg->max_flows_per_pod ?
					 cfg->max_flows_per_pod :
					 (uint32_t)(flows / 4 ? flows / 4 : 1);
	out->max_flows_per_peer = cfg && cfg->max_flows_per_peer ?
					  cfg->max_flows_per_peer :
					  (uint32_t)(flows / 2 ? flows / 2 : 1);
}

void nm_limits_configure(struct nm_limits *l, uint64_t nofile,
			 const struct nm_limits_cfg *cfg)
{
	nm_limits_derive(nofile, cfg, &l->max);
}

int nm_limits_init(struct nm_limits *l, const struct nm_limits_cfg *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	nm_limits_configure(l, rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX :
							      rl.rlim_cur,
			    cfg);
	pr_info("msg=\"limits\" nofile=%llu max_flows=%u max_handshakes=%u max_flows_per_pod=%u max_flows_per_peer=%u",
		(unsigned long long)rl.rlim_cur, l->max.max_flows,
		l->max.max_handshakes, l->max.max_flows_per_pod,
		l->max.max_flows_per_peer);
	return 0;
}

void nm_limits_free(struct nm_limits *l)
{
	nm_count_free(&l->pods);
	nm_count_free(&l->peers);
}

/* --------------------------------------------------------- count table */

/* FNV-1a over the 16 key bytes, then a final mix: addresses differ mostly
 * in their last bytes. */
static uint32_t key_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h;
}

static struct nm_count_entry *slot_find(const struct nm_count_table *t,
					const uint8_t key[16])
{
	uint32_t mask = t->cap - 1, i;

	if (!t->cap)
		return NULL;
	for (i = key_hash(key) & mask;; i = (i + 1) & mask) {
		struct nm_count_entry *e = &t->slots[i];

		if (!e->count)
			return NULL;
		if (!memcmp(e->key, key, 16))
			return e;
	}
}

static struct nm_count_entry *slot_insert(struct nm_count_table *t,
					  const uint8_t key[16])
{
	uint32_t mask = t->cap - 1, i;

	for (i = key_hash(key) & mask; t->slots[i].count; i = (i + 1) & mask)
		;
	memcpy(t->slots[i].key, key, 16);
	t->used++;
	return &t->slots[i];
}

/* Keeps the load at most 1/2: probes stay short. */
static int table_grow(struct nm_count_table *t)
{
	uint32_t ncap = t->cap ? t->cap * 2 : 16;
	struct nm_count_table n = { .cap = ncap };

	if (ncap < t->cap)
		return -ENOMEM;
	n.slots = calloc(ncap, sizeof(*n.slots));
	if (!n.slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->cap; i++) {
		if (t->slots[i].count)
			slot_insert(&n, t->slots[i].key)->count =
				t->slots[i].count;
	}
	free(t->slots);
	*t = n;
	return 0;
}

/* Backward-shift deletion: later entries of the probe run move up so a
 * lookup never stops early at the hole. */
static void slot_delete(struct nm_count_table *t, struct nm_count_entry *e)
{
	uint32_t mask = t->cap - 1;
	uint32_t hole = (uint32_t)(e - t->slots), j = hole;

	t->slots[hole].count = 0;
	t->used--;
	for (;;) {
		uint32_t home;

		j = (j + 1) & mask;
		if (!t->slots[j].count)
			return;
		home = key_hash(t->slots[j].key) & mask;
		/* Move j into the hole unless its home lies cyclically in
		 * (hole, j]. */
		if (hole <= j ? (home > hole && home <= j) :
				(home > hole || home <= j))
			continue;
		t->slots[hole] = t->slots[j];
		t->slots[j].count = 0;
		hole = j;
	}
}

int nm_count_add(struct nm_count_table *t, const uint8_t key[16], int delta)
{
	struct nm_count_entry *e = slot_find(t, key);

	if (!e) {
		if (delta <= 0)
			return 0;
		if ((t->used + 1) * 2 > t->cap) {
			int err = table_grow(t);

			if (err)
				return err;
		}
		e = slot_insert(t, key);
		e->count = (uint32_t)delta;
		return (int)e->count;
	}
	if (delta < 0 && e->count <= (uint32_t)-delta) {
		slot_delete(t, e);
		return 0;
	}
	e->count += delta;
	return (int)e->count;
}

uint32_t nm_count_get(const struct nm_count_table *t, const uint8_t key[16])
{
	const struct nm_count_entry *e = slot_find(t, key);

	return e ? e->count : 0;
}

void nm_count_free(struct nm_count_table *t)
{
	free(t->slots);
	*t = (struct nm_count_table){ 0 };
}

/* ---------------------------------------------------------------- slots */

int nm_limits_take_flow(struct nm_limits *l)
{
	if (l->flows >= l->max.max_flows) {
		l->refused[NM_LIMIT_FLOWS]++;
		return -EBUSY;
	}
	l->flows++;
	return 0;
}

void nm_limits_put_flow(struct nm_limits *l)
{
	if (l->flows)
		l->flows--;
}

int nm_limits_take_handshake(struct nm_limits *l)
{
	if (l->handshakes >= l->max.max_handshakes) {
		l->refused[NM_LIMIT_HANDSHAKES]++;
		return -EBUSY;
	}
	l->handshakes++;
	return 0;
}

void nm_limits_put_handshake(struct nm_limits *l)
{
	if (l->handshakes)
		l->handshakes--;
}

static void pod_key(uint32_t workload, uint8_t key[16])
{
	memset(key, 0, 16);
	memcpy(key, &workload, sizeof(workload));
}

static int take_key(struct nm_limits *l, struct nm_count_table *t,
		    const uint8_t key[16], uint32_t max, enum nm_limit_kind kind)
{
	int n;

	if (nm_count_get(t, key) >= max) {
		l->refused[kind]++;
		return -EBUSY;
	}
	n = nm_count_add(t, key, 1);
	return n < 0 ? n : 0;
}

int nm_limits_take_pod(struct nm_limits *l, uint32_t workload)
{
	uint8_t key[16];

	pod_key(workload, key);
	return take_key(l, &l->pods, key, l->max.max_flows_per_pod,
			NM_LIMIT_POD);
}

void nm_limits_put_pod(struct nm_limits *l, uint32_t workload)
{
	uint8_t key[16];

	pod_key(workload, key);
	nm_count_add(&l->pods, key, -1);
}

int nm_limits_take_peer(struct nm_limits *l, const struct nm_addr *peer)
{
	return take_key(l, &l->peers, (const uint8_t *)peer,
			l->max.max_flows_per_peer, NM_LIMIT_PEER);
}

void nm_limits_put_peer(struct nm_limits *l, const struct nm_addr *peer)
{
	nm_count_add(&l->peers, (const uint8_t *)peer, -1);
}

uint32_t nm_limits_pod_count(const struct nm_limits *l, uint32_t workload)
{
	uint8_t key[16];

	pod_key(workload, key);
	return nm_count_get(&l->pods, key);
}

uint32_t nm_limits_peer_count(const struct nm_limits *l,
			      const struct nm_addr *peer)
{
	return nm_count_get(&l->peers, (const uint8_t *)peer);
}
