// SPDX-License-Identifier: Apache-2.0
/*
 * tls.c - TLS 1.3 for NMTP over OpenSSL 3 (tls.h, DESIGN §5, §6).
 *
 * Layout read by nm_tls_create(): <cert_dir>/<ns>/<sa>/ holds cert.pem (the
 * leaf, optionally followed by intermediates), key.pem and bundle.pem. A
 * folder with neither cert.pem nor key.pem is ignored; entries whose names
 * start with '.' are skipped (Kubernetes' atomic-writer "..data" links). The
 * trust bundle is the union of <cert_dir>/bundle.pem, when present, and every
 * <ns>/<sa>/bundle.pem: one trust domain has one set of anchors, and the
 * union lets either layout (one shared bundle, or one per credential as
 * cert-manager's CSI driver writes) work without configuration.
 *
 * Reloads (nm_tls_reload, driven by mesh/certdir.c's worker thread) build a
 * whole new nm_tls from the files; each bundle file's certificates and each
 * credential are kept in it (bundles[], creds[]) so the next reload can fall
 * back to them one identity or one file at a time, and the anchors are
 * fingerprinted (anchors_digest) so a swap can tell a new trust bundle from
 * new leaves only (nm_tls_inherit). Credentials never change after
 * creation, which is what lets the worker read the last good set while the
 * event loop uses it.
 *
 * Structure and choices:
 *  - Two SSL_CTXs, one per role, sharing one X509_STORE. Credentials are not
 *    baked into a CTX: each SSL gets its certificate with
 *    SSL_use_cert_and_key(), on the client when it is created, on the
 *    server from the servername callback (by SNI). That keeps one CTX per
 *    role however many service accounts the node hosts.
 *  - Every SSL carries a small struct nm_tls_conn in ex_data: trust domain,
 *    expected peer, the identity presented, the session-cache key. It is
 *    freed with the SSL, so callers only ever SSL_free().
 *  - The verify callback enforces the SVID shape during the handshake (leaf
 *    has exactly one URI SAN, a SPIFFE ID in our trust domain), so a bad
 *    peer is refused with an alert rather than after it. Whether the ID is
 *    the *expected* one is left to nm_tls_check_peer(), which re-checks
 *    everything (resumed sessions skip the verify callback).
 *  - ALPN "nmtp/1" both ways; the server refuses a ClientHello without ALPN
 *    (client_hello callback) or without nmtp/1 in it (select callback).
 *  - nm_tls_client_new() accepts expected_peer == NULL: no SNI (the server
 *    presents its default), no expectation, no resumption. fd < 0 leaves
 *    the SSL without a BIO for the caller to attach one.
 *  - Resumption, client side: the client stores a copy of the newest
 *    session per (source identity, destination node, peer identity) from
 *    the new-session callback, so one identity talking to many nodes
 *    resumes with each of them (a ticket of one node is useless at another).
 *  - Resumption, server side: a stateful session cache of parsed sessions
 *    (TLS 1.3 tickets that carry only a session ID, SSL_OP_NO_TICKET), not
 *    stateless tickets: a stateless ticket holds the whole serialized
 *    session with the client's certificate, and re-decoding it
 *    (d2i_SSL_SESSION) was 40 % of the inbound agent's CPU with resumption.
 *    A full handshake issues one ticket; a resumed one issues none (the
 *    ALPN callback, which runs once the PSK was accepted, sets
 *    num_tickets to 0), so the cache holds about one session per client
 *    key, bounded by NM_TLS_SERVER_SESSIONS (oldest evicted) and by the
 *    session timeout. Sessions are reusable (SSL_OP_NO_ANTI_REPLAY: no
 *    0-RTT data is ever accepted, so a ticket replay gains nothing), and a
 *    connection that ends without close_notify (a reset relay) does not
 *    evict its session: conn_free() marks the SSL shut down before
 *    OpenSSL's bad-session check, as the client keeps a copy for the same
 *    reason. The exact peer check (nm_tls_check_peer) runs on every
 *    resumed session, and a resumed peer certificate past its notAfter is
 *    refused. Each nm_tls has its own contexts and caches, so a new trust
 *    bundle or new rules (a reload builds a new nm_tls) never resume a
 *    session made under the old ones.
 *  - Modes: ENABLE_PARTIAL_WRITE and ACCEPT_MOVING_WRITE_BUFFER, because the
 *    relay writes from a ring buffer whose head moves between retries;
 *    RELEASE_BUFFERS is off in the contexts, but the proxy turns it on for
 *    every tunnel (proxy.c): ~34 KiB less per idle connection is worth a
 *    malloc/free per read burst.
 *  - Groups X25519 then P-256 (X25519 is the cheaper key exchange, P-256
 *    matches the certificates for FIPS-minded peers).
 *  - Lifetime: an nm_tls is reference-counted. nm_tls_create() returns one
 *    reference, every SSL made from it takes another (held in its
 *    nm_tls_conn, dropped when the SSL is freed). The callbacks reach the
 *    nm_tls through the SSL's nm_tls_conn, never through a callback
 *    argument or the SSL_CTX's app data, so a reload may nm_tls_free() the
 *    old nm_tls while its handshakes and relays go on: it is destroyed when
 *    the last of them is freed. Not thread-safe (plain counter, unlocked
 *    session cache): one per event loop thread.
 *  - Leaf rules (fault 3 of issue 8): the verify callback, on both roles,
 *    refuses a peer leaf that could issue (nm_x509_svid_leaf_check(): cA,
 *    keyCertSign, cRLSign) and any chain whose issuers are not real CAs or
 *    carry a workload SPIFFE ID (nm_x509_svid_issuer_check()), so a
 *    workload certificate can never vouch for another identity. The store
 *    also verifies with X509_V_FLAG_X509_STRICT (RFC 5280 profile: CA
 *    basicConstraints critical, keyCertSign on CAs, AKI/SKI present), which
 *    the development CA's ECDSA P-256 certificates meet; OpenSSL's default
 *    purposes stay (ssl_client on the server, ssl_server on the client), so
 *    a leaf whose extendedKeyUsage lacks the role is refused too.
 *  - Our own credentials obey the leaf rules as well: a CA certificate in
 *    <ns>/<sa>/cert.pem is refused at load, naming the file.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/tls1.h>
#include <openssl/x509v3.h>

#include "lib/errbuf.h"
#include "lib/log.h"
#include "lib/pem.h"
#include "mesh/tls.h"
#include "mesh/tunnel.h"
#include "mesh/vcache.h"

#define NM_TLS_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define NM_TLS_GROUPS "X25519:P-256"
#define NM_TLS_SNI_MAX 256
#define NM_TLS_SESSIONS_MAX 4096
/* Server-side cache: ~8 KiB a session (the client's chain, parsed). */
#define NM_TLS_SERVER_SESSIONS 1024
#define NM_TLS_SESSION_TIMEOUT_S 3600
#define NM_TLS_VERIFY_DEPTH 5
#define NM_TLS_SID_CTX "nodemesh/nmtp1"

/* ALPN in wire format: length-prefixed protocol names. */
static const unsigned char alpn_wire[] = "\x06" NM_NMTP_ALPN;
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)

