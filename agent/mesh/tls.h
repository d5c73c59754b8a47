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
 * in the tree fails nm_tls_create() at once, naming it. SSL objects are created for non-blocking fds; the caller
 * drives SSL_do_handshake/SSL_read/SSL_write from its event loop.
 */
#ifndef NM_TLS_H
#define NM_TLS_H

#include <stdbool.h>
#include <stddef.h>
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
 *    nm_tls alive across such a swap (none today). nm_tls_ref() returns t.
 * All NULL-safe.
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
 * TLS 1.3 session resumption, on by default: the server issues one ticket
 * per handshake and the client keeps the newest per (source identity, peer
 * identity). Off: no tickets, no resumption, cached sessions dropped.
 */
void nm_tls_set_resumption(struct nm_tls *t, bool on);

/*
 * Client side: presents ns/sa's certificate, sets SNI from expected_peer and
 * remembers expected_peer for nm_tls_check_peer(). The session may be resumed
 * from an earlier connection with the same (src identity, peer identity).
 * Returns 0 or -ENOENT (no credential for ns/sa) / -ENOMEM.
 */
int nm_tls_client_new(struct nm_tls *t, const char *ns, const char *sa,
		      const struct nm_spiffe_id *expected_peer, int fd,
		      SSL **out);
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

#endif
