/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.h - TLS 1.3 contexts for NMTP (DESIGN §5, §6) over OpenSSL 3.
 *
 * One nm_tls holds the trust bundle and one credential (cert + key) per local
 * service account, loaded from <cert_dir>/<ns>/<sa>/{cert.pem,key.pem,
 * bundle.pem}. TLS 1.3 only; ciphers AES-128-GCM, AES-256-GCM,
 * ChaCha20-Poly1305; ALPN "nmtp/1"; both sides require and verify the peer's
 * chain to the bundle and the leaf rules (the peer's leaf is no CA and no
 * workload certificate issued anything in its chain; see tls.c), then the
 * caller checks the SPIFFE ID with nm_tls_check_peer(). Certificate and key
 * files are read with nm_file_read() (lib/pem.h): a FIFO or oversized file
 * in the tree fails nm_tls_create() at once, naming it. SSL objects are
 * created for non-blocking fds; the caller
 * drives SSL_do_handshake/SSL_read/SSL_write from its event loop.
 */
#ifndef NM_TLS_H
#define NM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "lib/spiffe.h"

struct nm_tls;

/*
 * Loads every <ns>/<sa> credential under cert_dir. Fails with an error naming
 * the file (in err) when a present credential is unreadable, mismatched
 * (key does not match cert), not ECDSA P-256, or its SPIFFE ID does not equal
 * spiffe://<trust_domain>/ns/<ns>/sa/<sa>. Returns 0 or -errno.
 */
int nm_tls_create(const char *cert_dir, const char *trust_domain,
		  struct nm_tls **out, char *err, size_t errlen);
/*
 * The same load as a reload after prev, the last good set (NULL: as
 * nm_tls_create()). Validation is the same, plus: a leaf that is expired
 * or not yet valid is refused (nm_tls_create() too). What differs is the
 * unit of refusal: a credential (cert.pem/key.pem of one <ns>/<sa>) or a
 * bundle file that fails is logged naming the file and replaced by prev's
 * for the same identity or file, so one bad identity neither blocks the
 * others' rotation nor loses its last good certificate; with no last good
 * one it is left out. Failing whole (-errno, err): cert_dir unreadable,
 * no trust bundle at all, out of memory. The result's generation is
 * prev's + 1. Safe to call from another thread than the one using prev
 * (reads only its immutable credentials), given a reference on prev.
 */
int nm_tls_reload(const char *cert_dir, const char *trust_domain,
		  const struct nm_tls *prev, struct nm_tls **out, char *err,
		  size_t errlen);
/*
 * Lifetime: an nm_tls is reference-counted, single-threaded.
 *  - nm_tls_create() hands the caller (the agent) one reference.
 *  - nm_tls_client_new()/nm_tls_server_new() take one more per SSL; it is
 *    dropped by SSL_free(), so flows never call ref/unref themselves.
 *  - nm_tls_free() drops the caller's reference. On a reload the agent
 *    creates the new nm_tls, points new flows at it and nm_tls_free()s the
 *    old one at once: SSLs made from the old one (handshakes in progress,
 *    relays) keep working with the old credentials, trust bundle and
 *    session cache, and the old nm_tls is destroyed with the last of them.
 *  - nm_tls_ref()/nm_tls_unref() are for any other holder that must keep an
 *    nm_tls alive across such a swap (the certificate-directory worker,
 *    certdir.h). nm_tls_ref() returns t.
 * The counter is atomic, so a reference may be taken and dropped on
 * another thread; everything else about an nm_tls is single-threaded
 * except the read-only getters below (credentials never change after
 * creation). All NULL-safe.
 */
void nm_tls_free(struct nm_tls *t);
struct nm_tls *nm_tls_ref(struct nm_tls *t);
void nm_tls_unref(struct nm_tls *t);
const char *nm_tls_trust_domain(const struct nm_tls *t);
/* True when a credential for ns/sa is loaded. */
bool nm_tls_has_identity(const struct nm_tls *t, const char *ns, const char *sa);
/* Number of loaded credentials. */
unsigned int nm_tls_identity_count(const struct nm_tls *t);

/*
 * What a credential is, for expiry metrics (telemetry), `nodemesh certs`
 * (via the run state) and the rotation log. Seconds to expiry are
 * not_after - time(NULL). Read-only: callable from any thread holding a
 * reference.
 */
#define NM_TLS_SERIAL_MAX 96
struct nm_tls_cert_info {
	struct nm_spiffe_id id;
	char file[NM_PATH_MAX + 16];    /* the cert.pem it was loaded from */
	char serial[NM_TLS_SERIAL_MAX]; /* hex as `openssl x509 -serial` */
	int64_t not_before;             /* Unix seconds */
	int64_t not_after;
};
/* Credential i, 0 <= i < nm_tls_identity_count(); 0 or -ENOENT. */
int nm_tls_cert_info(const struct nm_tls *t, unsigned int i,
		     struct nm_tls_cert_info *out);