struct nm_tls_cred {
	struct nm_spiffe_id id;
	char sni[NM_TLS_SNI_MAX]; /* "" when ns or sa has a dot */
	X509 *cert;
	STACK_OF(X509) *chain;    /* intermediates after the leaf, may be empty */
	EVP_PKEY *key;
	char file[NM_PATH_MAX + 16]; /* the cert.pem it came from */
};

/* One bundle file's certificates, kept so a reload can fall back to them. */
struct nm_tls_bundle {
	char path[NM_PATH_MAX + 16];
	STACK_OF(X509) *certs;
};

/* "<ns>/<sa> <node> <peer SPIFFE ID>" */
#define NM_TLS_NODE_KEY_MAX 64
#define NM_TLS_CACHE_KEY_MAX \
	(2 * NM_NAME_MAX + NM_TLS_NODE_KEY_MAX + NM_SPIFFE_MAX + 3)

struct nm_tls_session {
	char key[NM_TLS_CACHE_KEY_MAX];
	SSL_SESSION *sess;
	unsigned long long stamp; /* last store, for eviction */
};

struct nm_tls {
	/* Atomic: the certificate-directory worker (certdir.c) builds an
	 * nm_tls and keeps a reference to its last one while the event loop
	 * holds and drops its own; everything else stays single-threaded. */
	atomic_uint refs;
	char trust_domain[NM_NAME_MAX];
	unsigned int generation;
	struct nm_tls_bundle *bundles;
	unsigned int n_bundles;
	unsigned int n_anchors;        /* distinct trust anchors */
	unsigned char anchors_digest[SHA256_DIGEST_LENGTH];
	unsigned int refused;          /* files refused, last good kept */
	X509_STORE *store;
	SSL_CTX *client_ctx;
	SSL_CTX *server_ctx;
	struct nm_vcache *vc_client;   /* servers' chains the client verified */
	struct nm_vcache *vc_server;   /* clients' chains the server verified */
	struct nm_tls_cred *creds;
	unsigned int n_creds;
	bool resumption;
	struct nm_tls_session *sessions;
	unsigned int n_sessions;
	unsigned long long clock;
};

/* Per-SSL state, in ex_data. */
struct nm_tls_conn {
	struct nm_tls *tls; /* a reference, dropped with the SSL */
	char trust_domain[NM_NAME_MAX];
	bool has_expected;
	struct nm_spiffe_id expected;
	bool has_local;
	struct nm_spiffe_id local;
	int default_cred;  /* server: index or -1 */
	char cache_key[NM_TLS_CACHE_KEY_MAX]; /* client: "" = do not cache */
	const char *refusal; /* static string: why verify_cb refused the peer */
};

/*
 * OpenSSL's ex_data indexes are process-wide by design, so this is the one
 * piece of static state: the index, allocated once.
 */
static pthread_once_t conn_idx_once = PTHREAD_ONCE_INIT;
static int conn_idx = -1;

static void tls_destroy(struct nm_tls *t);
static int find_cred(const struct nm_tls *t, const char *ns, const char *sa);

/*
 * Runs inside SSL_free(), before the SSL drops its own SSL_CTX references,
 * so destroying the nm_tls here (last reference) only lowers the CTX counts.
 */
static void conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		      long argl, void *argp)
{
	struct nm_tls_conn *c = ptr;
	SSL *ssl = parent;

	if (!c)
		return;
	/* OpenSSL evicts the session of an SSL freed without close_notify
	 * sent, right after this callback; a reset relay must not cost the
	 * next connection its resumption (see the file comment). */
	if (ssl && SSL_is_init_finished(ssl))
		SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
	nm_tls_unref(c->tls);
	free(c);
}

static void conn_idx_init(void)
{
	conn_idx = SSL_get_ex_new_index(0, (void *)"nm_tls_conn", NULL, NULL,
					conn_free);
}

static struct nm_tls_conn *conn_of(const SSL *ssl)
{
	if (conn_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, conn_idx);
}

/* OpenSSL's reason for what just failed, for a message. */
static const char *ossl_reason(char *buf, size_t len)
{
	return *nm_ossl_reason(buf, len) ? buf : "unknown OpenSSL error";
}

static bool id_equal(const struct nm_spiffe_id *a, const struct nm_spiffe_id *b)
{
	return strcmp(a->trust_domain, b->trust_domain) == 0 &&
	       strcmp(a->ns, b->ns) == 0 && strcmp(a->sa, b->sa) == 0;
}

/* --- loading ------------------------------------------------------------ */

static bool pem_eof(void)
{
	unsigned long e = ERR_peek_last_error();

	/* Reading past the last PEM block reports "no start line". */
	if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
		ERR_clear_error();
		return true;
	}
	return false;
}

/* Reads every certificate of a PEM bundle file. */
static int parse_bundle(const char *path, STACK_OF(X509) **out, char *err,
			size_t errlen)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	char reason[256];
	BIO *bio = NULL;
	X509 *x;
	int ret;

	if (!sk)
		return -ENOMEM;
	ret = nm_pem_open(path, &bio, err, errlen);
	if (ret)
		goto out;
	while ((x = PEM_read_bio_X509(bio, NULL, nm_pem_no_password, NULL))) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			ret = -ENOMEM;
			goto out;
		}
	}
	if (!pem_eof()) {
		nm_set_err(err, errlen, "%s: certificate %d does not parse: %s",
			   path, sk_X509_num(sk) + 1,
			   ossl_reason(reason, sizeof(reason)));
		ret = -EINVAL;
	} else if (sk_X509_num(sk) == 0) {
		nm_set_err(err, errlen, "%s: holds no certificate", path);
		ret = -EINVAL;
	}
out:
	BIO_free(bio);
	if (ret)
		sk_X509_pop_free(sk, X509_free);
	else
		*out = sk;
	ERR_clear_error();
	return ret;
}

static void cred_release(struct nm_tls_cred *c)
{
	X509_free(c->cert);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	memset(c, 0, sizeof(*c));
}

static bool is_p256(EVP_PKEY *key)
{
	char group[64];
	size_t len = 0;

	if (!key || !EVP_PKEY_is_a(key, "EC"))
		return false;
	if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &len))
		return false;
	return strcmp(group, SN_X9_62_prime256v1) == 0;
}

static int load_cert_chain(const char *path, struct nm_tls_cred *c, char *err,
			   size_t errlen)
{
	char reason[256];
	BIO *bio;
	X509 *x;
	int ret;

	ret = nm_pem_open(path, &bio, err, errlen);
	if (ret)
		return ret;
	c->cert = PEM_read_bio_X509(bio, NULL, nm_pem_no_password, NULL);
	if (!c->cert) {
		nm_set_err(err, errlen, "%s: not a PEM certificate: %s", path,
			   ossl_reason(reason, sizeof(reason)));
		ret = -EINVAL;
		goto out;
	}
	c->chain = sk_X509_new_null();
	if (!c->chain) {
		ret = -ENOMEM;
		goto out;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, nm_pem_no_password, NULL))) {
		if (!sk_X509_push(c->chain, x)) {
			X509_free(x);
			ret = -ENOMEM;
			goto out;
		}
	}
	if (!pem_eof()) {
		nm_set_err(err, errlen, "%s: certificate %d does not parse: %s",
			   path, sk_X509_num(c->chain) + 2,
			   ossl_reason(reason, sizeof(reason)));
		ret = -EINVAL;
	}
