// SPDX-License-Identifier: Apache-2.0
/*
 * vcache.c - verified peer chains (vcache.h says what makes an entry valid).
 *
 * A fixed table of NM_VCACHE_SLOTS: a node talks to a bounded set of peer
 * identities, each with one certificate at a time, so a linear scan over
 * 64 hashes is cheaper than anything cleverer, and a full table replaces
 * its oldest entry.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/asn1.h>

#include "lib/spiffe.h"
#include "mesh/vcache.h"

struct vcache_entry {
	bool used;
	uint64_t hash;
	unsigned char *der;
	size_t len;
	STACK_OF(X509) *issuers; /* chain[1..]: up to and with the anchor */
	time_t expires;
	time_t stored_at;
};

struct nm_vcache {
	struct vcache_entry slot[NM_VCACHE_SLOTS];
	struct nm_vcache_stats stats;
};

/* FNV-1a: picks the slot; the DER comparison decides. */
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

static void entry_clear(struct vcache_entry *e)
{
	free(e->der);
	sk_X509_pop_free(e->issuers, X509_free);
	memset(e, 0, sizeof(*e));
}

struct nm_vcache *nm_vcache_new(void)
{
	return calloc(1, sizeof(struct nm_vcache));
}

void nm_vcache_free(struct nm_vcache *vc)
{
	if (!vc)
		return;
	for (unsigned int i = 0; i < NM_VCACHE_SLOTS; i++)
		entry_clear(&vc->slot[i]);
	free(vc);
}

static int append_der(unsigned char **buf, size_t *len, X509 *x)
{
	int n = i2d_X509(x, NULL);
	unsigned char *grown, *p;

	if (n <= 0)
		return -EINVAL;
	grown = realloc(*buf, *len + (size_t)n);
	if (!grown)
		return -ENOMEM;
	*buf = grown;
	p = grown + *len;
	if (i2d_X509(x, &p) != n)
		return -EINVAL;
	*len += (size_t)n;
	return 0;
}

int nm_vcache_key_make(struct nm_vcache_key *k, X509 *leaf,
		       STACK_OF(X509) *sent)
{
	int ret;

	memset(k, 0, sizeof(*k));
	if (!leaf)
		return -EINVAL;
	ret = append_der(&k->der, &k->len, leaf);
	for (int i = 0; !ret && i < sk_X509_num(sent); i++) {
		X509 *x = sk_X509_value(sent, i);

		if (x != leaf)
			ret = append_der(&k->der, &k->len, x);
	}
	if (ret) {
		nm_vcache_key_release(k);
		return ret;
	}
	k->hash = fnv1a(k->der, k->len);
	return 0;
}

void nm_vcache_key_release(struct nm_vcache_key *k)
{
	free(k->der);
	memset(k, 0, sizeof(*k));
}

static struct vcache_entry *find(struct nm_vcache *vc,
				 const struct nm_vcache_key *k)
{
	for (unsigned int i = 0; i < NM_VCACHE_SLOTS; i++) {
		struct vcache_entry *e = &vc->slot[i];

		if (e->used && e->hash == k->hash && e->len == k->len &&
		    memcmp(e->der, k->der, k->len) == 0)
			return e;
	}
	return NULL;
}

STACK_OF(X509) *nm_vcache_lookup(struct nm_vcache *vc,
				 const struct nm_vcache_key *k, X509 *leaf,
				 time_t now)
{
	struct vcache_entry *e = k->der ? find(vc, k) : NULL;
	STACK_OF(X509) *chain;

	if (!e) {
		vc->stats.misses++;
		return NULL;
	}
	if (now >= e->expires || now < e->stored_at) {
		/* Past a notAfter or the TTL (or the clock went back):
		 * verify again, which also refuses an expired chain. */
		entry_clear(e);
		vc->stats.expired++;
		vc->stats.misses++;
		return NULL;
	}
	chain = X509_chain_up_ref(e->issuers);
	if (!chain || !X509_up_ref(leaf)) {
		sk_X509_pop_free(chain, X509_free);
		vc->stats.misses++;
		return NULL;
	}
	if (!sk_X509_insert(chain, leaf, 0)) {
		X509_free(leaf);
		sk_X509_pop_free(chain, X509_free);
		vc->stats.misses++;
		return NULL;
	}
	vc->stats.hits++;
	return chain;
}

int nm_vcache_store(struct nm_vcache *vc, struct nm_vcache_key *k,
		    STACK_OF(X509) *chain, time_t now)
{
	struct vcache_entry *e = NULL, *oldest = NULL;
	STACK_OF(X509) *issuers;
	time_t expires = now + NM_VCACHE_TTL_S;
	int n = sk_X509_num(chain);

	if (!k->der || n < 1)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		/* 0 (unreadable) expires at once. */
		time_t t = (time_t)nm_x509_time_secs(
			X509_get0_notAfter(sk_X509_value(chain, i)));

		if (t < expires)
			expires = t;
	}
	if (expires <= now)
		return -EINVAL;
	issuers = sk_X509_new_null();
	if (!issuers)
		return -ENOMEM;
	for (int i = 1; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);

		if (!X509_up_ref(x))
			goto nomem;
		if (!sk_X509_push(issuers, x)) {
			X509_free(x);
			goto nomem;
		}
	}
	e = find(vc, k);
	for (unsigned int i = 0; !e && i < NM_VCACHE_SLOTS; i++) {
		if (!vc->slot[i].used)
			e = &vc->slot[i];
		else if (!oldest || vc->slot[i].stored_at < oldest->stored_at)
			oldest = &vc->slot[i];
	}
	if (!e)
		e = oldest;
	entry_clear(e);
	e->used = true;
	e->hash = k->hash;
	e->der = k->der;
	e->len = k->len;
	e->issuers = issuers;
	e->expires = expires;
	e->stored_at = now;
	k->der = NULL;
	k->len = 0;
	vc->stats.stored++;
	return 0;
nomem:
	sk_X509_pop_free(issuers, X509_free);
	return -ENOMEM;
}

void nm_vcache_get_stats(const struct nm_vcache *vc,
			 struct nm_vcache_stats *out)
{
	*out = vc->stats;
}

void nm_vcache_carry_stats(struct nm_vcache *vc, const struct nm_vcache *from)
{
	vc->stats.hits += from->stats.hits;
	vc->stats.misses += from->stats.misses;
	vc->stats.stored += from->stats.stored;
	vc->stats.expired += from->stats.expired;
}