/* 1 for the set loaded at start, +1 per reload (nm_tls_reload). */
unsigned int nm_tls_generation(const struct nm_tls *t);
/* Distinct trust anchors in the bundle (old and new root: 2). */
unsigned int nm_tls_anchor_count(const struct nm_tls *t);
/* Files nm_tls_reload() refused (their last good content kept). */
unsigned int nm_tls_refused_count(const struct nm_tls *t);

/* The verified-chain caches of t (mesh/vcache.h): server != 0 for the
 * chains of clients its server side verified, else of servers. */
struct nm_vcache_stats;
void nm_tls_verify_cache_stats(const struct nm_tls *t, int server,
			       struct nm_vcache_stats *out);
/* Before t replaces old (any reload): t's verify-cache counters start from
 * old's, so nodemesh_tls_verify_cache_lookups_total never goes back. The
 * entries are not carried (a new nm_tls verifies afresh). */
void nm_tls_carry_stats(struct nm_tls *t, const struct nm_tls *old);
/* Same trust domain and the same set of trust anchors. */
bool nm_tls_same_anchors(const struct nm_tls *a, const struct nm_tls *b);
/* Same anchors and the same credentials (certificate, chain, key). */
bool nm_tls_same(const struct nm_tls *a, const struct nm_tls *b);
/*
 * Before t replaces old for new handshakes: when both trust the same
 * anchors, t takes old's session-ticket keys, so clients resume across a
 * leaf rotation; otherwise nothing is carried and sessions from old stop
 * resuming. Event-loop thread.
 */
void nm_tls_inherit(struct nm_tls *t, const struct nm_tls *old);
/*
 * TLS 1.3 session resumption, on by default: the server keeps parsed
 * sessions in its cache and issues one ticket (a session ID) per full
 * handshake; the client keeps the newest per (source identity, destination
 * node, peer identity). Off: no tickets, no resumption, both caches dropped.
 */
void nm_tls_set_resumption(struct nm_tls *t, bool on);
/* Sessions held in the server-side cache (for telemetry and tests). */
unsigned long nm_tls_server_sessions(const struct nm_tls *t);

/*
 * Client side: presents ns/sa's certificate, sets SNI from expected_peer and
 * remembers expected_peer for nm_tls_check_peer(). The session may be resumed
 * from an earlier connection with the same (src identity, peer_node, peer
 * identity); peer_node names the destination node (its tunnel address,
 * under 64 bytes; NULL or "" = one slot for all). Returns 0 or -ENOENT (no
 * credential for ns/sa) / -ENOMEM / -ENAMETOOLONG.
 */
int nm_tls_client_new(struct nm_tls *t, const char *ns, const char *sa,
		      const struct nm_spiffe_id *expected_peer,
		      const char *peer_node, int fd, SSL **out);
/*
 * Server side: presents the certificate of the identity named by the
 * client's SNI; when the client sends no SNI or one we do not hold, presents
 * default_ns/default_sa if given, else fails the handshake.
 */
int nm_tls_server_new(struct nm_tls *t, const char *default_ns,
		      const char *default_sa, int fd, SSL **out);

/*
 * After a successful handshake: the chain verified (OpenSSL's result, and
 * when refused by our verify callback *why is its reason), the leaf obeys
 * the leaf rules (re-checked, as resumed sessions skip the callback), the
 * leaf has exactly one URI SAN, it is a SPIFFE ID in our trust domain, and,
 * when expected is non-NULL (or was set by nm_tls_client_new), equals it
 * exactly. Fills *peer. Returns 0 or -EPERM with *why.
 */
/*
 * One SSL_do_handshake() step: its return value, and in *cpu_ns the CPU
 * time this thread spent in it (telemetry's handshake CPU; 0 when the
 * clock is unavailable). ERR_clear_error() first, as SSL_get_error() wants.
 */
int nm_tls_handshake_step(SSL *ssl, uint64_t *cpu_ns);
int nm_tls_check_peer(SSL *ssl, const struct nm_spiffe_id *expected,
		      struct nm_spiffe_id *peer, const char **why);
/*
 * Why our verify callback refused the peer's certificate (a static string:
 * "leaf certificate is a CA ...", "issuer carries a workload SPIFFE ID",
 * "port is not allowed", ...), or NULL when it did not. For the handshake
 * failure log line, where OpenSSL only says "certificate verify failed".
 */
const char *nm_tls_refusal(const SSL *ssl);
/* The identity the server side presented (from SNI); 0 or -ENOENT. */
int nm_tls_local_identity(SSL *ssl, struct nm_spiffe_id *out);

/* Credential i's identity and validity in Unix seconds (telemetry);
 * 0, or -ENOENT past the last one. */
int nm_tls_cred_info(const struct nm_tls *t, unsigned int i,
		     struct nm_spiffe_id *id, int64_t *not_before,
		     int64_t *not_after);

#endif