out:
	BIO_free(bio);
	return ret;
}

/*
 * A credential we would present must be valid now: a peer refuses an
 * expired or not yet valid certificate anyway, and keeping the last good
 * one serves better than swapping in one that fails every handshake.
 */
static int check_validity(const char *path, X509 *cert, char *err,
			  size_t errlen)
{
	int64_t now = (int64_t)time(NULL);
	int64_t nb = nm_x509_time_secs(X509_get0_notBefore(cert));
	int64_t na = nm_x509_time_secs(X509_get0_notAfter(cert));

	if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
		nm_set_err(err, errlen,
			   "%s: certificate is not yet valid (notBefore in %lld s)",
			   path, (long long)(nb - now));
		return -EINVAL;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
		nm_set_err(err, errlen,
			   "%s: certificate has expired (notAfter %lld s ago)",
			   path, (long long)(now - na));
		return -EINVAL;
	}
	return 0;
}

/* Loads <dir>/{cert.pem,key.pem} for ns/sa into c. */
static int load_cred(const char *dir, const char *td, const char *ns,
		     const char *sa, struct nm_tls_cred *c, char *err,
		     size_t errlen)
{
	char cert_path[NM_PATH_MAX + 16], key_path[NM_PATH_MAX + 16];
	struct nm_spiffe_id got;
	const char *why;
	int ret;

	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	memset(c, 0, sizeof(*c));
	/* Folder names longer than the ID fields cannot match any SPIFFE ID
	 * we accept; say so rather than compare truncated names. */
	if (strlen(ns) >= NM_NAME_MAX || strlen(sa) >= NM_NAME_MAX) {
		nm_set_err(err, errlen, "%s: folder names are longer than %d bytes",
			   cert_path, NM_NAME_MAX - 1);
		return -EINVAL;
	}
	memcpy(c->id.trust_domain, td, strlen(td) + 1);
	memcpy(c->id.ns, ns, strlen(ns) + 1);
	memcpy(c->id.sa, sa, strlen(sa) + 1);

	ret = load_cert_chain(cert_path, c, err, errlen);
	if (ret)
		goto fail;
	ret = nm_pem_read_key(key_path, &c->key, err, errlen);
	if (ret)
		goto fail;
	ret = -EINVAL;
	if (!is_p256(c->key)) {
		nm_set_err(err, errlen, "%s: key is not ECDSA P-256", key_path);
		goto fail;
	}
	if (!is_p256(X509_get0_pubkey(c->cert))) {
		nm_set_err(err, errlen, "%s: certificate key is not ECDSA P-256",
			   cert_path);
		goto fail;
	}
	if (X509_check_private_key(c->cert, c->key) != 1) {
		ERR_clear_error();
		nm_set_err(err, errlen, "%s: key does not match %s", key_path,
			   cert_path);
		goto fail;
	}
	if (nm_x509_spiffe_id(c->cert, &got, &why) ||
	    nm_x509_svid_leaf_check(c->cert, &why)) {
		nm_set_err(err, errlen, "%s: %s", cert_path, why);
		goto fail;
	}
	if (!id_equal(&got, &c->id)) {
		nm_set_err(err, errlen,
			   "%s: SPIFFE ID spiffe://%s/ns/%s/sa/%s does not match its folder (expected spiffe://%s/ns/%s/sa/%s)",
			   cert_path, got.trust_domain, got.ns, got.sa, td, ns, sa);
		goto fail;
	}
	ret = check_validity(cert_path, c->cert, err, errlen);
	if (ret)
		goto fail;
	memcpy(c->file, cert_path, sizeof(c->file));
	/* An SNI exists only when "<sa>.<ns>.<td>" splits back unambiguously. */
	if (nm_spiffe_to_sni(&c->id, c->sni, sizeof(c->sni)))
		c->sni[0] = '\0';
	return 0;
fail:
	cred_release(c);
	return ret;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int skip_entry(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static int add_cred(struct nm_tls *t, const struct nm_tls_cred *c)
{
	struct nm_tls_cred *n;

	n = realloc(t->creds, (t->n_creds + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	t->creds = n;
	t->creds[t->n_creds++] = *c;
	return 0;
}

static int cred_copy(const struct nm_tls_cred *from, struct nm_tls_cred *to)
{
	*to = *from;
	to->cert = NULL;
	to->key = NULL;
	to->chain = X509_chain_up_ref(from->chain);
	if (!to->chain || !X509_up_ref(from->cert) ||
	    !EVP_PKEY_up_ref(from->key)) {
		sk_X509_pop_free(to->chain, X509_free);
		memset(to, 0, sizeof(*to));
		return -ENOMEM;
	}
	to->cert = from->cert;
	to->key = from->key;
	return 0;
}

/*
 * A reload (prev != NULL) refuses one file and goes on with the last good
 * content for it; the set as a whole still loads. The log line names the
 * file (err starts with it).
 */
static void refuse(struct nm_tls *t, const char *err, bool kept)
{
	t->refused++;
	pr_warn("msg=\"certificate file refused, %s\" err=\"%s\"",
		kept ? "keeping the last good one" : "no last good one to keep",
		err);
}

static const struct nm_tls_bundle *find_bundle(const struct nm_tls *t,
					       const char *path)
{
	for (unsigned int i = 0; t && i < t->n_bundles; i++)
		if (!strcmp(t->bundles[i].path, path))
			return &t->bundles[i];
	return NULL;
}

static int add_bundle(struct nm_tls *t, const struct nm_tls *prev,
		      const char *path, char *err, size_t errlen)
{
	const struct nm_tls_bundle *old;
	struct nm_tls_bundle *n;
	STACK_OF(X509) *sk = NULL;
	int ret;

	ret = parse_bundle(path, &sk, err, errlen);
	if (ret && prev && ret != -ENOMEM) {
		old = find_bundle(prev, path);
		refuse(t, err, old != NULL);
		if (!old)
			return 0;
		sk = X509_chain_up_ref(old->certs);
		if (!sk)
			return -ENOMEM;
		ret = 0;
	}
	if (ret)
		return ret;
	n = realloc(t->bundles, (t->n_bundles + 1) * sizeof(*n));
	if (!n) {
		sk_X509_pop_free(sk, X509_free);
		return -ENOMEM;
	}
	t->bundles = n;
	n = &t->bundles[t->n_bundles++];
	snprintf(n->path, sizeof(n->path), "%s", path);
	n->certs = sk;
	return 0;
}

/* The credential of ns/sa from dir, or on a reload the last good one. */
static int add_identity(struct nm_tls *t, const struct nm_tls *prev,
			const char *dir, const char *ns, const char *sa,
			char *err, size_t errlen)
{
	struct nm_tls_cred c;
	int idx, ret;

	ret = load_cred(dir, t->trust_domain, ns, sa, &c, err, errlen);
	if (ret && prev && ret != -ENOMEM) {
		idx = find_cred(prev, ns, sa);
		refuse(t, err, idx >= 0);
		if (idx < 0)
			return 0;
		ret = cred_copy(&prev->creds[idx], &c);
	}
	if (ret)
		return ret;
	ret = add_cred(t, &c);
	if (ret)
		cred_release(&c);
	return ret;
}

static int digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SHA256_DIGEST_LENGTH);
}

/*
 * Puts every bundle's certificates in the store (the union: one trust
 * domain, one set of anchors) and fingerprints that set, so a reload can
 * tell a new trust bundle from new leaves only.
 */
static int build_store(struct nm_tls *t, char *err, size_t errlen)
{
	unsigned char (*d)[SHA256_DIGEST_LENGTH] = NULL;
	unsigned int n = 0, total = 0, u = 0;
	char reason[256];
	EVP_MD_CTX *md = NULL;
	int ret = 0;

	for (unsigned int i = 0; i < t->n_bundles; i++)
		total += (unsigned int)sk_X509_num(t->bundles[i].certs);
	d = calloc(total ? total : 1, sizeof(*d));
	md = EVP_MD_CTX_new();
	if (!d || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned int i = 0; i < t->n_bundles; i++) {
		STACK_OF(X509) *sk = t->bundles[i].certs;

		for (int j = 0; j < sk_X509_num(sk); j++) {
			X509 *x = sk_X509_value(sk, j);
			unsigned int len = 0;

			if (!X509_STORE_add_cert(t->store, x)) {
				nm_set_err(err, errlen, "%s: cannot add certificate %d: %s",
					   t->bundles[i].path, j + 1,
					   ossl_reason(reason, sizeof(reason)));
				ret = -EINVAL;
				goto out;
			}
			if (!X509_digest(x, EVP_sha256(), d[n++], &len)) {
				ret = -ENOMEM;
				goto out;
			}
		}
	}
	qsort(d, n, sizeof(*d), digest_cmp);
	for (unsigned int i = 0; i < n; i++) {
		if (i && !memcmp(d[i], d[i - 1], sizeof(d[i])))
			continue;
		u++;
		EVP_DigestUpdate(md, d[i], sizeof(d[i]));
	}
	t->n_anchors = u;
	if (!EVP_DigestFinal_ex(md, t->anchors_digest, NULL))
		ret = -ENOMEM;
out:
	EVP_MD_CTX_free(md);
	free(d);
	return ret;
}

/* Walks <cert_dir>/<ns>/<sa>/, loading credentials and bundles. */
static int load_tree(struct nm_tls *t, const struct nm_tls *prev,
		     const char *cert_dir, char *err, size_t errlen)
{
	struct dirent **ns_list = NULL, **sa_list = NULL;
	char path[NM_PATH_MAX], dir[NM_PATH_MAX];
	int n_ns, n_sa = 0, ret = 0;

	n_ns = scandir(cert_dir, &ns_list, skip_entry, alphasort);
	if (n_ns < 0) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: %s", cert_dir, strerror(errno));
		return ret;
	}
	for (int i = 0; i < n_ns && !ret; i++) {
		const char *ns = ns_list[i]->d_name;

		snprintf(path, sizeof(path), "%s/%s", cert_dir, ns);
		if (!is_dir(path))
			continue;
		n_sa = scandir(path, &sa_list, skip_entry, alphasort);
		if (n_sa < 0) {
			ret = -errno;
			nm_set_err(err, errlen, "%s: %s", path, strerror(errno));
			break;
		}
		for (int j = 0; j < n_sa && !ret; j++) {
			const char *sa = sa_list[j]->d_name;
			char cert[NM_PATH_MAX + 16], key[NM_PATH_MAX + 16];
			char bundle[NM_PATH_MAX + 16];

			if (snprintf(dir, sizeof(dir), "%s/%s/%s", cert_dir, ns,
				     sa) >= (int)sizeof(dir)) {
				nm_set_err(err, errlen, "%s/%s/%s: path is too long",
					   cert_dir, ns, sa);
				ret = -ENAMETOOLONG;
				break;
			}
			if (!is_dir(dir))
				continue;
			snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
			snprintf(key, sizeof(key), "%s/key.pem", dir);
			snprintf(bundle, sizeof(bundle), "%s/bundle.pem", dir);
			if (exists(bundle)) {
				ret = add_bundle(t, prev, bundle, err, errlen);
				if (ret)
					break;
			}
			/* Neither file: no credential (removed, or a folder
			 * for bundles only). */
			if (!exists(cert) && !exists(key))
				continue;
			ret = add_identity(t, prev, dir, ns, sa, err, errlen);
		}
		for (int j = 0; j < n_sa; j++)
			free(sa_list[j]);
		free(sa_list);
		sa_list = NULL;
	}
	for (int i = 0; i < n_ns; i++)
		free(ns_list[i]);
	free(ns_list);
	return ret;
}

/* Warns (does not fail) when a credential does not chain to the bundle:
 * the peer will refuse it, and the log should say which file is why. */
static void check_chains(struct nm_tls *t, const char *cert_dir)
{
	for (unsigned int i = 0; i < t->n_creds; i++) {
		struct nm_tls_cred *c = &t->creds[i];
		X509_STORE_CTX *x = X509_STORE_CTX_new();

		if (!x)
			return;
		if (X509_STORE_CTX_init(x, t->store, c->cert, c->chain) == 1 &&
		    X509_verify_cert(x) != 1)
			pr_warn("msg=\"certificate does not verify against the trust bundle\" file=%s/%s/%s/cert.pem reason=\"%s\"",
				cert_dir, c->id.ns, c->id.sa,
				X509_verify_cert_error_string(
					X509_STORE_CTX_get_error(x)));
		X509_STORE_CTX_free(x);
		ERR_clear_error();
	}
}

/* --- callbacks ----------------------------------------------------------- */

/*
 * The chain as OpenSSL built it: [0] the peer's leaf, then its issuers up
 * to the trust anchor. 0 or -EPERM with *why.
 */
static int check_chain(STACK_OF(X509) *chain, const char **why)
{
	int n = chain ? sk_X509_num(chain) : 0;

	if (n < 1) {
		*why = "no verified chain";
		return -EPERM;
	}
	if (nm_x509_svid_leaf_check(sk_X509_value(chain, 0), why))
		return -EPERM;
	for (int i = 1; i < n; i++)
		if (nm_x509_svid_issuer_check(sk_X509_value(chain, i), why))
			return -EPERM;
	return 0;
}

/*
 * Called per certificate from the anchor down to the leaf; the checks run
 * once, at the leaf (depth 0), over the whole verified chain, which is
 * complete by then.
 */
static int verify_cb(int ok, X509_STORE_CTX *xctx)
{
	struct nm_spiffe_id id;
	struct nm_tls_conn *c;
	const char *why;
	SSL *ssl;

	if (!ok) {
		/* OpenSSL's own refusal; the handshake failure line only says
		 * "certificate verify failed", this says which and where. */
		pr_debug("msg=\"peer certificate refused\" reason=\"%s\" depth=%d",
			 X509_verify_cert_error_string(
				 X509_STORE_CTX_get_error(xctx)),
			 X509_STORE_CTX_get_error_depth(xctx));
		return ok;
	}
	if (X509_STORE_CTX_get_error_depth(xctx) != 0)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(xctx,
					 SSL_get_ex_data_X509_STORE_CTX_idx());
	c = ssl ? conn_of(ssl) : NULL;
	if (!c) {
		why = "connection was not made by nm_tls";
		goto refuse;
	}
	if (check_chain(X509_STORE_CTX_get0_chain(xctx), &why))
		goto refuse;
	if (nm_x509_spiffe_id(X509_STORE_CTX_get_current_cert(xctx), &id, &why))
		goto refuse;
	if (strcmp(id.trust_domain, c->trust_domain) != 0) {
		why = "peer is in another trust domain";
		goto refuse;
	}
	return 1;
refuse:
	if (c)
		c->refusal = why;
	pr_debug("msg=\"peer certificate refused\" reason=\"%s\"", why);
	X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/*
 * The whole verification of a peer's chain (cert_verify_callback): a chain
 * this nm_tls accepted before for the same role, the same DER byte for
 * byte, takes the stored verdict and issuers (mesh/vcache.h); any other
 * goes through X509_verify_cert() with verify_cb, and is stored when it
 * passes. A connection whose trust domain is not the nm_tls's own never
 * uses the cache (verify_cb compares against the connection's).
 */
static int cert_verify_cb(X509_STORE_CTX *xctx, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xctx,
					      SSL_get_ex_data_X509_STORE_CTX_idx());
	struct nm_tls_conn *c = ssl ? conn_of(ssl) : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(xctx);
	struct nm_vcache *vc = NULL;
	struct nm_vcache_key k;
	STACK_OF(X509) *chain;
	time_t now = time(NULL);
	int ok;

	(void)arg;
	if (c && c->tls && !strcmp(c->trust_domain, c->tls->trust_domain))
		vc = SSL_is_server(ssl) ? c->tls->vc_server : c->tls->vc_client;
	if (!vc || !leaf ||
	    nm_vcache_key_make(&k, leaf, X509_STORE_CTX_get0_untrusted(xctx)))
		return X509_verify_cert(xctx) > 0;
	chain = nm_vcache_lookup(vc, &k, leaf, now);
	if (chain) {
		X509_STORE_CTX_set0_verified_chain(xctx, chain);
		X509_STORE_CTX_set_error(xctx, X509_V_OK);
		nm_vcache_key_release(&k);
		return 1;
	}
	ok = X509_verify_cert(xctx) > 0;
	if (ok)
		nm_vcache_store(vc, &k, X509_STORE_CTX_get0_chain(xctx), now);
	nm_vcache_key_release(&k);
	return ok;
}

static int find_cred(const struct nm_tls *t, const char *ns, const char *sa)
{
	for (unsigned int i = 0; i < t->n_creds; i++)
		if (strcmp(t->creds[i].id.ns, ns) == 0 &&
		    strcmp(t->creds[i].id.sa, sa) == 0)
			return (int)i;
	return -1;
}

static int find_cred_by_sni(const struct nm_tls *t, const char *sni)
{
	for (unsigned int i = 0; i < t->n_creds; i++)
		if (t->creds[i].sni[0] && strcmp(t->creds[i].sni, sni) == 0)
			return (int)i;
	return -1;
}

static int present(SSL *ssl, const struct nm_tls_cred *cred,
		   struct nm_tls_conn *c)
{
	if (SSL_use_cert_and_key(ssl, cred->cert, cred->key, cred->chain, 1) != 1)
		return -ENOMEM;
	c->local = cred->id;
	c->has_local = true;
	return 0;
}

/* arg is unused: the nm_tls comes from the SSL (see "Lifetime" above). */
static int servername_cb(SSL *ssl, int *al, void *arg)
{
	struct nm_tls_conn *c = conn_of(ssl);
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	struct nm_tls *t = c ? c->tls : NULL;
	int idx = -1;

	if (!c || !t) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	if (sni)
		idx = find_cred_by_sni(t, sni);
	if (idx < 0)
		idx = c->default_cred;
	if (idx < 0) {
		pr_debug("msg=\"no certificate for the requested name\" sni=%s",
			 sni ? sni : "-");
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	if (present(ssl, &t->creds[idx], c)) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* Without this, a ClientHello lacking ALPN never reaches alpn_select_cb. */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	const unsigned char *ext;
	size_t len;

	if (!SSL_client_hello_get0_ext(ssl,
				       TLSEXT_TYPE_application_layer_protocol_negotiation,
				       &ext, &len)) {
		*al = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out,
			  unsigned char *outlen, const unsigned char *in,
			  unsigned int inlen, void *arg)
{
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, alpn_wire, ALPN_WIRE_LEN, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	/* Runs after the PSK was accepted: a resumed connection keeps using
	 * the session it came with, so the cache is not filled with one new
	 * session per connection. */
	if (SSL_session_reused(ssl))
		SSL_set_num_tickets(ssl, 0);
	return SSL_TLSEXT_ERR_OK;
}

static struct nm_tls_session *find_session(struct nm_tls *t, const char *key)
{
	for (unsigned int i = 0; i < t->n_sessions; i++)
		if (strcmp(t->sessions[i].key, key) == 0)
			return &t->sessions[i];
	return NULL;
}

/*
 * Keeps a copy of the newest session per cache key. A copy, not the
 * session itself: that one stays attached to the SSL, and OpenSSL marks it
 * not resumable when the SSL is freed without a close_notify sent (any
 * reset relay connection), which would spoil the cache for everyone.
 * Returns 0: OpenSSL keeps ownership of sess.
 */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct nm_tls_conn *c = conn_of(ssl);
	struct nm_tls *t = c ? c->tls : NULL;
	struct nm_tls_session *s;
	SSL_SESSION *copy;

	if (!t || !c || !t->resumption || !c->cache_key[0])
		return 0;
	copy = SSL_SESSION_dup(sess);
	if (!copy)
		return 0;
	s = find_session(t, c->cache_key);
	if (!s && t->n_sessions < NM_TLS_SESSIONS_MAX) {
		s = realloc(t->sessions, (t->n_sessions + 1) * sizeof(*s));
		if (!s) {
			SSL_SESSION_free(copy);
			return 0;
		}
		t->sessions = s;
		s = &t->sessions[t->n_sessions++];
		memset(s, 0, sizeof(*s));
		snprintf(s->key, sizeof(s->key), "%s", c->cache_key);
	} else if (!s) {
		/* Full: replace the slot stored longest ago. */
		s = &t->sessions[0];
		for (unsigned int i = 1; i < t->n_sessions; i++)
			if (t->sessions[i].stamp < s->stamp)
				s = &t->sessions[i];
		snprintf(s->key, sizeof(s->key), "%s", c->cache_key);
	}
	SSL_SESSION_free(s->sess);
	s->sess = copy;
	s->stamp = ++t->clock;
	return 0;
}

static void flush_sessions(struct nm_tls *t)
{
	for (unsigned int i = 0; i < t->n_sessions; i++)
		SSL_SESSION_free(t->sessions[i].sess);
	free(t->sessions);
	t->sessions = NULL;
	t->n_sessions = 0;
}

/* --- contexts ------------------------------------------------------------ */

static SSL_CTX *new_ctx(const struct nm_tls *t, bool server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
					  : TLS_client_method());

	if (!ctx)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, NM_TLS_CIPHERSUITES) ||
	    !SSL_CTX_set1_groups_list(ctx, NM_TLS_GROUPS) ||
	    !X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx),
					 X509_V_FLAG_X509_STRICT))
		goto fail;
	SSL_CTX_set1_cert_store(ctx, t->store);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify_depth(ctx, NM_TLS_VERIFY_DEPTH);
	SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, NULL);
	if (server) {
		SSL_CTX_set_verify(ctx,
				   SSL_VERIFY_PEER |
					   SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				   verify_cb);
		SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
		SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
		/* Parsed sessions in a server-side cache, tickets that carry
		 * only their ID (see the file comment). */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
						    SSL_SESS_CACHE_NO_AUTO_CLEAR);
		SSL_CTX_sess_set_cache_size(ctx, NM_TLS_SERVER_SESSIONS);
		SSL_CTX_set_timeout(ctx, NM_TLS_SESSION_TIMEOUT_S);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_ANTI_REPLAY);
		if (!SSL_CTX_set_session_id_context(ctx,
				(const unsigned char *)NM_TLS_SID_CTX,
				sizeof(NM_TLS_SID_CTX) - 1) ||
		    !SSL_CTX_set_num_tickets(ctx, 1))
			goto fail;
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
		/* set_alpn_protos returns 0 on success. */
		if (SSL_CTX_set_alpn_protos(ctx, alpn_wire, ALPN_WIRE_LEN))
			goto fail;
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
						    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int nm_tls_create(const char *cert_dir, const char *trust_domain,
		  struct nm_tls **out, char *err, size_t errlen)
{
	return nm_tls_reload(cert_dir, trust_domain, NULL, out, err, errlen);
}

