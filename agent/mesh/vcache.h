/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vcache.h - peer certificate chains this nm_tls verified, so that the
 * same chain presented again skips X509_verify_cert() (issue 14: what a
 * full handshake costs). Chromium's certificate verifier caches its
 * results the same way.
 *
 * An entry is the exact DER of the chain the peer sent (leaf first),
 * compared byte for byte (the hash only picks the slot), plus the issuers
 * OpenSSL found for it up to the anchor. Only chains that passed every
 * check are stored; refusals always take the full path. An entry expires
 * at the earliest notAfter of its chain, or NM_VCACHE_TTL_S after it was
 * stored, whichever comes first.
 *
 * What makes a stored verdict valid for a later handshake is the rest of
 * the verification staying the same: one cache per SSL_CTX of one nm_tls,
 * so the same trust store, flags, purpose (client or server role) and
 * trust domain; a reload builds a new nm_tls with empty caches. The
 * signature over each handshake (CertificateVerify) is OpenSSL's and is
 * never skipped: the cache says who a certificate names, not that the
 * peer holds its key. Not thread-safe, like the nm_tls it belongs to.
 */
#ifndef NM_MESH_VCACHE_H
#define NM_MESH_VCACHE_H

#include <stdint.h>
#include <time.h>
#include <openssl/x509.h>

#define NM_VCACHE_SLOTS 64
#define NM_VCACHE_TTL_S 600

struct nm_vcache;

struct nm_vcache_stats {
	uint64_t hits, misses, stored, expired;
};

/* The chain a peer sent, encoded once per handshake: DER of the leaf,
 * then of every other certificate sent, and its hash. */
struct nm_vcache_key {
	unsigned char *der;
	size_t len;
	uint64_t hash;
};

struct nm_vcache *nm_vcache_new(void);
void nm_vcache_free(struct nm_vcache *vc);

/* sent: what the peer sent (X509_STORE_CTX's untrusted stack, leaf
 * first) or NULL. 0 or -errno. */
int nm_vcache_key_make(struct nm_vcache_key *k, X509 *leaf,
		       STACK_OF(X509) *sent);
void nm_vcache_key_release(struct nm_vcache_key *k);

/* On a hit: the verified chain for X509_STORE_CTX_set0_verified_chain(),
 * leaf then the stored issuers, each with a reference of its own. NULL on
 * a miss (an expired entry is dropped). */
STACK_OF(X509) *nm_vcache_lookup(struct nm_vcache *vc,
				 const struct nm_vcache_key *k, X509 *leaf,
				 time_t now);

/* After X509_verify_cert() accepted the chain of k: stores it with the
 * issuers of chain (the verified chain, leaf first), taking k's encoding
 * (k is empty after). 0 or -errno (not stored; k is left as it was). */
int nm_vcache_store(struct nm_vcache *vc, struct nm_vcache_key *k,
		    STACK_OF(X509) *chain, time_t now);

void nm_vcache_get_stats(const struct nm_vcache *vc,
			 struct nm_vcache_stats *out);
/* Adds from's counters to vc's (not its entries): a reload's new cache
 * goes on counting where the old one stopped, so the exported counters
 * never go back. */
void nm_vcache_carry_stats(struct nm_vcache *vc, const struct nm_vcache *from);

#endif