int nm_tls_reload(const char *cert_dir, const char *trust_domain,
		  const struct nm_tls *prev, struct nm_tls **out, char *err,
		  size_t errlen)
{
	struct nm_spiffe_id probe = { .ns = "x", .sa = "x" };
	char path[NM_PATH_MAX], reason[256];
	struct nm_tls *t;
	int ret;

	pthread_once(&conn_idx_once, conn_idx_init);
	if (conn_idx < 0) {
		nm_set_err(err, errlen, "OpenSSL: cannot allocate ex_data index");
		return -ENOMEM;
	}
	snprintf(probe.trust_domain, sizeof(probe.trust_domain), "%s",
		 trust_domain);
	if (strlen(trust_domain) >= NM_NAME_MAX ||
	    nm_spiffe_format(&probe, path, sizeof(path))) {
		nm_set_err(err, errlen, "trust domain \"%s\" is not valid",
			   trust_domain);
		return -EINVAL;
	}
	/* The last good set of another trust domain has nothing to offer. */
	if (prev && strcmp(prev->trust_domain, trust_domain))
		prev = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->trust_domain, sizeof(t->trust_domain), "%s", trust_domain);
	atomic_init(&t->refs, 1);
	t->generation = prev ? prev->generation + 1 : 1;
	t->resumption = true;
	t->store = X509_STORE_new();
	if (!t->store ||
	    !X509_STORE_set_flags(t->store, X509_V_FLAG_X509_STRICT)) {
		ret = -ENOMEM;
		goto fail;
	}

	if (snprintf(path, sizeof(path), "%s/bundle.pem", cert_dir) >=
	    (int)sizeof(path)) {
		nm_set_err(err, errlen, "%s: path is too long", cert_dir);
		ret = -ENAMETOOLONG;
		goto fail;
	}
	if (!is_dir(cert_dir)) {
		ret = exists(cert_dir) ? -ENOTDIR : -ENOENT;
		nm_set_err(err, errlen, "%s: %s", cert_dir, strerror(-ret));
		goto fail;
	}
	if (exists(path)) {
		ret = add_bundle(t, prev, path, err, errlen);
		if (ret)
			goto fail;
	}
	ret = load_tree(t, prev, cert_dir, err, errlen);
	if (ret)
		goto fail;
	if (t->n_bundles == 0) {
		nm_set_err(err, errlen,
			   "%s: no trust bundle (neither bundle.pem nor <ns>/<sa>/bundle.pem)",
			   cert_dir);
		ret = -ENOENT;
		goto fail;
	}
	ret = build_store(t, err, errlen);
	if (ret)
		goto fail;
	check_chains(t, cert_dir);

	t->client_ctx = new_ctx(t, false);
	t->server_ctx = new_ctx(t, true);
	t->vc_client = nm_vcache_new();
	t->vc_server = nm_vcache_new();
	if (!t->client_ctx || !t->server_ctx || !t->vc_client || !t->vc_server) {
		nm_set_err(err, errlen, "OpenSSL: cannot set up TLS 1.3 contexts: %s",
			   ossl_reason(reason, sizeof(reason)));
		ret = -ENOMEM;
		goto fail;
	}
	pr_debug("msg=\"TLS credentials loaded\" dir=%s identities=%u anchors=%u generation=%u refused=%u",
		 cert_dir, t->n_creds, t->n_anchors, t->generation, t->refused);
	*out = t;
	return 0;
fail:
	nm_tls_free(t);
	return ret;
}

struct nm_tls *nm_tls_ref(struct nm_tls *t)
{
	if (t)
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void nm_tls_unref(struct nm_tls *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1,
					   memory_order_acq_rel) == 1)
		tls_destroy(t);
}

void nm_tls_free(struct nm_tls *t)
{
	nm_tls_unref(t);
}

static void tls_destroy(struct nm_tls *t)
{
	flush_sessions(t);
	SSL_CTX_free(t->client_ctx);
	SSL_CTX_free(t->server_ctx);
	nm_vcache_free(t->vc_client);
	nm_vcache_free(t->vc_server);
	X509_STORE_free(t->store);
	for (unsigned int i = 0; i < t->n_creds; i++)
		cred_release(&t->creds[i]);
	free(t->creds);
	for (unsigned int i = 0; i < t->n_bundles; i++)
		sk_X509_pop_free(t->bundles[i].certs, X509_free);
	free(t->bundles);
	free(t);
}

const char *nm_tls_trust_domain(const struct nm_tls *t)
{
	return t->trust_domain;
}

bool nm_tls_has_identity(const struct nm_tls *t, const char *ns,
			 const char *sa)
{
	return find_cred(t, ns, sa) >= 0;
}

unsigned int nm_tls_identity_count(const struct nm_tls *t)
{
	return t->n_creds;
}

/* --- what is loaded ---------------------------------------------------- */

unsigned int nm_tls_generation(const struct nm_tls *t)
{
	return t->generation;
}

unsigned int nm_tls_anchor_count(const struct nm_tls *t)
{
	return t->n_anchors;
}

unsigned int nm_tls_refused_count(const struct nm_tls *t)
{
	return t->refused;
}

void nm_tls_verify_cache_stats(const struct nm_tls *t, int server,
			       struct nm_vcache_stats *out)
{
	nm_vcache_get_stats(server ? t->vc_server : t->vc_client, out);
}

void nm_tls_carry_stats(struct nm_tls *t, const struct nm_tls *old)
{
	if (!t || !old || t == old)
		return;
	nm_vcache_carry_stats(t->vc_client, old->vc_client);
	nm_vcache_carry_stats(t->vc_server, old->vc_server);
}

/* The serial as `openssl x509 -serial` prints it (upper-case hex). */
static void format_serial(X509 *x, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;

	buf[0] = '\0';
	if (b && i2a_ASN1_INTEGER(b, X509_get0_serialNumber(x)) > 0)
		n = BIO_read(b, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

int nm_tls_cert_info(const struct nm_tls *t, unsigned int i,
		     struct nm_tls_cert_info *out)
{
	const struct nm_tls_cred *c;

	if (!t || i >= t->n_creds)
		return -ENOENT;
	c = &t->creds[i];
	memset(out, 0, sizeof(*out));
	out->id = c->id;
	snprintf(out->file, sizeof(out->file), "%s", c->file);
	format_serial(c->cert, out->serial, sizeof(out->serial));
	out->not_before = nm_x509_time_secs(X509_get0_notBefore(c->cert));
	out->not_after = nm_x509_time_secs(X509_get0_notAfter(c->cert));
	return 0;
}

static bool same_chain(STACK_OF(X509) *a, STACK_OF(X509) *b)
{
	int n = sk_X509_num(a);

	if (n != sk_X509_num(b))
		return false;
	for (int i = 0; i < n; i++)
		if (X509_cmp(sk_X509_value(a, i), sk_X509_value(b, i)))
			return false;
	return true;
}

bool nm_tls_same_anchors(const struct nm_tls *a, const struct nm_tls *b)
{
	return a && b && !strcmp(a->trust_domain, b->trust_domain) &&
	       a->n_anchors == b->n_anchors &&
	       !memcmp(a->anchors_digest, b->anchors_digest,
		       sizeof(a->anchors_digest));
}

bool nm_tls_same(const struct nm_tls *a, const struct nm_tls *b)
{
	if (!nm_tls_same_anchors(a, b) || a->n_creds != b->n_creds)
		return false;
	for (unsigned int i = 0; i < a->n_creds; i++) {
		const struct nm_tls_cred *x = &a->creds[i], *y = &b->creds[i];

		if (!id_equal(&x->id, &y->id) || X509_cmp(x->cert, y->cert) ||
		    !same_chain(x->chain, y->chain) ||
		    EVP_PKEY_eq(x->key, y->key) != 1)
			return false;
	}
	return true;
}

/*
 * A copy: an SSL_SESSION sits in one cache's linked list through its own
 * prev/next pointers, so adding the same object to a second SSL_CTX
 * corrupts both lists (SSL_CTX_free of the old context then loops in
 * SSL_CTX_flush_sessions; check_certdir's test_tickets_across_swaps).
 */
static void add_session(SSL_SESSION *sess, SSL_CTX *to)
{
	SSL_SESSION *copy = SSL_SESSION_dup(sess);

	if (!copy)
		return;
	SSL_CTX_add_session(to, copy);
	SSL_SESSION_free(copy); /* the cache holds its own reference */
}
IMPLEMENT_LHASH_DOALL_ARG(SSL_SESSION, SSL_CTX);

/*
 * Only the server's sessions (its cache of parsed sessions, and the ticket
 * keys for any stateless ticket): with the same anchors (and the same
 * verification rules, which are code) a session made under old says
 * nothing old would not; with other anchors, old sessions must stop
 * resuming, which a fresh SSL_CTX's empty cache and random keys already
 * ensure. The client's session cache starts empty in every nm_tls, so a
 * client presents its new certificate on its next handshake.
 */
void nm_tls_inherit(struct nm_tls *t, const struct nm_tls *old)
{
	unsigned char keys[80];

	if (!t || !old || !nm_tls_same_anchors(t, old))
		return;
	if (SSL_CTX_get_tlsext_ticket_keys(old->server_ctx, keys,
					   sizeof(keys)) == 1)
		SSL_CTX_set_tlsext_ticket_keys(t->server_ctx, keys, sizeof(keys));
	OPENSSL_cleanse(keys, sizeof(keys));
	/* Single-threaded like the rest of nm_tls (see the file comment):
	 * nothing adds to old's cache while this walks it. */
	lh_SSL_SESSION_doall_SSL_CTX(SSL_CTX_sessions(old->server_ctx),
				     add_session, t->server_ctx);
	ERR_clear_error();
}

void nm_tls_set_resumption(struct nm_tls *t, bool on)
{
	t->resumption = on;
	SSL_CTX_set_num_tickets(t->server_ctx, on ? 1 : 0);
	/* No tickets issued is not enough: a client may still present one
	 * from before, so the server cache is emptied and turned off too. */
	SSL_CTX_set_session_cache_mode(t->server_ctx,
				       on ? SSL_SESS_CACHE_SERVER |
						    SSL_SESS_CACHE_NO_AUTO_CLEAR
					  : SSL_SESS_CACHE_OFF);
	if (!on) {
		SSL_CTX_flush_sessions(t->server_ctx, 0);
		flush_sessions(t);
	}
}

unsigned long nm_tls_server_sessions(const struct nm_tls *t)
{
	return (unsigned long)SSL_CTX_sess_number(t->server_ctx);
}

/* --- connections --------------------------------------------------------- */

static int new_ssl(struct nm_tls *t, SSL_CTX *ctx, SSL **ssl_out,
		   struct nm_tls_conn **conn_out)
{
	struct nm_tls_conn *c;
	SSL *ssl;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	ssl = SSL_new(ctx);
	if (!ssl) {
		free(c);
		return -ENOMEM;
	}
	if (!SSL_set_ex_data(ssl, conn_idx, c)) {
		free(c);
		SSL_free(ssl);
		return -ENOMEM;
	}
	/* From here on SSL_free() frees c and drops this reference. */
	c->tls = nm_tls_ref(t);
	snprintf(c->trust_domain, sizeof(c->trust_domain), "%s",
		 t->trust_domain);
	c->default_cred = -1;
	*ssl_out = ssl;
	*conn_out = c;
	return 0;
}

/*
 * The last step of nm_tls_client_new() and nm_tls_server_new(), given how
 * the set-up went (ret): attaches fd when >= 0 and the role, and hands ssl
 * out, or frees it.
 */
static int finish_ssl(SSL *ssl, int ret, int fd, bool server, SSL **out)
{
	if (!ret && fd >= 0 && !SSL_set_fd(ssl, fd))
		ret = -ENOMEM;
	if (ret) {
		ERR_clear_error();
		SSL_free(ssl);
		return ret;
	}
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	*out = ssl;
	return 0;
}

/* SNI, expectation and a cached session for a client that knows its peer. */
static int expect_peer(struct nm_tls *t, SSL *ssl, struct nm_tls_conn *c,
		       const char *ns, const char *sa,
		       const struct nm_spiffe_id *peer, const char *node)
{
	char sni[NM_TLS_SNI_MAX], uri[NM_SPIFFE_MAX];
	struct nm_tls_session *s;
	int ret;

	/* -EINVAL when the ID has no SNI form (a dot in ns or sa). */
	ret = nm_spiffe_to_sni(peer, sni, sizeof(sni));
	if (!ret)
		ret = nm_spiffe_format(peer, uri, sizeof(uri));
	if (ret)
		return ret;
	if (!SSL_set_tlsext_host_name(ssl, sni))
		return -ENOMEM;
	c->expected = *peer;
	c->has_expected = true;
	if (node && strlen(node) >= NM_TLS_NODE_KEY_MAX)
		return -ENAMETOOLONG;
	snprintf(c->cache_key, sizeof(c->cache_key), "%s/%s %s %s", ns, sa,
		 node && node[0] ? node : "-", uri);
	s = t->resumption ? find_session(t, c->cache_key) : NULL;
	if (s && s->sess && SSL_SESSION_is_resumable(s->sess)) {
		/* A copy again: an OpenSSL TLS 1.3 client marks the session
		 * it resumed with as used up, and the server issues no new
		 * ticket on a resumed connection, so the cached one must stay
		 * as it is. Reusing a ticket is safe here: no early data is
		 * sent or accepted, and the SNI names the peer anyway. */
		SSL_SESSION *copy = SSL_SESSION_dup(s->sess);
		int ok = copy && SSL_set_session(ssl, copy);

		SSL_SESSION_free(copy);
		if (!ok)
			return -ENOMEM;
	}
	return 0;
}

int nm_tls_client_new(struct nm_tls *t, const char *ns, const char *sa,
		      const struct nm_spiffe_id *expected_peer,
		      const char *peer_node, int fd, SSL **out)
{
	struct nm_tls_conn *c;
	SSL *ssl = NULL;
	int idx, ret;

	idx = find_cred(t, ns, sa);
	if (idx < 0)
		return -ENOENT;
	ret = new_ssl(t, t->client_ctx, &ssl, &c);
	if (ret)
		return ret;
	ret = present(ssl, &t->creds[idx], c);
	if (!ret && expected_peer)
		ret = expect_peer(t, ssl, c, ns, sa, expected_peer, peer_node);
	return finish_ssl(ssl, ret, fd, false, out);
}

int nm_tls_server_new(struct nm_tls *t, const char *default_ns,
		      const char *default_sa, int fd, SSL **out)
{
	struct nm_tls_conn *c;
	SSL *ssl = NULL;
	int idx = -1, ret;

	if (default_ns && default_sa) {
		idx = find_cred(t, default_ns, default_sa);
		if (idx < 0)
			return -ENOENT;
	}
	ret = new_ssl(t, t->server_ctx, &ssl, &c);
	if (ret)
		return ret;
	c->default_cred = idx;
	/* The servername callback picks the certificate during the handshake;
	 * loading the default here as well keeps a certificate in place should
	 * the callback not run. */
	if (idx >= 0)
		ret = present(ssl, &t->creds[idx], c);
	return finish_ssl(ssl, ret, fd, true, out);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int nm_tls_handshake_step(SSL *ssl, uint64_t *cpu_ns)
{
	uint64_t t0 = thread_cpu_ns(), t1;
	int ret;

	ERR_clear_error();
	ret = SSL_do_handshake(ssl);
	t1 = thread_cpu_ns();
	*cpu_ns = t0 && t1 > t0 ? t1 - t0 : 0;
	return ret;
}

int nm_tls_check_peer(SSL *ssl, const struct nm_spiffe_id *expected,
		      struct nm_spiffe_id *peer, const char **why)
{
	const struct nm_tls_conn *c = conn_of(ssl);
	const unsigned char *alpn = NULL;
	struct nm_spiffe_id id;
	const char *dummy;
	unsigned int alpn_len = 0;
	X509 *cert;
	long vr;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!c) {
		*why = "connection was not made by nm_tls";
		return -EPERM;
	}
	if (!SSL_is_init_finished(ssl)) {
		*why = "handshake has not finished";
		return -EPERM;
	}
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	if (alpn_len != ALPN_WIRE_LEN - 1 ||
	    memcmp(alpn, NM_NMTP_ALPN, alpn_len) != 0) {
		*why = "ALPN nmtp/1 was not negotiated";
		return -EPERM;
	}
	cert = SSL_get0_peer_certificate(ssl);
	if (!cert) {
		*why = "peer sent no certificate";
		return -EPERM;
	}
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		*why = vr == X509_V_ERR_APPLICATION_VERIFICATION && c->refusal
			       ? c->refusal
			       : X509_verify_cert_error_string(vr);
		return -EPERM;
	}
	/* Again here: a resumed session skips the verify callback, and a
	 * leaf that can issue must never pass, whatever let it in. */
	if (nm_x509_svid_leaf_check(cert, why))
		return -EPERM;
	if (!SSL_session_reused(ssl) &&
	    check_chain(SSL_get0_verified_chain(ssl), why))
		return -EPERM;
	/* A resumed session is not re-verified: its certificate must still
	 * be valid now, not only when the session was made. */
	if (SSL_session_reused(ssl) &&
	    X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
		*why = "resumed session's peer certificate has expired";
		return -EPERM;
	}
	if (nm_x509_spiffe_id(cert, &id, why))
		return -EPERM;
	if (strcmp(id.trust_domain, c->trust_domain) != 0) {
		*why = "peer is in another trust domain";
		return -EPERM;
	}
	if (!expected && c->has_expected)
		expected = &c->expected;
	if (expected && !id_equal(&id, expected)) {
		*why = "peer identity is not the expected one";
		return -EPERM;
	}
	if (peer)
		*peer = id;
	return 0;
}

const char *nm_tls_refusal(const SSL *ssl)
{
	const struct nm_tls_conn *c = conn_of(ssl);

	return c ? c->refusal : NULL;
}

int nm_tls_local_identity(SSL *ssl, struct nm_spiffe_id *out)
{
	const struct nm_tls_conn *c = conn_of(ssl);

	if (!c || !c->has_local)
		return -ENOENT;
	*out = c->local;
	return 0;
}

/* For telemetry (/config_dump, certificate expiry gauges): credential i's
 * identity and validity (Unix seconds). 0, or -ENOENT past the last. */
int nm_tls_cred_info(const struct nm_tls *t, unsigned int i,
		     struct nm_spiffe_id *id, int64_t *not_before,
		     int64_t *not_after)
{
	struct tm tm;

	if (!t || i >= t->n_creds)
		return -ENOENT;
	*id = t->creds[i].id;
	*not_before = *not_after = 0;
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(X509_get0_notBefore(t->creds[i].cert), &tm))
		*not_before = (int64_t)timegm(&tm);
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(t->creds[i].cert), &tm))
		*not_after = (int64_t)timegm(&tm);
	return 0;
}
