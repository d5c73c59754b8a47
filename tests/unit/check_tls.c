// SPDX-License-Identifier: Apache-2.0
/*
 * check_tls.c - TLS 1.3 contexts (agent/tls.c) and the development CA
 * (agent/ca.c), with real handshakes: both ends are non-blocking SSLs on a
 * socketpair, driven in turn until each finishes or fails.
 *
 * Credentials come from agent/ca.c into a mkdtemp folder; certificates
 * nodemesh would never issue (two URI SANs, foreign trust domain, P-384) are
 * crafted here with the OpenSSL API.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <linux/tls.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tools/devca.h"
#include "lib/spiffe.h"
#include "nm_check.h"
#include "mesh/ecmeth.h"
#include "mesh/vcache.h"
#include "mesh/ktls.h"
#include "mesh/records.h"
#include "mesh/relay.h"
#include "mesh/tls.h"
#include "mesh/tlsrec.h"
#include "mesh/tunnel.h"

#define TD "cluster.local"

static char base[256];
static char ca1_dir[300], ca2_dir[300];
static char n1_dir[300];   /* default/client, CA 1 */
static char n2_dir[300];   /* default/server + default/other, CA 1 */
static char bad_dir[300];  /* default/client from CA 2, trusts CA 1 */
static char bad2_dir[300]; /* default/server from CA 2, trusts CA 1 */
static struct nm_ca ca1;   /* CA 1, loaded once by setup_all() */

static const struct nm_spiffe_id id_client = { TD, "default", "client" };
static const struct nm_spiffe_id id_server = { TD, "default", "server" };
static const struct nm_spiffe_id id_other = { TD, "default", "other" };

/* --- fixture ---------------------------------------------------------------- */

static void path_join(char *buf, size_t len, const char *a, const char *b)
{
	ck_assert_int_lt(snprintf(buf, len, "%s/%s", a, b), (int)len);
}

static void copy_file(const char *src, const char *dst, mode_t mode)
{
	char buf[8192];
	int in = open(src, O_RDONLY), out;
	ssize_t n;

	ck_assert_msg(in >= 0, "open %s", src);
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_msg(out >= 0, "open %s", dst);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	fchmod(out, mode);
	close(in);
	close(out);
}

static void issue(const char *ca_dir, const char *out, const char *ns,
		  const char *sa)
{
	char err[512];
	struct nm_ca ca;

	ck_assert_msg(nm_ca_load(ca_dir, &ca, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(nm_ca_issue(&ca, out, ns, sa, 1, NULL, 0, err,
				  sizeof(err)) == 0, "%s", err);
	nm_ca_release(&ca);
}

/* Points dir/<ns>/<sa>/bundle.pem at CA 1 instead of its issuer. */
static void trust_ca1(const char *dir, const char *ns, const char *sa)
{
	char src[512], dst[512];

	path_join(src, sizeof(src), ca1_dir, "ca.crt");
	snprintf(dst, sizeof(dst), "%s/%s/%s/bundle.pem", dir, ns, sa);
	copy_file(src, dst, 0644);
}

static pid_t owner; /* the process that made base; forked tests must not remove it */

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	return remove(path);
}

static void teardown_all(void)
{
	if (base[0] && getpid() == owner) {
		nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		base[0] = '\0';
	}
}

static void setup_all(void)
{
	char err[512];

	if (base[0])
		return; /* one tree serves every test case */
	strcpy(base, "/tmp/nm-check-tls.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	/* Removed at exit too, so a run limited with CK_RUN_CASE or cut
	 * short by a failing fixture leaves nothing behind. */
	owner = getpid();
	atexit(teardown_all);
	path_join(ca1_dir, sizeof(ca1_dir), base, "ca1");
	path_join(ca2_dir, sizeof(ca2_dir), base, "ca2");
	path_join(n1_dir, sizeof(n1_dir), base, "n1");
	path_join(n2_dir, sizeof(n2_dir), base, "n2");
	path_join(bad_dir, sizeof(bad_dir), base, "bad");
	path_join(bad2_dir, sizeof(bad2_dir), base, "bad2");
	ck_assert_msg(nm_ca_init(ca1_dir, TD, 2, false, NULL, 0, err,
				 sizeof(err)) == 0, "%s", err);
	ck_assert_msg(nm_ca_init(ca2_dir, TD, 2, false, NULL, 0, err,
				 sizeof(err)) == 0, "%s", err);
	issue(ca1_dir, n1_dir, "default", "client");
	issue(ca1_dir, n2_dir, "default", "server");
	issue(ca1_dir, n2_dir, "default", "other");
	issue(ca2_dir, bad_dir, "default", "client");
	trust_ca1(bad_dir, "default", "client");
	issue(ca2_dir, bad2_dir, "default", "server");
	trust_ca1(bad2_dir, "default", "server");
	ck_assert_msg(nm_ca_load(ca1_dir, &ca1, err, sizeof(err)) == 0, "%s", err);
}

static struct nm_tls *load(const char *dir)
{
	struct nm_tls *t = NULL;
	char err[512] = "";

	ck_assert_msg(nm_tls_create(dir, TD, &t, err, sizeof(err)) == 0, "%s",
		      err);
	return t;
}

/* --- handshake driver ------------------------------------------------------- */

struct pair {
	int fd[2];
	SSL *c, *s;
	int c_st, s_st; /* 0 pending, 1 done, -1 failed */
};

static void pair_open(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
				    p->fd), 0);
}

static void pair_close(struct pair *p)
{
	SSL_free(p->c);
	SSL_free(p->s);
	close(p->fd[0]);
	close(p->fd[1]);
	ERR_clear_error();
}

static void step(SSL *ssl, int *st)
{
	int r = SSL_do_handshake(ssl), e;

	if (r == 1) {
		*st = 1;
		return;
	}
	e = SSL_get_error(ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		*st = -1;
}

static void drive(struct pair *p)
{
	for (int i = 0; i < 200 && (p->c_st == 0 || p->s_st == 0); i++) {
		if (p->c_st == 0)
			step(p->c, &p->c_st);
		if (p->s_st == 0)
			step(p->s, &p->s_st);
	}
}

/* Sends msg from one end and reads it at the other (pumping both). */
static bool transfer(SSL *from, SSL *to, const char *msg)
{
	size_t len = strlen(msg), got = 0, sent = 0;
	char buf[256];

	for (int i = 0; i < 200 && got < len; i++) {
		if (sent < len) {
			int w = SSL_write(from, msg + sent, (int)(len - sent));

			if (w > 0)
				sent += (size_t)w;
			else if (SSL_get_error(from, w) != SSL_ERROR_WANT_READ &&
				 SSL_get_error(from, w) != SSL_ERROR_WANT_WRITE)
				return false;
		}
		int r = SSL_read(to, buf + got, (int)(sizeof(buf) - got));

		if (r > 0)
			got += (size_t)r;
		else if (SSL_get_error(to, r) != SSL_ERROR_WANT_READ)
			return false;
	}
	return got == len && memcmp(buf, msg, len) == 0;
}

/* After the server refused, the client's next read sees the alert. */
static bool client_read_fails(SSL *c)
{
	char buf[64];

	for (int i = 0; i < 50; i++) {
		int r = SSL_read(c, buf, sizeof(buf));

		if (r > 0)
			return false;
		if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
			return true;
	}
	return false;
}

/* A client connection to node (the session-cache key's destination). */
static void connect_pair_to(struct nm_tls *tc, struct nm_tls *ts,
			    const struct nm_spiffe_id *expect, const char *node,
			    struct pair *p)
{
	pair_open(p);
	ck_assert_int_eq(nm_tls_client_new(tc, "default", "client", expect,
					   node, p->fd[0], &p->c), 0);
	ck_assert_int_eq(nm_tls_server_new(ts, NULL, NULL, p->fd[1], &p->s), 0);
	drive(p);
}

static void connect_pair(struct nm_tls *tc, struct nm_tls *ts,
			 const struct nm_spiffe_id *expect, const char *def_ns,
			 const char *def_sa, struct pair *p)
{
	pair_open(p);
	ck_assert_int_eq(nm_tls_client_new(tc, "default", "client", expect,
					   "node-a", p->fd[0], &p->c), 0);
	ck_assert_int_eq(nm_tls_server_new(ts, def_ns, def_sa, p->fd[1], &p->s),
			 0);
	drive(p);
}

static void assert_id_eq(const struct nm_spiffe_id *a,
			 const struct nm_spiffe_id *b)
{
	ck_assert_str_eq(a->trust_domain, b->trust_domain);
	ck_assert_str_eq(a->ns, b->ns);
	ck_assert_str_eq(a->sa, b->sa);
}

/* A bare OpenSSL TLS 1.3 client, for peers nm_tls would never build. */
static SSL *raw_client(int fd, X509 *cert, EVP_PKEY *key, const char *alpn)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	ck_assert_ptr_nonnull(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (alpn) {
		unsigned char wire[32];
		size_t n = strlen(alpn);

		wire[0] = (unsigned char)n;
		memcpy(wire + 1, alpn, n);
		ck_assert_int_eq(SSL_CTX_set_alpn_protos(ctx, wire,
							 (unsigned int)n + 1), 0);
	}
	if (cert) {
		ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cert), 1);
		ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, key), 1);
	}
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL keeps its reference */
	ck_assert_ptr_nonnull(ssl);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, "server.default." TD);
	SSL_set_connect_state(ssl);
	return ssl;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	ck_assert_ptr_nonnull(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(x);
	return x;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	ck_assert_ptr_nonnull(f);
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(k);
	return k;
}

/* Set by the "handshake-builtin" case's fixture (mesh/ecmeth.h). */
static bool ecmeth_on;

/*
 * Test set-up that is a CA's job, not the agent's, runs with the EC engine
 * off: X509_sign() and EVP_PKEY_fromdata() cannot take 3.0's built-in EC
 * method with provider keys. The agent's side of every handshake still
 * runs under the engine.
 */
static void ecmeth_pause(void)
{
	if (ecmeth_on)
		nm_ecmeth_teardown();
}

static void ecmeth_resume(void)
{
	struct nm_path_state st = { 0 };

	if (ecmeth_on)
		ck_assert_int_eq(nm_ecmeth_setup(false, &st), 0);
}

/* A certificate from spec, issued by CA 1 unless spec names an issuer. */
static X509 *mint(struct nm_ca_craft sp)
{
	X509 *x = NULL;
	int ret;

	if (!sp.issuer) {
		sp.issuer = ca1.cert;
		sp.issuer_key = ca1.key;
	}
	ecmeth_pause();
	ret = nm_ca_craft(&sp, &x);
	ecmeth_resume();
	ck_assert_int_eq(ret, 0);
	return x;
}

/* A well-formed client leaf signed by CA 1 with these URI and DNS SANs. */
static X509 *craft_leaf(EVP_PKEY *key, const char *uri1, const char *uri2,
			const char *dns)
{
	return mint((struct nm_ca_craft){ .key = key, .uri = { uri1, uri2 },
					  .dns = { dns } });
}

/* Runs a raw client against t's server side; true when the server refused. */
static bool server_refuses(struct nm_tls *t, X509 *cert, EVP_PKEY *key,
			   const char *alpn, long *verify_result)
{
	struct pair p;
	bool refused;

	pair_open(&p);
	p.c = raw_client(p.fd[0], cert, key, alpn);
	ck_assert_int_eq(nm_tls_server_new(t, NULL, NULL, p.fd[1], &p.s), 0);
	drive(&p);
	refused = p.s_st == -1 && (p.c_st == -1 || client_read_fails(p.c));
	if (verify_result)
		*verify_result = SSL_get_verify_result(p.s);
	pair_close(&p);
	return refused;
}

/* --- tests: handshakes ------------------------------------------------------ */

START_TEST(test_create_loads_tree)
{
	struct nm_tls *t = load(n2_dir);

	ck_assert_uint_eq(nm_tls_identity_count(t), 2);
	ck_assert(nm_tls_has_identity(t, "default", "server"));
	ck_assert(nm_tls_has_identity(t, "default", "other"));
	ck_assert(!nm_tls_has_identity(t, "default", "client"));
	ck_assert_str_eq(nm_tls_trust_domain(t), TD);
	nm_tls_free(t);
}
END_TEST

START_TEST(test_handshake_ids_both_ways)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_spiffe_id peer, local;
	const unsigned char *alpn;
	unsigned int alpn_len;
	const char *why = NULL;
	struct pair p;

	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_int_eq(SSL_version(p.c), TLS1_3_VERSION);
	SSL_get0_alpn_selected(p.s, &alpn, &alpn_len);
	ck_assert_uint_eq(alpn_len, 6);
	ck_assert_mem_eq(alpn, "nmtp/1", 6);
	ck_assert_str_eq(SSL_get_servername(p.s, TLSEXT_NAMETYPE_host_name),
			 "server.default." TD);

	/* The server saw the client's exact ID, and the reverse. */
	ck_assert_msg(nm_tls_check_peer(p.s, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_client);
	ck_assert_msg(nm_tls_check_peer(p.c, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_server);
	ck_assert_int_eq(nm_tls_local_identity(p.s, &local), 0);
	assert_id_eq(&local, &id_server);
	ck_assert_int_eq(nm_tls_local_identity(p.c, &local), 0);
	assert_id_eq(&local, &id_client);
	/* An explicit expectation overrides the remembered one. */
	ck_assert_int_eq(nm_tls_check_peer(p.s, &id_client, NULL, &why), 0);
	ck_assert_int_eq(nm_tls_check_peer(p.s, &id_other, NULL, &why), -EPERM);
	ck_assert_str_eq(why, "peer identity is not the expected one");

	ck_assert(transfer(p.s, p.c, "NMT1"));
	ck_assert(transfer(p.c, p.s, "hello over nmtp"));
	pair_close(&p);

	/* SNI picks the other certificate the node holds. */
	connect_pair(t1, t2, &id_other, "default", "server", &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_int_eq(nm_tls_local_identity(p.s, &local), 0);
	assert_id_eq(&local, &id_other);
	ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, &peer, &why), 0);
	assert_id_eq(&peer, &id_other);
	pair_close(&p);

	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_default_identity_without_sni)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_spiffe_id peer, local;
	const char *why = NULL;
	struct pair p;

	connect_pair(t1, t2, NULL, "default", "other", &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_ptr_null(SSL_get_servername(p.s, TLSEXT_NAMETYPE_host_name));
	ck_assert_int_eq(nm_tls_local_identity(p.s, &local), 0);
	assert_id_eq(&local, &id_other);
	/* No expectation: any ID of the trust domain passes. */
	ck_assert_msg(nm_tls_check_peer(p.c, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_other);
	pair_close(&p);

	/* No SNI and no default: nothing to present, the handshake fails. */
	connect_pair(t1, t2, NULL, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, -1);
	ck_assert_int_ne(p.c_st, 1);
	pair_close(&p);

	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_server_with_unexpected_identity)
{
	static const struct nm_spiffe_id nobody = { TD, "default", "nobody" };
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_spiffe_id peer;
	const char *why = NULL;
	struct pair p;

	/* Unknown SNI, default "other": the handshake completes, but the
	 * client sees a server that is not the one it asked for. */
	connect_pair(t1, t2, &nobody, "default", "other", &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, &peer, &why), -EPERM);
	ck_assert_str_eq(why, "peer identity is not the expected one");
	pair_close(&p);

	/* Unknown SNI without default: refused with unrecognized_name. */
	connect_pair(t1, t2, &nobody, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, -1);
	ck_assert_int_ne(p.c_st, 1);
	pair_close(&p);

	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_client_from_other_ca_refused)
{
	struct nm_tls *tb = load(bad_dir), *t2 = load(n2_dir);
	struct pair p;

	connect_pair(tb, t2, &id_server, NULL, NULL, &p);
	/* TLS 1.3: the client finishes first; the server then refuses. */
	ck_assert_int_eq(p.s_st, -1);
	ck_assert_int_ne(SSL_get_verify_result(p.s), X509_V_OK);
	ck_assert(p.c_st == -1 || client_read_fails(p.c));
	pair_close(&p);
	nm_tls_free(tb);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_server_from_other_ca_refused)
{
	struct nm_tls *t1 = load(n1_dir), *tb = load(bad2_dir);
	struct pair p;

	connect_pair(t1, tb, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, -1);
	ck_assert_int_ne(p.s_st, 1);
	ck_assert_int_ne(SSL_get_verify_result(p.c), X509_V_OK);
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(tb);
}
END_TEST

START_TEST(test_client_without_cert_refused)
{
	struct nm_tls *t2 = load(n2_dir);

	ck_assert(server_refuses(t2, NULL, NULL, "nmtp/1", NULL));
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_client_two_uri_sans_refused)
{
	struct nm_tls *t2 = load(n2_dir);
	EVP_PKEY *key = NULL;
	X509 *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	x = craft_leaf(key, "spiffe://" TD "/ns/default/sa/client",
		       "spiffe://" TD "/ns/default/sa/admin", NULL);
	ck_assert(server_refuses(t2, x, key, "nmtp/1", &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);

	/* The same key with one URI SAN is accepted: the SANs made the
	 * difference. */
	struct pair p;
	struct nm_spiffe_id peer;

	x = craft_leaf(key, "spiffe://" TD "/ns/default/sa/client", NULL,
		       "client.local");
	pair_open(&p);
	p.c = raw_client(p.fd[0], x, key, "nmtp/1");
	ck_assert_int_eq(nm_tls_server_new(t2, NULL, NULL, p.fd[1], &p.s), 0);
	drive(&p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_int_eq(nm_tls_check_peer(p.s, NULL, &peer, NULL), 0);
	assert_id_eq(&peer, &id_client);
	pair_close(&p);
	X509_free(x);
	EVP_PKEY_free(key);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_client_foreign_trust_domain_refused)
{
	struct nm_tls *t2 = load(n2_dir);
	EVP_PKEY *key = NULL;
	X509 *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	x = craft_leaf(key, "spiffe://other.local/ns/default/sa/client", NULL,
		       NULL);
	ck_assert(server_refuses(t2, x, key, "nmtp/1", &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	EVP_PKEY_free(key);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_client_without_alpn_refused)
{
	struct nm_tls *t2 = load(n2_dir);
	char path[512];
	EVP_PKEY *key;
	X509 *x;

	snprintf(path, sizeof(path), "%s/default/client/cert.pem", n1_dir);
	x = read_cert(path);
	snprintf(path, sizeof(path), "%s/default/client/key.pem", n1_dir);
	key = read_key(path);
	ck_assert(server_refuses(t2, x, key, NULL, NULL));
	ck_assert(server_refuses(t2, x, key, "h2", NULL));
	/* Control: the same credential with nmtp/1 gets in. */
	ck_assert(!server_refuses(t2, x, key, "nmtp/1", NULL));
	X509_free(x);
	EVP_PKEY_free(key);
	nm_tls_free(t2);
}
END_TEST

/*
 * One client identity toward two nodes that present the same identity:
 * each node's session has its own slot, so alternating between them
 * resumes every time; a resumed connection issues no new ticket, the
 * server's cache keeps one parsed session per client key, and connections
 * freed without close_notify (pair_close) do not evict it.
 */
START_TEST(test_resumption_per_node)
{
	struct nm_tls *t1 = load(n1_dir), *node_a = load(n2_dir),
		      *node_b = load(n2_dir);
	struct nm_spiffe_id peer;
	struct pair p;

	connect_pair_to(t1, node_a, &id_server, "198.18.0.2:15008", &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(transfer(p.s, p.c, "ticket"));
	pair_close(&p);
	connect_pair_to(t1, node_b, &id_server, "198.18.0.3:15008", &p);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(transfer(p.s, p.c, "ticket"));
	pair_close(&p);
	for (int i = 0; i < 6; i++) {
		struct nm_tls *ts = i % 2 ? node_b : node_a;

		connect_pair_to(t1, ts, &id_server,
				i % 2 ? "198.18.0.3:15008" : "198.18.0.2:15008",
				&p);
		ck_assert_int_eq(p.s_st, 1);
		ck_assert_msg(SSL_session_reused(p.c), "round %d not resumed", i);
		ck_assert(SSL_session_reused(p.s));
		ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, &peer, NULL), 0);
		assert_id_eq(&peer, &id_server);
		ck_assert_int_eq(nm_tls_check_peer(p.s, NULL, &peer, NULL), 0);
		assert_id_eq(&peer, &id_client);
		ck_assert(transfer(p.s, p.c, "again"));
		pair_close(&p);
	}
	/* One session each: resumed connections added none. */
	ck_assert_uint_eq(nm_tls_server_sessions(node_a), 1);
	ck_assert_uint_eq(nm_tls_server_sessions(node_b), 1);
	/* Another peer identity at the same node has its own slot. */
	connect_pair_to(t1, node_a, &id_other, "198.18.0.2:15008", &p);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, &peer, NULL), 0);
	assert_id_eq(&peer, &id_other);
	pair_close(&p);
	/* A resumed session is still checked against the expectation. */
	connect_pair_to(t1, node_a, &id_server, "198.18.0.2:15008", &p);
	ck_assert(SSL_session_reused(p.c));
	ck_assert_int_eq(nm_tls_check_peer(p.c, &id_other, &peer, NULL),
			 -EPERM);
	pair_close(&p);
	/* Off on a server: its cache is emptied. */
	nm_tls_set_resumption(node_b, false);
	ck_assert_uint_eq(nm_tls_server_sessions(node_b), 0);
	connect_pair_to(t1, node_b, &id_server, "198.18.0.3:15008", &p);
	ck_assert(!SSL_session_reused(p.c));
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(node_a);
	nm_tls_free(node_b);
}
END_TEST

/* --- kTLS receive keys (mesh/ktls.c) ---------------------------------------- */

/*
 * Reads one TLS 1.3 record off the raw socket and opens it with the
 * parameters the kernel would get: proves key, IV and the record sequence
 * number (records OpenSSL read before, tickets included) are exact.
 */
static bool open_raw_record(int fd, const struct nm_ktls_params *kp,
			    const char *want)
{
	uint8_t rec[512], out[512], nonce[12];
	size_t want_len = strlen(want);
	ssize_t n = -1;
	int len, fin, ctlen;
	EVP_CIPHER_CTX *c;
	bool ok;

	for (int i = 0; i < 100 && n < 0; i++) {
		n = recv(fd, rec, sizeof(rec), 0);
		if (n < 0)
			usleep(1000);
	}
	if (n < 5 + 16 || rec[0] != 23 || (size_t)n != 5u + (rec[3] << 8 | rec[4]))
		return false;
	ctlen = (int)n - 5 - 16;
	memcpy(nonce, kp->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(kp->seq >> (56 - 8 * i));
	c = EVP_CIPHER_CTX_new();
	ok = kp->cipher == TLS_CIPHER_AES_GCM_128 &&
	     EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, kp->key, nonce) &&
	     EVP_DecryptUpdate(c, NULL, &len, rec, 5) &&
	     EVP_DecryptUpdate(c, out, &len, rec + 5, ctlen) &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, rec + 5 + ctlen) &&
	     EVP_DecryptFinal_ex(c, out + len, &fin) > 0;
	EVP_CIPHER_CTX_free(c);
	/* Plaintext, then the inner content type (application data). */
	return ok && (size_t)ctlen == want_len + 1 && out[want_len] == 23 &&
	       memcmp(out, want, want_len) == 0;
}

static void ktls_pair(struct nm_tls *tc, struct nm_tls *ts, struct pair *p)
{
	pair_open(p);
	ck_assert_int_eq(nm_tls_client_new(tc, "default", "client", &id_server,
					   "node-k", p->fd[0], &p->c), 0);
	ck_assert_int_eq(nm_tls_server_new(ts, NULL, NULL, p->fd[1], &p->s), 0);
	/* fd -1: no ULP on a socketpair, only the bookkeeping. */
	ck_assert_int_eq(nm_ktls_prepare(p->c, -1), 0);
	ck_assert_int_eq(nm_ktls_prepare(p->s, -1), 0);
	drive(p);
	ck_assert_int_eq(p->c_st, 1);
	ck_assert_int_eq(p->s_st, 1);
}

START_TEST(test_ktls_rx_keys)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_ktls_params kp;
	struct pair p;

	for (int resume = 0; resume < 2; resume++) {
		nm_tls_set_resumption(t1, resume);
		nm_tls_set_resumption(t2, resume);
		ktls_pair(t1, t2, &p);
		/* Server: before any application record, seq 0. */
		ck_assert(transfer(p.c, p.s, "NMT1 preamble"));
		ck_assert_int_eq(nm_ktls_rx_params(p.s, &kp), 0);
		ck_assert_uint_eq(kp.seq, 1);
		ck_assert_int_eq(SSL_write(p.c, "up", 2), 2);
		ck_assert(open_raw_record(p.fd[1], &kp, "up"));
		/* Client: the status record, after the ticket when resumption
		 * is on (the server sends it before any data). */
		ck_assert(transfer(p.s, p.c, "NMT1\0"));
		ck_assert_int_eq(nm_ktls_rx_params(p.c, &kp), 0);
		ck_assert_uint_eq(kp.seq, resume ? 2 : 1);
		ck_assert_int_eq(SSL_write(p.s, "down", 4), 4);
		ck_assert(open_raw_record(p.fd[0], &kp, "down"));
		pair_close(&p);
	}

	/* A KeyUpdate from the peer rules the switch out. */
	ktls_pair(t1, t2, &p);
	ck_assert_int_eq(SSL_key_update(p.s, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	ck_assert(transfer(p.s, p.c, "after update"));
	ck_assert_int_eq(nm_ktls_rx_params(p.c, &kp), -EKEYREJECTED);
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

/* --- the agent's record layer (mesh/tlsrec.c, records.c) --------------------- */

static void rec_params(struct nm_ktls_params *p, int cipher, uint64_t seq)
{
	memset(p, 0, sizeof(*p));
	p->cipher = cipher;
	p->key_len = cipher == TLS_CIPHER_AES_GCM_128 ? 16 : 32;
	for (size_t i = 0; i < p->key_len; i++)
		p->key[i] = (uint8_t)(7 * i + 1);
	for (int i = 0; i < 12; i++)
		p->iv[i] = (uint8_t)(3 * i + 5);
	p->seq = seq;
}

/* Seal and open with every cipher; a changed byte, a replayed or reordered
 * record and a header of another kind are all refused. */
START_TEST(test_tlsrec_seal_open)
{
	static const int ciphers[] = { TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
				       TLS_CIPHER_CHACHA20_POLY1305 };
	static uint8_t plain[NM_TLSREC_PLAIN_MAX], rec[NM_TLSREC_SEALED_MAX],
		rec2[NM_TLSREC_SEALED_MAX], out[NM_TLSREC_PLAIN_MAX + 256];
	struct nm_tlsrec tx, rx;
	struct nm_ktls_params p;
	uint8_t type;
	size_t len;
	ssize_t n, n2;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 31 + 7);
	for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++) {
		rec_params(&p, ciphers[c], 41);
		ck_assert_int_eq(nm_tlsrec_init(&tx, &p, true), 0);
		ck_assert_int_eq(nm_tlsrec_init(&rx, &p, false), 0);
		n = nm_tlsrec_seal(&tx, NM_TLSREC_APPDATA, plain, sizeof(plain), rec,
				   sizeof(rec));
		ck_assert_int_eq(n, NM_TLSREC_SEALED_MAX);
		ck_assert_int_eq(nm_tlsrec_frame(rec, (size_t)n), n);
		ck_assert_int_eq(nm_tlsrec_frame(rec, 4), -EAGAIN);
		/* The header is the additional data, the tag covers it. */
		ck_assert_uint_eq(rec[0], 23);
		ck_assert_uint_eq(rec[3] << 8 | rec[4], (size_t)n - 5);
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec, (size_t)n, out, 100, &type, &len),
				 -EMSGSIZE);
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec, (size_t)n, out, sizeof(out),
						&type, &len), 0);
		ck_assert_uint_eq(type, NM_TLSREC_APPDATA);
		ck_assert_uint_eq(len, sizeof(plain));
		ck_assert_mem_eq(out, plain, sizeof(plain));
		ck_assert_uint_eq(rx.seq, 42);
		/* The same record again (a replay): the nonce moved on. */
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec, (size_t)n, out, sizeof(out),
						&type, &len), -EBADMSG);
		ck_assert_uint_eq(rx.seq, 42);
		/* Two records opened out of order fail; in order both open. */
		n = nm_tlsrec_seal(&tx, NM_TLSREC_APPDATA, plain, 10, rec, sizeof(rec));
		n2 = nm_tlsrec_seal(&tx, NM_TLSREC_ALERT, plain, 2, rec2, sizeof(rec2));
		ck_assert_int_gt(n, 0);
		ck_assert_int_gt(n2, 0);
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec2, (size_t)n2, out, sizeof(out),
						&type, &len), -EBADMSG);
		/* One flipped bit anywhere, header included. */
		for (ssize_t i = 0; i < n; i += 7) {
			rec[i] ^= 0x10;
			ck_assert_int_lt(nm_tlsrec_open(&rx, rec, (size_t)n, out,
							sizeof(out), &type, &len), 0);
			rec[i] ^= 0x10;
		}
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec, (size_t)n, out, sizeof(out),
						&type, &len), 0);
		ck_assert_uint_eq(len, 10);
		/* In place: out = the record's ciphertext. */
		ck_assert_int_eq(nm_tlsrec_open(&rx, rec2, (size_t)n2, rec2 + 5,
						(size_t)n2 - 5 - 16, &type, &len), 0);
		ck_assert_uint_eq(type, NM_TLSREC_ALERT);
		ck_assert_uint_eq(len, 2);
		ck_assert_mem_eq(rec2 + 5, plain, 2);
		nm_tlsrec_free(&tx);
		nm_tlsrec_free(&rx);
	}
	/* Headers no record after the handshake has. */
	memcpy(rec, (const uint8_t[]){ 22, 3, 3, 0, 40 }, 5);
	ck_assert_int_eq(nm_tlsrec_frame(rec, 45), -EPROTO);
	memcpy(rec, (const uint8_t[]){ 23, 3, 1, 0, 40 }, 5);
	ck_assert_int_eq(nm_tlsrec_frame(rec, 45), -EPROTO);
	memcpy(rec, (const uint8_t[]){ 23, 3, 3, 0x41, 0x01 }, 5);
	ck_assert_int_eq(nm_tlsrec_frame(rec, 5), -EMSGSIZE);
	memcpy(rec, (const uint8_t[]){ 23, 3, 3, 0, 16 }, 5);
	ck_assert_int_eq(nm_tlsrec_frame(rec, 21), -EPROTO);
	/* A sequence number about to wrap ends the connection. */
	rec_params(&p, TLS_CIPHER_AES_GCM_128, UINT64_MAX);
	ck_assert_int_eq(nm_tlsrec_init(&tx, &p, true), 0);
	ck_assert_int_eq(nm_tlsrec_seal(&tx, 23, plain, 1, rec, sizeof(rec)), -EOVERFLOW);
	ck_assert_int_eq(nm_tlsrec_seal(&tx, 23, plain, NM_TLSREC_PLAIN_MAX + 1, rec,
					sizeof(rec)), -EMSGSIZE);
	nm_tlsrec_free(&tx);
	p.cipher = 0x7777;
	ck_assert_int_eq(nm_tlsrec_init(&tx, &p, true), -EOPNOTSUPP);
}
END_TEST

/* A record padded with zeros (RFC 8446 §5.4), sealed by hand: the type is
 * the last non-zero byte; all padding is refused. */
START_TEST(test_tlsrec_padding)
{
	uint8_t inner[40] = "abc", rec[80], out[64], nonce[12], type;
	struct nm_ktls_params p;
	struct nm_tlsrec rx;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	size_t len;
	int n;

	for (int pass = 0; pass < 2; pass++) {
		rec_params(&p, TLS_CIPHER_AES_GCM_128, 5);
		ck_assert_int_eq(nm_tlsrec_init(&rx, &p, false), 0);
		memset(inner + 3, 0, sizeof(inner) - 3);
		if (pass == 0)
			inner[3] = 23; /* "abc", type, 36 zeros */
		else
			memset(inner, 0, sizeof(inner)); /* no type at all */
		memcpy(rec, (const uint8_t[]){ 23, 3, 3, 0, 40 + 16 }, 5);
		memcpy(nonce, p.iv, 12);
		nonce[11] ^= 5;
		ck_assert(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, p.key, nonce));
		ck_assert(EVP_EncryptUpdate(c, NULL, &n, rec, 5));
		ck_assert(EVP_EncryptUpdate(c, rec + 5, &n, inner, sizeof(inner)));
		ck_assert(EVP_EncryptFinal_ex(c, rec + 45, &n));
		ck_assert(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, rec + 45));
		n = nm_tlsrec_open(&rx, rec, 61, out, sizeof(out), &type, &len);
		if (pass == 0) {
			ck_assert_int_eq(n, 0);
			ck_assert_uint_eq(type, 23);
			ck_assert_uint_eq(len, 3);
			ck_assert_mem_eq(out, "abc", 3);
		} else {
			ck_assert_int_eq(n, -EPROTO);
		}
		nm_tlsrec_free(&rx);
	}
	EVP_CIPHER_CTX_free(c);
}
END_TEST

/* One tunnel end as the relay holds it, on the agent's records. */
struct rec_end {
	struct nm_side s;
	struct nm_fastpaths fp;
	struct nm_bufpool pool;
};

/* A handshake between an nm_side prepared for the agent's records (the
 * client if side_client, else the server) and a plain OpenSSL end. */
static void rec_pair(struct nm_tls *tc, struct nm_tls *ts, bool side_client,
		     struct pair *p, struct rec_end *e)
{
	pair_open(p);
	ck_assert_int_eq(nm_tls_client_new(tc, "default", "client", &id_server,
					   "node-r", p->fd[0], &p->c), 0);
	ck_assert_int_eq(nm_tls_server_new(ts, NULL, NULL, p->fd[1], &p->s), 0);
	memset(e, 0, sizeof(*e));
	nm_path_set(&e->fp.agent_records, true, "agent", "");
	e->s.fd = side_client ? p->fd[0] : p->fd[1];
	e->s.ssl = side_client ? p->c : p->s;
	e->s.readable = e->s.writable = true;
	ck_assert_int_eq(nm_side_tls_setup(&e->s, &e->fp, &e->pool), 0);
	ck_assert(e->s.ktls_want);
	drive(p);
	ck_assert_int_eq(p->c_st, 1);
	ck_assert_int_eq(p->s_st, 1);
}

static void rec_end_close(struct pair *p, struct rec_end *e, bool side_client)
{
	nm_side_close(&e->s, false); /* frees the SSL, closes the fd */
	if (side_client)
		p->c = NULL, p->fd[0] = -1;
	else
		p->s = NULL, p->fd[1] = -1;
	pair_close(p);
	nm_bufpool_drain(&e->pool);
}

/* Reads until want bytes came or the side answers something else. */
static int side_read_n(struct nm_side *s, uint8_t *buf, size_t want)
{
	size_t got = 0;

	for (int i = 0; i < 20000 && got < want; i++) {
		int r;

		s->readable = true;
		r = nm_side_read(s, buf + got, want - got);
		if (r > 0)
			got += (size_t)r;
		else if (r != -EAGAIN)
			return r;
	}
	return (int)got;
}

static uint8_t pat(size_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

/*
 * The pump's two halves between the side and the OpenSSL peer: len
 * pattern bytes from the side (side_sends) or to it, each end taking what
 * the socketpair holds in turn; true when they arrived byte for byte.
 */
static bool rec_stream(struct nm_side *s, SSL *peer, bool side_sends, size_t len)
{
	static uint8_t out[NM_BUF_SIZE], in[NM_BUF_SIZE];
	size_t sent = 0, got = 0;

	for (int i = 0; i < 200000 && got < len; i++) {
		size_t n = len - sent < sizeof(out) ? len - sent : sizeof(out);
		int r;

		for (size_t k = 0; k < n; k++)
			out[k] = pat(sent + k);
		if (side_sends) {
			s->writable = true;
			if (nm_side_wpending(s) && nm_side_flush(s) && !nm_side_wpending(s))
				return false;
			r = n ? nm_side_write(s, out, n) : 0;
			if (r > 0)
				sent += (size_t)r;
			else if (r < 0 && r != -EAGAIN)
				return false;
			r = SSL_read(peer, in, sizeof(in));
			if (r <= 0 && SSL_get_error(peer, r) != SSL_ERROR_WANT_READ)
				return false;
		} else {
			if (n) {
				r = SSL_write(peer, out, (int)n);
				if (r > 0)
					sent += (size_t)r;
				else if (SSL_get_error(peer, r) != SSL_ERROR_WANT_WRITE)
					return false;
			}
			s->readable = true;
			r = nm_side_read(s, in, sizeof(in));
			if (r < 0 && r != -EAGAIN)
				return false;
		}
		for (int k = 0; k < r; k++)
			if (in[k] != pat(got + (size_t)k))
				return false;
		if (r > 0)
			got += (size_t)r;
	}
	return got == len && sent == len;
}

/*
 * The agent's records against stock OpenSSL on the other end, as client
 * and as server, with and without session tickets before the switch (the
 * server then seals after the records OpenSSL wrote them in): the first
 * exchange goes through OpenSSL, the switch follows the first read, then
 * 3 MiB each way arrive byte for byte and close_notify ends each
 * direction the way OpenSSL means it.
 */
START_TEST(test_records_interop)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct rec_end e;
	struct pair p;
	uint8_t buf[64];

	for (int v = 0; v < 4; v++) {
		bool side_client = v & 1, resume = v & 2;
		SSL *peer;

		nm_tls_set_resumption(t1, resume);
		nm_tls_set_resumption(t2, resume);
		rec_pair(t1, t2, side_client, &p, &e);
		peer = side_client ? p.s : p.c;
		if (side_client) {
			ck_assert_int_eq(nm_side_write(&e.s, (const uint8_t *)"NMT1 pre", 8), 8);
			ck_assert_int_eq(SSL_write(peer, "status", 6), 6);
			ck_assert_int_eq(side_read_n(&e.s, buf, 6), 6);
			ck_assert_mem_eq(buf, "status", 6);
			ck_assert_int_eq(SSL_read(peer, buf, sizeof(buf)), 8);
			ck_assert_mem_eq(buf, "NMT1 pre", 8);
		} else {
			ck_assert_int_eq(SSL_write(peer, "NMT1 pre", 8), 8);
			ck_assert_int_eq(side_read_n(&e.s, buf, 8), 8);
			ck_assert_mem_eq(buf, "NMT1 pre", 8);
		}
		ck_assert_msg(nm_side_agent_records(&e.s), "no switch (variant %d)", v);
		ck_assert_uint_eq(e.fp.agent_records.flows, 1);
		ck_assert_msg(rec_stream(&e.s, peer, true, 3 << 20), "to OpenSSL (variant %d)", v);
		ck_assert_msg(rec_stream(&e.s, peer, false, 3 << 20), "from OpenSSL (variant %d)", v);
		/* Small writes stay small records, one each. */
		ck_assert_msg(rec_stream(&e.s, peer, true, 1), "1 byte (variant %d)", v);
		/* The side's close_notify: OpenSSL reads a clean end. */
		ck_assert_int_eq(nm_side_shutdown(&e.s), 0);
		ck_assert(!nm_side_wpending(&e.s));
		{
			int r = SSL_read(peer, buf, sizeof(buf));

			ck_assert_int_eq(r, 0);
			ck_assert_int_eq(SSL_get_error(peer, r), SSL_ERROR_ZERO_RETURN);
		}
		/* Half-closed: the other direction still carries bytes. */
		ck_assert(rec_stream(&e.s, peer, false, 100000));
		/* The last bytes and the close_notify in one read: the end
		 * waits as pending, as the socket will not wake the side
		 * for it again. */
		ck_assert_int_eq(SSL_write(peer, "tail", 4), 4);
		ck_assert_int_ge(SSL_shutdown(peer), 0);
		e.s.readable = true;
		ck_assert_int_eq(nm_side_read(&e.s, buf, sizeof(buf)), 4);
		ck_assert_mem_eq(buf, "tail", 4);
		ck_assert(!e.s.readable);
		ck_assert(nm_side_pending(&e.s));
		ck_assert_int_eq(nm_side_read(&e.s, buf, sizeof(buf)), 0);
		rec_end_close(&p, &e, side_client);
	}
	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

/* After the switch: a forged record, a FIN without close_notify, a
 * KeyUpdate and an alert each end the stream with an error, after the
 * bytes that came before them. */
START_TEST(test_records_refusals)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	static const uint8_t forged[5 + 32] = { 23, 3, 3, 0, 32 };
	struct rec_end e;
	struct pair p;
	uint8_t buf[64];

	for (int v = 0; v < 4; v++) {
		rec_pair(t1, t2, true, &p, &e);
		ck_assert_int_eq(SSL_write(p.s, "status", 6), 6);
		ck_assert_int_eq(side_read_n(&e.s, buf, 6), 6);
		ck_assert(nm_side_agent_records(&e.s));
		ck_assert_int_eq(SSL_write(p.s, "before", 6), 6);
		switch (v) {
		case 0:
			ck_assert_int_eq(write(p.fd[1], forged, sizeof(forged)),
					 (ssize_t)sizeof(forged));
			break;
		case 1:
			ck_assert_int_eq(shutdown(p.fd[1], SHUT_WR), 0);
			break;
		case 2:
			ck_assert_int_eq(SSL_key_update(p.s, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
			ck_assert_int_eq(SSL_write(p.s, "x", 1), 1);
			break;
		default:
			/* An alert in the clear, as no TLS 1.3 peer sends
			 * one after the handshake. */
			ck_assert_int_eq(write(p.fd[1], (const uint8_t[]){ 21, 3, 3, 0, 2, 2, 40 }, 7), 7);
			break;
		}
		ck_assert_int_eq(side_read_n(&e.s, buf, 6), 6);
		ck_assert_mem_eq(buf, "before", 6);
		{
			int r = side_read_n(&e.s, buf, 1);

			if (v == 0)
				ck_assert_int_eq(r, -EBADMSG);
			else if (v == 1)
				ck_assert_int_eq(r, -ECONNRESET);
			else
				ck_assert_int_eq(r, -EPROTO);
		}
		rec_end_close(&p, &e, true);
	}
	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

/*
 * nm_ktls_tcp_push on a plain loopback TCP pair: bytes TCP holds unsent
 * (here behind TCP_CORK, as a record tail sent with NOTLAST is on a kTLS
 * socket) leave at once, and the count it returns is the send queue.
 */
START_TEST(test_ktls_tcp_push_sends_held_bytes)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l, c, s, one = 1, unsent = -1, q;
	char buf[256];
	ssize_t n = 0;

	l = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	c = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	s = accept(l, NULL, NULL);
	ck_assert_int_ge(s, 0);

	ck_assert_int_eq(setsockopt(c, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)), 0);
	ck_assert_int_eq(write(c, "tail of a record", 16), 16);
	ck_assert_int_eq(ioctl(c, SIOCOUTQNSD, &unsent), 0);
	ck_assert_int_eq(unsent, 16); /* held: corked, below one segment */
	ck_assert_int_eq(recv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);

	q = nm_ktls_tcp_push(c);
	ck_assert_int_ge(q, 0);
	ck_assert_int_le(q, 16);
	ck_assert_int_eq(ioctl(c, SIOCOUTQNSD, &unsent), 0);
	ck_assert_int_eq(unsent, 0);
	for (int i = 0; i < 100 && n < 16; i++) {
		ssize_t r = recv(s, buf + n, sizeof(buf) - (size_t)n, MSG_DONTWAIT);

		if (r > 0)
			n += r;
		else
			usleep(10000);
	}
	ck_assert_int_eq(n, 16);
	ck_assert_mem_eq(buf, "tail of a record", 16);

	/* Nothing held: nothing to do, and a bad fd is an error. */
	ck_assert_int_ge(nm_ktls_tcp_push(c), 0);
	ck_assert_int_eq(nm_ktls_tcp_push(-1), -EBADF);
	close(s);
	close(c);
	close(l);
}
END_TEST

START_TEST(test_resumption)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_spiffe_id peer, local;
	const char *why = NULL;
	struct pair p;

	/* 1: full handshake; reading the server's bytes takes in its ticket. */
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(transfer(p.s, p.c, "NMT1\0"));
	pair_close(&p);

	/* 2: resumed, and both ends still see the exact identities. */
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(SSL_session_reused(p.c));
	ck_assert(SSL_session_reused(p.s));
	ck_assert_msg(nm_tls_check_peer(p.c, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_server);
	ck_assert_msg(nm_tls_check_peer(p.s, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_client);
	ck_assert_int_eq(nm_tls_local_identity(p.s, &local), 0);
	assert_id_eq(&local, &id_server);
	ck_assert(transfer(p.s, p.c, "again"));
	pair_close(&p);

	/* A different peer identity has its own cache slot: not resumed. */
	connect_pair(t1, t2, &id_other, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, &peer, NULL), 0);
	assert_id_eq(&peer, &id_other);
	pair_close(&p);

	/* 3: disabled on the client's side: full handshake. */
	nm_tls_set_resumption(t1, false);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(!SSL_session_reused(p.s));
	ck_assert(transfer(p.s, p.c, "x"));
	pair_close(&p);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(!SSL_session_reused(p.c));
	pair_close(&p);

	/* 4: back on: the next connection fills the cache again. */
	nm_tls_set_resumption(t1, true);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(transfer(p.s, p.c, "x"));
	pair_close(&p);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(SSL_session_reused(p.c));
	pair_close(&p);

	/* 5: disabled on the server's side: the client still holds a ticket
	 * from step 4, but it is not honoured, and no new one is issued. */
	nm_tls_set_resumption(t2, false);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	ck_assert(!SSL_session_reused(p.s));
	ck_assert(transfer(p.s, p.c, "x"));
	pair_close(&p);
	nm_tls_free(t1);
	t1 = load(n1_dir);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(transfer(p.s, p.c, "x"));
	pair_close(&p);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!SSL_session_reused(p.c));
	pair_close(&p);
	/* And back on, the server resumes again. */
	nm_tls_set_resumption(t2, true);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(transfer(p.s, p.c, "x"));
	pair_close(&p);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert(SSL_session_reused(p.c));
	ck_assert(SSL_session_reused(p.s));
	pair_close(&p);

	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_new_errors)
{
	static const struct nm_spiffe_id dotted = { TD, "default", "a.b" };
	struct nm_tls *t1 = load(n1_dir);
	SSL *ssl = NULL;
	struct nm_spiffe_id id;
	const char *why = NULL;
	int fd[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
	ck_assert_int_eq(nm_tls_client_new(t1, "default", "nobody", &id_server,
					   NULL, fd[0], &ssl), -ENOENT);
	ck_assert_int_eq(nm_tls_server_new(t1, "default", "nobody", fd[1], &ssl),
			 -ENOENT);
	ck_assert_int_eq(nm_tls_client_new(t1, "default", "client", &dotted,
					   NULL, fd[0], &ssl), -EINVAL);
	/* Before the handshake there is nothing to check. */
	ck_assert_int_eq(nm_tls_client_new(t1, "default", "client", &id_server,
					   NULL, fd[0], &ssl), 0);
	ck_assert_int_eq(nm_tls_check_peer(ssl, NULL, &id, &why), -EPERM);
	ck_assert_str_eq(why, "handshake has not finished");
	SSL_free(ssl);
	close(fd[0]);
	close(fd[1]);
	nm_tls_free(t1);
}
END_TEST

/* --- tests: leaf rules (issue 8, fault 3) ------------------------------------ */

#define URI_CLIENT "spiffe://" TD "/ns/default/sa/client"
#define URI_SERVER "spiffe://" TD "/ns/default/sa/server"
#define URI_ADMIN "spiffe://" TD "/ns/default/sa/admin"

/* A client "leaf" that is a CA (fault 3 of issue 8): CA:TRUE and
 * keyCertSign, signed by the cluster CA. */
static X509 *mint_ca_client_leaf(EVP_PKEY *key)
{
	return mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT },
					  .ca = true,
					  .key_usage = "critical,digitalSignature,keyCertSign,cRLSign",
					  .ext_key_usage = "serverAuth,clientAuth" });
}

static int raw_alpn_cb(SSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	static const unsigned char want[] = "\x06nmtp/1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, want, sizeof(want) - 1, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* A bare OpenSSL TLS 1.3 server presenting cert (+ chain), for impostors. */
static SSL *raw_server(int fd, X509 *cert, EVP_PKEY *key, X509 *chain1)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl;

	ck_assert_ptr_nonnull(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, raw_alpn_cb, NULL);
	ck_assert_int_eq(SSL_CTX_use_certificate(ctx, cert), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, key), 1);
	if (chain1)
		ck_assert_int_eq(SSL_CTX_add1_chain_cert(ctx, chain1), 1);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	ck_assert_ptr_nonnull(ssl);
	SSL_set_fd(ssl, fd);
	SSL_set_accept_state(ssl);
	return ssl;
}

/* Raw client presenting cert (+ one chain cert) to t's server side. */
static bool server_refuses_chain(struct nm_tls *t, X509 *cert, EVP_PKEY *key,
				 X509 *chain1, long *vr)
{
	struct pair p;
	bool refused;

	pair_open(&p);
	p.c = raw_client(p.fd[0], cert, key, "nmtp/1");
	if (chain1)
		ck_assert_int_eq(SSL_add1_chain_cert(p.c, chain1), 1);
	ck_assert_int_eq(nm_tls_server_new(t, NULL, NULL, p.fd[1], &p.s), 0);
	drive(&p);
	refused = p.s_st == -1 && (p.c_st == -1 || client_read_fails(p.c));
	if (vr)
		*vr = SSL_get_verify_result(p.s);
	pair_close(&p);
	return refused;
}

/* nm_tls client (n1, expecting default/server) against a raw server. */
static bool client_refuses(X509 *cert, EVP_PKEY *key, X509 *chain1, long *vr)
{
	struct nm_tls *t1 = load(n1_dir);
	struct pair p;
	bool refused;

	pair_open(&p);
	ck_assert_int_eq(nm_tls_client_new(t1, "default", "client", &id_server,
					   NULL, p.fd[0], &p.c), 0);
	p.s = raw_server(p.fd[1], cert, key, chain1);
	drive(&p);
	/* A client that went on would pass nm_tls_check_peer(); it must not. */
	refused = p.c_st == -1 ||
		  nm_tls_check_peer(p.c, NULL, NULL, NULL) != 0;
	if (vr)
		*vr = SSL_get_verify_result(p.c);
	pair_close(&p);
	nm_tls_free(t1);
	return refused;
}

START_TEST(test_ca_leaf_refused_both_ways)
{
	struct nm_tls *t2 = load(n2_dir);
	EVP_PKEY *key = NULL;
	X509 *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	/* Fault 3: CA:TRUE + keyCertSign, signed by the cluster CA. */
	x = mint_ca_client_leaf(key);
	ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	/* CA:FALSE but keyCertSign: still able to sign, still refused. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT },
				       .key_usage = "critical,digitalSignature,keyCertSign" });
	ck_assert(server_refuses_chain(t2, x, key, NULL, NULL));
	X509_free(x);
	/* No basicConstraints at all, cRLSign only. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT },
				       .no_basic_constraints = true,
				       .key_usage = "critical,digitalSignature,cRLSign" });
	ck_assert(server_refuses_chain(t2, x, key, NULL, NULL));
	X509_free(x);

	/* The server direction: an impostor presenting a CA leaf with the
	 * expected identity is refused by the client. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_SERVER },
				       .ca = true,
				       .key_usage = "critical,digitalSignature,keyCertSign",
				       .ext_key_usage = "serverAuth,clientAuth" });
	ck_assert(client_refuses(x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	/* Control: a proper leaf of the same key and ID is accepted. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_SERVER } });
	ck_assert(!client_refuses(x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_OK);
	X509_free(x);
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT } });
	ck_assert(!server_refuses_chain(t2, x, key, NULL, NULL));
	X509_free(x);
	EVP_PKEY_free(key);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_leaf_signed_chain_refused)
{
	struct nm_tls *t2 = load(n2_dir);
	EVP_PKEY *wkey = NULL, *key = NULL;
	X509 *w, *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&wkey), 0);
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	/* A plain workload leaf (CA:FALSE) signs an "admin" leaf. */
	w = mint((struct nm_ca_craft){ .key = wkey, .uri = { URI_CLIENT } });
	x = mint((struct nm_ca_craft){ .issuer = w, .issuer_key = wkey,
				       .key = key, .uri = { URI_ADMIN } });
	ck_assert(server_refuses_chain(t2, x, key, w, &vr));
	ck_assert_int_ne(vr, X509_V_OK);
	X509_free(x);
	X509_free(w);

	/* The fault-3 escalation: a CA:TRUE certificate carrying a workload
	 * ID, signed by the cluster CA, signs another identity. OpenSSL alone
	 * accepts this chain; the issuer rule must not. */
	w = mint((struct nm_ca_craft){ .key = wkey, .uri = { URI_CLIENT },
				       .ca = true });
	x = mint((struct nm_ca_craft){ .issuer = w, .issuer_key = wkey,
				       .key = key, .uri = { URI_ADMIN } });
	ck_assert(server_refuses_chain(t2, x, key, w, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	{
		/* The reason is kept for the caller's log line. */
		struct pair p;

		pair_open(&p);
		p.c = raw_client(p.fd[0], x, key, "nmtp/1");
		ck_assert_int_eq(SSL_add1_chain_cert(p.c, w), 1);
		ck_assert_int_eq(nm_tls_server_new(t2, NULL, NULL, p.fd[1], &p.s), 0);
		drive(&p);
		ck_assert_int_eq(p.s_st, -1);
		ck_assert_str_eq(nm_tls_refusal(p.s), "issuer carries a workload SPIFFE ID");
		pair_close(&p);
	}
	X509_free(x);
	/* And as a server impostor for default/server. */
	x = mint((struct nm_ca_craft){ .issuer = w, .issuer_key = wkey,
				       .key = key, .uri = { URI_SERVER } });
	ck_assert(client_refuses(x, key, w, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	X509_free(w);
	EVP_PKEY_free(key);
	EVP_PKEY_free(wkey);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_good_chain_accepted)
{
	struct nm_tls *t2 = load(n2_dir), *tc;
	char dir[512], sub[600], path[700], err[512];
	EVP_PKEY *ikey = NULL, *key = NULL;
	struct nm_spiffe_id peer;
	const char *why = NULL;
	struct pair p;
	X509 *inter, *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&ikey), 0);
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	/* A real intermediate CA (trust domain ID, no workload path). */
	inter = mint((struct nm_ca_craft){ .key = ikey, .cn = "intermediate",
					   .uri = { "spiffe://" TD },
					   .ca = true });
	x = mint((struct nm_ca_craft){ .issuer = inter, .issuer_key = ikey,
				       .key = key, .uri = { URI_CLIENT } });
	ck_assert(!server_refuses_chain(t2, x, key, inter, &vr));
	ck_assert_int_eq(vr, X509_V_OK);

	/* The same chain loaded by nm_tls as cert.pem (leaf + intermediate). */
	path_join(dir, sizeof(dir), base, "chain");
	snprintf(sub, sizeof(sub), "%s/default/client", dir);
	ck_assert_msg(nm_ca_mkdirs(sub, 0700, err, sizeof(err)) == 0, "%s", err);
	snprintf(path, sizeof(path), "%s/cert.pem", sub);
	ck_assert_int_eq(nm_ca_write_certs(path, (X509 *[]){ x, inter }, 2, err,
					   sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/key.pem", sub);
	ck_assert_int_eq(nm_ca_write_key(path, key, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/bundle.pem", sub);
	ck_assert_int_eq(nm_ca_write_certs(path, &ca1.cert, 1, err, sizeof(err)), 0);
	tc = load(dir);
	connect_pair(tc, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_msg(nm_tls_check_peer(p.s, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_client);
	ck_assert_msg(nm_tls_check_peer(p.c, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_server);
	ck_assert(transfer(p.c, p.s, "through an intermediate"));
	pair_close(&p);
	nm_tls_free(tc);
	X509_free(x);
	X509_free(inter);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ikey);
	nm_tls_free(t2);
}
END_TEST

START_TEST(test_odd_sans_and_expired_refused)
{
	static const char nul_uri[] = URI_CLIENT "\0.evil";
	struct nm_tls *t2 = load(n2_dir);
	EVP_PKEY *key = NULL;
	X509 *x;
	long vr;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	/* A NUL inside the URI SAN: its C-string prefix is a valid ID. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { nul_uri },
				       .uri_len = { sizeof(nul_uri) - 1 } });
	ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	const char *bad[] = {
		"spiffe://" TD ":8443/ns/default/sa/client",
		"spiffe://" TD "/ns/default/sa/client?x=1",
		"spiffe://" TD "/ns/default/sa/client#f",
		"spiffe://u@" TD "/ns/default/sa/client",
		"https://" TD "/ns/default/sa/client",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		x = craft_leaf(key, bad[i], NULL, NULL);
		ck_assert_msg(server_refuses_chain(t2, x, key, NULL, &vr), "%s", bad[i]);
		ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
		X509_free(x);
	}
	/* DNS only, and no SAN at all. */
	x = craft_leaf(key, NULL, NULL, "client.default." TD);
	ck_assert(server_refuses_chain(t2, x, key, NULL, NULL));
	X509_free(x);
	x = craft_leaf(key, NULL, NULL, NULL);
	ck_assert(server_refuses_chain(t2, x, key, NULL, NULL));
	X509_free(x);
	/* Expired an hour ago. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT },
				       .not_before = -7200, .not_after = -3600 });
	ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_CERT_HAS_EXPIRED);
	X509_free(x);
	/* Self-signed with a valid-looking ID (nm_ca_craft without issuer). */
	{
		struct nm_ca_craft sp = { .key = key, .uri = { URI_CLIENT } };

		ck_assert_int_eq(nm_ca_craft(&sp, &x), 0);
		ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
		ck_assert_int_ne(vr, X509_V_OK);
		X509_free(x);
	}
	EVP_PKEY_free(key);
	nm_tls_free(t2);
}
END_TEST

/*
 * Reload safety: both contexts are freed while a handshake made from them is
 * half done; the handshake must still complete (the servername callback and
 * the client's ticket callback run after the free) and carry bytes. Under
 * ASan a use-after-free here is fatal.
 */
START_TEST(test_free_while_handshaking)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_spiffe_id peer;
	const char *why = NULL;
	struct pair p;

	pair_open(&p);
	ck_assert_int_eq(nm_tls_client_new(t1, "default", "client", &id_server,
					   NULL, p.fd[0], &p.c), 0);
	ck_assert_int_eq(nm_tls_server_new(t2, NULL, NULL, p.fd[1], &p.s), 0);
	/* ClientHello out, nothing processed by the server yet. */
	step(p.c, &p.c_st);
	ck_assert_int_eq(p.c_st, 0);
	nm_tls_free(t1);
	nm_tls_free(t2);
	/* A fresh pair of contexts takes the freed memory's place. */
	t1 = load(n2_dir);
	t2 = load(n1_dir);
	drive(&p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_msg(nm_tls_check_peer(p.s, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_client);
	ck_assert_msg(nm_tls_check_peer(p.c, NULL, &peer, &why) == 0, "%s", why);
	assert_id_eq(&peer, &id_server);
	/* Server to client first: the client takes in the ticket here. */
	ck_assert(transfer(p.s, p.c, "NMT1\0"));
	ck_assert(transfer(p.c, p.s, "after the reload"));
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(t2);

	/* ref/unref: an extra holder keeps it alive past nm_tls_free(). */
	t1 = load(n1_dir);
	ck_assert_ptr_eq(nm_tls_ref(t1), t1);
	nm_tls_free(t1);
	ck_assert(nm_tls_has_identity(t1, "default", "client"));
	nm_tls_unref(t1);
	nm_tls_unref(NULL);
	ck_assert_ptr_null(nm_tls_ref(NULL));
}
END_TEST

/* --- tests: loading errors -------------------------------------------------- */

/* A credential folder <base>/<name>/default/server copied from n2, then
 * one file replaced. */
static void make_cred_copy(char *dir, size_t len, const char *name)
{
	char sub[512], src[600], dst[600];
	char err[512];

	path_join(dir, len, base, name);
	snprintf(sub, sizeof(sub), "%s/default/server", dir);
	ck_assert_msg(nm_ca_mkdirs(sub, 0700, err, sizeof(err)) == 0, "%s", err);
	for (const char *const *f = (const char *const[]){ "cert.pem", "key.pem",
							   "bundle.pem", NULL };
	     *f; f++) {
		snprintf(src, sizeof(src), "%s/default/server/%s", n2_dir, *f);
		snprintf(dst, sizeof(dst), "%s/%s", sub, *f);
		copy_file(src, dst, strcmp(*f, "key.pem") ? 0644 : 0600);
	}
}

static int try_load(const char *dir, char *err, size_t errlen)
{
	struct nm_tls *t = NULL;
	int ret;

	err[0] = '\0';
	ret = nm_tls_create(dir, TD, &t, err, errlen);
	if (ret == 0)
		nm_tls_free(t);
	return ret;
}

START_TEST(test_create_key_mismatch)
{
	char dir[512], src[600], dst[600], err[512];

	make_cred_copy(dir, sizeof(dir), "e-mismatch");
	snprintf(src, sizeof(src), "%s/default/other/key.pem", n2_dir);
	snprintf(dst, sizeof(dst), "%s/default/server/key.pem", dir);
	copy_file(src, dst, 0600);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/server/key.pem: key does not match"),
		      "%s", err);
}
END_TEST

START_TEST(test_create_wrong_identity)
{
	char dir[512], from[600], to[600], err[512];

	/* server's credential filed under default/imposter. */
	make_cred_copy(dir, sizeof(dir), "e-identity");
	snprintf(from, sizeof(from), "%s/default/server", dir);
	snprintf(to, sizeof(to), "%s/default/imposter", dir);
	ck_assert_int_eq(rename(from, to), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/imposter/cert.pem: SPIFFE ID"), "%s", err);
	ck_assert_msg(strstr(err, "does not match its folder"), "%s", err);
}
END_TEST

START_TEST(test_create_not_p256)
{
	static const struct nm_spiffe_id id = { TD, "default", "server" };
	char dir[512], path[600], err[512];
	EVP_PKEY *key = EVP_EC_gen("P-384");
	struct nm_ca ca;
	X509 *x = NULL;

	ck_assert_ptr_nonnull(key);
	make_cred_copy(dir, sizeof(dir), "e-p384");
	ck_assert_int_eq(nm_ca_load(ca1_dir, &ca, err, sizeof(err)), 0);
	ck_assert_int_eq(nm_ca_new_leaf(&ca, key, &id, 1, &x), 0);
	snprintf(path, sizeof(path), "%s/default/server/key.pem", dir);
	ck_assert_int_eq(nm_ca_write_key(path, key, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/default/server/cert.pem", dir);
	ck_assert_int_eq(nm_ca_write_certs(path, &x, 1, err, sizeof(err)), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/server/key.pem: key is not ECDSA P-256"),
		      "%s", err);
	X509_free(x);
	EVP_PKEY_free(key);
	nm_ca_release(&ca);
}
END_TEST

START_TEST(test_create_missing_and_broken_files)
{
	char dir[512], path[600], err[512];
	int fd;

	make_cred_copy(dir, sizeof(dir), "e-missing");
	snprintf(path, sizeof(path), "%s/default/server/key.pem", dir);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "/default/server/key.pem: No such file"), "%s", err);

	make_cred_copy(dir, sizeof(dir), "e-garbage");
	snprintf(path, sizeof(path), "%s/default/server/cert.pem", dir);
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, "not a cert\n", 11), 11);
	close(fd);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/server/cert.pem: not a PEM certificate"),
		      "%s", err);

	make_cred_copy(dir, sizeof(dir), "e-nobundle");
	snprintf(path, sizeof(path), "%s/default/server/bundle.pem", dir);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "no trust bundle"), "%s", err);

	make_cred_copy(dir, sizeof(dir), "e-emptybundle");
	snprintf(path, sizeof(path), "%s/default/server/bundle.pem", dir);
	fd = open(path, O_WRONLY | O_TRUNC);
	close(fd);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/server/bundle.pem: holds no certificate"),
		      "%s", err);

	path_join(path, sizeof(path), base, "does-not-exist");
	ck_assert_int_eq(try_load(path, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "does-not-exist"), "%s", err);

	struct nm_tls *t = NULL;

	ck_assert_int_eq(nm_tls_create(n2_dir, "Bad_TD", &t, err, sizeof(err)),
			 -EINVAL);
	/* n2 holds cluster.local IDs: another trust domain does not match. */
	ck_assert_int_eq(nm_tls_create(n2_dir, "other.local", &t, err,
				       sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "does not match its folder"), "%s", err);
}
END_TEST

START_TEST(test_create_shared_bundle_and_loose_key)
{
	char dir[512], path[600], src[600], err[512];
	struct nm_tls *t = NULL;

	/* Top-level bundle.pem instead of per-credential ones; a key file
	 * readable by others loads with a warning. */
	make_cred_copy(dir, sizeof(dir), "e-shared");
	snprintf(path, sizeof(path), "%s/default/server/bundle.pem", dir);
	ck_assert_int_eq(unlink(path), 0);
	path_join(src, sizeof(src), ca1_dir, "ca.crt");
	path_join(path, sizeof(path), dir, "bundle.pem");
	copy_file(src, path, 0644);
	snprintf(path, sizeof(path), "%s/default/server/key.pem", dir);
	ck_assert_int_eq(chmod(path, 0644), 0);
	/* Dot entries and loose files are ignored. */
	path_join(path, sizeof(path), dir, "..data");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	path_join(path, sizeof(path), dir, "README");
	copy_file(src, path, 0644);
	ck_assert_msg(nm_tls_create(dir, TD, &t, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(nm_tls_identity_count(t), 1);
	ck_assert(nm_tls_has_identity(t, "default", "server"));
	nm_tls_free(t);
}
END_TEST

START_TEST(test_create_refuses_ca_credential)
{
	char dir[512], path[600], err[512];
	EVP_PKEY *key = NULL;
	X509 *x;

	make_cred_copy(dir, sizeof(dir), "e-ca-cred");
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_SERVER },
				       .ca = true });
	snprintf(path, sizeof(path), "%s/default/server/cert.pem", dir);
	ck_assert_int_eq(nm_ca_write_certs(path, &x, 1, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/default/server/key.pem", dir);
	ck_assert_int_eq(nm_ca_write_key(path, key, err, sizeof(err)), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "/default/server/cert.pem: leaf certificate is a CA"),
		      "%s", err);
	X509_free(x);
	EVP_PKEY_free(key);
}
END_TEST

/* A FIFO in place of each file: an immediate error naming it (a blocking
 * open() would hang here until the test's timeout). */
START_TEST(test_create_fifo_refused)
{
	const char *files[] = { "cert.pem", "key.pem", "bundle.pem" };
	char dir[512], path[600], err[512], want[700];

	for (size_t i = 0; i < 3; i++) {
		char name[32];

		snprintf(name, sizeof(name), "e-fifo-%zu", i);
		make_cred_copy(dir, sizeof(dir), name);
		snprintf(path, sizeof(path), "%s/default/server/%s", dir, files[i]);
		ck_assert_int_eq(unlink(path), 0);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
		ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
		snprintf(want, sizeof(want), "%s: not a regular file", path);
		ck_assert_msg(strstr(err, want), "%s", err);
	}
	/* The same for the top-level bundle. */
	make_cred_copy(dir, sizeof(dir), "e-fifo-top");
	path_join(path, sizeof(path), dir, "bundle.pem");
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(try_load(dir, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "bundle.pem: not a regular file"), "%s", err);
}
END_TEST

/* --- tests: CA files -------------------------------------------------------- */

static mode_t mode_of(const char *path)
{
	struct stat st;

	ck_assert_msg(stat(path, &st) == 0, "stat %s", path);
	return st.st_mode & 07777;
}

START_TEST(test_ca_files)
{
	char dir[512], out[512], path[700], err[512], got[512];
	struct nm_spiffe_id id;
	struct nm_ca ca;
	X509 *x;

	path_join(dir, sizeof(dir), base, "ca-files/ca");
	path_join(out, sizeof(out), base, "ca-files/certs");
	ck_assert_msg(nm_ca_init(dir, "example.org", 10, false, got, sizeof(got),
				 err, sizeof(err)) == 0, "%s", err);
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	ck_assert_str_eq(got, path);
	ck_assert_uint_eq(mode_of(dir), 0700);
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	ck_assert_uint_eq(mode_of(path), 0600);

	/* No silent replacement of a CA. */
	ck_assert_int_eq(nm_ca_init(dir, "example.org", 10, false, NULL, 0, err,
				    sizeof(err)), -EEXIST);
	ck_assert_msg(strstr(err, "ca.key: already exists"), "%s", err);

	ck_assert_int_eq(nm_ca_load(dir, &ca, err, sizeof(err)), 0);
	ck_assert_str_eq(ca.trust_domain, "example.org");
	ck_assert_int_eq(nm_ca_issue(&ca, out, "team-a", "api", 5, got,
				     sizeof(got), err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/team-a/api", out);
	ck_assert_str_eq(got, path);
	ck_assert_uint_eq(mode_of(path), 0700);
	snprintf(path, sizeof(path), "%s/team-a/api/key.pem", out);
	ck_assert_uint_eq(mode_of(path), 0600);
	snprintf(path, sizeof(path), "%s/team-a/api/cert.pem", out);
	x = read_cert(path);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &id, NULL), 0);
	ck_assert_str_eq(id.trust_domain, "example.org");
	ck_assert_str_eq(id.ns, "team-a");
	ck_assert_str_eq(id.sa, "api");
	/* The extensions DESIGN §6 asks for. */
	ck_assert_int_eq(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	ck_assert_int_eq(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	ck_assert_ptr_nonnull(X509_get0_subject_key_id(x));
	ck_assert_ptr_nonnull(X509_get0_authority_key_id(x));
	ck_assert_int_eq(X509_check_ca(x), 0);
	ck_assert_int_eq(X509_check_issued(ca.cert, x), X509_V_OK);
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);

	ck_assert_int_eq(serial->length, 16);
	X509_free(x);
	/* A leaf asked to outlive its 10-day CA ends with it. */
	ck_assert_int_eq(nm_ca_issue(&ca, out, "team-a", "long", 3650, NULL, 0,
				     err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/team-a/long/cert.pem", out);
	x = read_cert(path);
	ck_assert_int_eq(ASN1_TIME_compare(X509_get0_notAfter(x),
					   X509_get0_notAfter(ca.cert)), 0);
	X509_free(x);
	ck_assert_int_eq(X509_check_ca(ca.cert), 1);
	ck_assert_int_eq(X509_get_key_usage(ca.cert), KU_KEY_CERT_SIGN | KU_CRL_SIGN);

	/* Names the identity rules refuse are refused before any file. */
	ck_assert_int_eq(nm_ca_issue(&ca, out, "Team", "api", 5, NULL, 0, err,
				     sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "namespace \"Team\""), "%s", err);
	ck_assert_int_eq(nm_ca_issue(&ca, out, "team", "a/b", 5, NULL, 0, err,
				     sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "service account \"a/b\""), "%s", err);
	ck_assert_int_eq(nm_ca_issue(&ca, out, "team", "..", 5, NULL, 0, err,
				     sizeof(err)), -EINVAL);
	nm_ca_release(&ca);

	/* A corrupt key is named. */
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	copy_file("/dev/null", path, 0600);
	ck_assert_int_eq(nm_ca_load(dir, &ca, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "ca.key: not a PEM private key"), "%s", err);
	/* --force replaces it. */
	ck_assert_int_eq(nm_ca_init(dir, "example.org", 10, true, NULL, 0, err,
				    sizeof(err)), 0);
	ck_assert_int_eq(nm_ca_load(dir, &ca, err, sizeof(err)), 0);
	nm_ca_release(&ca);
}
END_TEST

/*
 * mesh/ecmeth.h: with the engine, both peers' certificate keys take
 * OpenSSL's built-in EC code (no provider behind them) and the handshake,
 * identities and data are as without it; each full handshake counts once,
 * a resumed one not at all. Without it (or with "provider") the keys stay
 * on the providers. The whole handshake case also runs again under the
 * engine ("handshake-builtin" below).
 */
START_TEST(test_ecmeth_builtin_keys)
{
	struct nm_path_state st = { 0 };
	struct nm_tls *t1, *t2;
	const char *why = NULL;
	struct pair p;

	/* Before the engine: provider keys. */
	t1 = load(n1_dir);
	t2 = load(n2_dir);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!nm_ecmeth_peer_builtin(p.c));
	ck_assert(!nm_ecmeth_peer_builtin(p.s));
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(t2);

	ck_assert_int_eq(nm_ecmeth_setup(true, &st), 0);
	ck_assert(!st.active);
	ck_assert_str_eq(st.mode, "provider");
	ck_assert_str_eq(st.reason, "mesh.tlsEcMethods is provider");

	ck_assert_int_eq(nm_ecmeth_setup(false, &st), 0);
	ck_assert_msg(st.active, "engine not registered: %s", st.reason);
	ck_assert_str_eq(st.mode, "builtin");
	t1 = load(n1_dir); /* own certificates parsed under the engine too */
	t2 = load(n2_dir);
	nm_tls_set_resumption(t1, true);
	nm_tls_set_resumption(t2, true);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(nm_ecmeth_peer_builtin(p.c));
	ck_assert(nm_ecmeth_peer_builtin(p.s));
	ck_assert_msg(nm_tls_check_peer(p.c, &id_server, NULL, &why) == 0, "%s", why);
	ck_assert_msg(nm_tls_check_peer(p.s, &id_client, NULL, &why) == 0, "%s", why);
	nm_ecmeth_count(&st, p.c);
	nm_ecmeth_count(&st, p.s);
	ck_assert_uint_eq(st.flows, 2);
	ck_assert(transfer(p.c, p.s, "over the built-in EC code"));
	ck_assert(transfer(p.s, p.c, "and back"));
	pair_close(&p);
	/* Resumed: no certificate parsed, nothing counted. */
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.c_st, 1);
	ck_assert(SSL_session_reused(p.c));
	nm_ecmeth_count(&st, p.c);
	ck_assert_uint_eq(st.flows, 2);
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(t2);

	/* Torn down: parsing is back on the providers. */
	nm_ecmeth_teardown();
	t1 = load(n1_dir);
	t2 = load(n2_dir);
	connect_pair(t1, t2, &id_server, NULL, NULL, &p);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert(!nm_ecmeth_peer_builtin(p.c));
	pair_close(&p);
	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

/*
 * A key whose public half is cert's and whose private half is anyone's:
 * OpenSSL's own consistency checks compare public keys only, so a client
 * built with it presents cert and signs the handshake with the wrong key,
 * as a thief holding only the certificate would.
 */
static EVP_PKEY *forged_key(X509 *cert)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert), *out = NULL;
	unsigned char *point = NULL, d[32];
	OSSL_PARAM_BLD *bld;
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx;
	BIGNUM *priv;
	size_t n;

	ecmeth_pause();
	n = EVP_PKEY_get1_encoded_public_key(pub, &point);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(RAND_bytes(d, sizeof(d)), 1);
	d[0] &= 0x7f; /* below the group order */
	priv = BN_bin2bn(d, sizeof(d), NULL);
	bld = OSSL_PARAM_BLD_new();
	ck_assert(priv && bld);
	ck_assert(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
						  SN_X9_62_prime256v1, 0));
	ck_assert(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
						   point, n));
	ck_assert(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv));
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	ck_assert(params && ctx);
	ck_assert_int_eq(EVP_PKEY_fromdata_init(ctx), 1);
	ck_assert_int_eq(EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params), 1);
	ck_assert_int_eq(EVP_PKEY_eq(out, pub), 1); /* what OpenSSL checks */
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(priv);
	OPENSSL_free(point);
	ecmeth_resume();
	return out;
}

/*
 * mesh/vcache.h through the handshakes: the second full handshake with the
 * same chain takes the stored verdict on both sides, still yields the
 * verified chain (leaf, then CA 1) and the exact identities; a refused
 * chain is never stored; the same leaf sent with another chain is a new
 * entry; and a hit decides nothing about the key: a client presenting a
 * cached certificate with a key that is not its own is refused.
 */
START_TEST(test_verify_cache)
{
	struct nm_tls *t1 = load(n1_dir), *t2 = load(n2_dir);
	struct nm_vcache_stats cs, ss;
	EVP_PKEY *key = NULL, *forged;
	STACK_OF(X509) *chain;
	const char *why = NULL;
	struct pair p;
	long vr;
	X509 *x;

	nm_tls_set_resumption(t1, false);
	nm_tls_set_resumption(t2, false);
	for (int i = 0; i < 3; i++) {
		connect_pair(t1, t2, &id_server, NULL, NULL, &p);
		ck_assert_int_eq(p.c_st, 1);
		ck_assert_int_eq(p.s_st, 1);
		ck_assert(!SSL_session_reused(p.c));
		ck_assert_msg(nm_tls_check_peer(p.c, &id_server, NULL, &why) == 0, "%s", why);
		ck_assert_msg(nm_tls_check_peer(p.s, &id_client, NULL, &why) == 0, "%s", why);
		ck_assert_int_eq(nm_tls_check_peer(p.s, &id_other, NULL, &why), -EPERM);
		for (int side = 0; side < 2; side++) {
			chain = SSL_get0_verified_chain(side ? p.s : p.c);
			ck_assert_int_eq(sk_X509_num(chain), 2);
			ck_assert_int_eq(X509_cmp(sk_X509_value(chain, 1), ca1.cert), 0);
			ck_assert_int_eq(X509_cmp(sk_X509_value(chain, 0),
						  SSL_get0_peer_certificate(side ? p.s : p.c)), 0);
		}
		ck_assert(transfer(p.c, p.s, "cached"));
		pair_close(&p);
	}
	nm_tls_verify_cache_stats(t1, 0, &cs);
	nm_tls_verify_cache_stats(t2, 1, &ss);
	ck_assert_uint_eq(cs.stored, 1);
	ck_assert_uint_eq(cs.hits, 2);
	ck_assert_uint_eq(ss.stored, 1);
	ck_assert_uint_eq(ss.hits, 2);

	/* Refused (a CA leaf) twice: verified twice, stored never. */
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	x = mint_ca_client_leaf(key);
	ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
	ck_assert(server_refuses_chain(t2, x, key, NULL, &vr));
	ck_assert_int_eq(vr, X509_V_ERR_APPLICATION_VERIFICATION);
	X509_free(x);
	nm_tls_verify_cache_stats(t2, 1, &ss);
	ck_assert_uint_eq(ss.stored, 1);
	ck_assert_uint_eq(ss.hits, 2);

	/* A good leaf: stored, then hit; sent with the CA behind it: another
	 * chain, so verified and stored again. */
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT } });
	ck_assert(!server_refuses_chain(t2, x, key, NULL, NULL));
	ck_assert(!server_refuses_chain(t2, x, key, NULL, NULL));
	nm_tls_verify_cache_stats(t2, 1, &ss);
	ck_assert_uint_eq(ss.stored, 2);
	ck_assert_uint_eq(ss.hits, 3);
	ck_assert(!server_refuses_chain(t2, x, key, ca1.cert, NULL));
	nm_tls_verify_cache_stats(t2, 1, &ss);
	ck_assert_uint_eq(ss.stored, 3);

	/* The cached certificate with a key that is not its own. */
	forged = forged_key(x);
	ck_assert(server_refuses_chain(t2, x, forged, NULL, NULL));
	nm_tls_verify_cache_stats(t2, 1, &ss);
	ck_assert_uint_eq(ss.hits, 4); /* the chain was known, the key was not */
	EVP_PKEY_free(forged);

	/* A reload's nm_tls counts on from the old one's figures (the
	 * metric never goes back) but verifies afresh: no entries carried. */
	{
		struct nm_tls *t3 = load(n2_dir);
		struct nm_vcache_stats s3;

		nm_tls_carry_stats(t3, t2);
		nm_tls_verify_cache_stats(t3, 1, &s3);
		ck_assert_uint_eq(s3.hits, ss.hits);
		ck_assert_uint_eq(s3.misses, ss.misses);
		ck_assert_uint_eq(s3.stored, ss.stored);
		nm_tls_verify_cache_stats(t3, 0, &s3);
		nm_tls_verify_cache_stats(t2, 0, &cs);
		ck_assert_uint_eq(s3.hits, cs.hits);
		ck_assert_uint_eq(s3.misses, cs.misses);
		ck_assert(!server_refuses_chain(t3, x, key, NULL, NULL));
		nm_tls_verify_cache_stats(t3, 1, &s3);
		ck_assert_uint_eq(s3.hits, ss.hits);
		ck_assert_uint_eq(s3.misses, ss.misses + 1);
		ck_assert_uint_eq(s3.stored, ss.stored + 1);
		nm_tls_carry_stats(t3, t3); /* itself: nothing doubles */
		nm_tls_carry_stats(t3, NULL);
		nm_tls_verify_cache_stats(t3, 1, &ss);
		ck_assert_uint_eq(ss.misses, s3.misses);
		nm_tls_free(t3);
	}
	X509_free(x);
	EVP_PKEY_free(key);
	nm_tls_free(t1);
	nm_tls_free(t2);
}
END_TEST

/* mesh/vcache.c on its own: byte-exact keys, the TTL and notAfter. */
START_TEST(test_vcache_expiry)
{
	struct nm_vcache *vc = nm_vcache_new();
	struct nm_vcache_key k, k2;
	struct nm_vcache_stats st;
	STACK_OF(X509) *chain = sk_X509_new_null(), *got;
	time_t now = time(NULL);
	EVP_PKEY *key = NULL;
	X509 *x, *brief;

	ck_assert_ptr_nonnull(vc);
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	x = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT } });
	sk_X509_push(chain, x);
	sk_X509_push(chain, ca1.cert);
	ck_assert_int_eq(nm_vcache_key_make(&k, x, NULL), 0);
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k, x, now));
	ck_assert_int_eq(nm_vcache_store(vc, &k, chain, now), 0);
	ck_assert_ptr_null(k.der); /* the cache took the encoding */
	ck_assert_int_eq(nm_vcache_key_make(&k, x, NULL), 0);
	got = nm_vcache_lookup(vc, &k, x, now + NM_VCACHE_TTL_S - 1);
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(sk_X509_num(got), 2);
	ck_assert_ptr_eq(sk_X509_value(got, 0), x);
	ck_assert_int_eq(X509_cmp(sk_X509_value(got, 1), ca1.cert), 0);
	sk_X509_pop_free(got, X509_free);
	/* One byte off is another chain. */
	ck_assert_int_eq(nm_vcache_key_make(&k2, x, NULL), 0);
	k2.der[k2.len - 1] ^= 1;
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k2, x, now));
	k2.hash = k.hash; /* even in the same slot */
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k2, x, now));
	nm_vcache_key_release(&k2);
	/* Past the TTL: dropped. */
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k, x, now + NM_VCACHE_TTL_S));
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k, x, now));
	nm_vcache_key_release(&k);

	/* A leaf that expires in 60 s stays only until then. */
	brief = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT },
					   .not_after = 60 });
	sk_X509_set(chain, 0, brief);
	ck_assert_int_eq(nm_vcache_key_make(&k, brief, NULL), 0);
	ck_assert_int_eq(nm_vcache_store(vc, &k, chain, now), 0);
	ck_assert_int_eq(nm_vcache_key_make(&k, brief, NULL), 0);
	got = nm_vcache_lookup(vc, &k, brief, now + 30);
	ck_assert_ptr_nonnull(got);
	sk_X509_pop_free(got, X509_free);
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k, brief, now + 90));
	nm_vcache_key_release(&k);
	nm_vcache_get_stats(vc, &st);
	ck_assert_uint_eq(st.stored, 2);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.expired, 2);

	/* A full table replaces its oldest entry. */
	X509_free(x);
	for (int i = 0; i < NM_VCACHE_SLOTS + 1; i++) {
		X509 *y = mint((struct nm_ca_craft){ .key = key, .uri = { URI_CLIENT } });

		sk_X509_set(chain, 0, y);
		ck_assert_int_eq(nm_vcache_key_make(&k, y, NULL), 0);
		ck_assert_int_eq(nm_vcache_store(vc, &k, chain, now + i), 0);
		if (i == 0)
			x = y, X509_up_ref(x); /* the first, evicted at the end */
		X509_free(y);
	}
	ck_assert_int_eq(nm_vcache_key_make(&k, x, NULL), 0);
	ck_assert_ptr_null(nm_vcache_lookup(vc, &k, x, now + NM_VCACHE_SLOTS + 1));
	nm_vcache_key_release(&k);
	X509_free(x);
	X509_free(brief);
	sk_X509_free(chain);
	nm_vcache_free(vc);
	EVP_PKEY_free(key);
}
END_TEST

/* Checked fixture of "handshake-builtin": each test runs under the engine. */
static void setup_ecmeth(void)
{
	struct nm_path_state st = { 0 };

	ck_assert_int_eq(nm_ecmeth_setup(false, &st), 0);
	ck_assert_msg(st.active, "engine not registered: %s", st.reason);
	ecmeth_on = true;
}

static void teardown_ecmeth(void)
{
	ecmeth_on = false;
	nm_ecmeth_teardown();
}

/* The handshake tests, run with and without the EC engine. */
static void add_handshake_tests(TCase *tc)
{
	tcase_add_test(tc, test_create_loads_tree);
	tcase_add_test(tc, test_handshake_ids_both_ways);
	tcase_add_test(tc, test_default_identity_without_sni);
	tcase_add_test(tc, test_server_with_unexpected_identity);
	tcase_add_test(tc, test_client_from_other_ca_refused);
	tcase_add_test(tc, test_server_from_other_ca_refused);
	tcase_add_test(tc, test_client_without_cert_refused);
	tcase_add_test(tc, test_client_two_uri_sans_refused);
	tcase_add_test(tc, test_client_foreign_trust_domain_refused);
	tcase_add_test(tc, test_client_without_alpn_refused);
	tcase_add_test(tc, test_resumption);
	tcase_add_test(tc, test_ktls_rx_keys);
	tcase_add_test(tc, test_ktls_tcp_push_sends_held_bytes);
	tcase_add_test(tc, test_tlsrec_seal_open);
	tcase_add_test(tc, test_tlsrec_padding);
	tcase_add_test(tc, test_records_interop);
	tcase_add_test(tc, test_records_refusals);
	tcase_add_test(tc, test_resumption_per_node);
	tcase_add_test(tc, test_new_errors);
	tcase_add_test(tc, test_ca_leaf_refused_both_ways);
	tcase_add_test(tc, test_leaf_signed_chain_refused);
	tcase_add_test(tc, test_good_chain_accepted);
	tcase_add_test(tc, test_odd_sans_and_expired_refused);
	tcase_add_test(tc, test_free_while_handshaking);
	tcase_add_test(tc, test_verify_cache);
	tcase_add_test(tc, test_vcache_expiry);
}

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *hs = tcase_create("handshake");
	TCase *hsb = tcase_create("handshake-builtin");
	TCase *ld = tcase_create("load");
	TCase *ca = tcase_create("ca");

	tcase_add_unchecked_fixture(hs, setup_all, NULL);
	tcase_set_timeout(hs, 30);
	add_handshake_tests(hs);
	tcase_add_test(hs, test_ecmeth_builtin_keys);
	suite_add_tcase(s, hs);

	/* The same handshakes under OpenSSL's built-in EC code, the agent's
	 * default on OpenSSL 3.0 (mesh/ecmeth.h). */
	tcase_add_unchecked_fixture(hsb, setup_all, NULL);
	tcase_add_checked_fixture(hsb, setup_ecmeth, teardown_ecmeth);
	tcase_set_timeout(hsb, 30);
	add_handshake_tests(hsb);
	suite_add_tcase(s, hsb);

	tcase_add_unchecked_fixture(ld, setup_all, NULL);
	tcase_add_test(ld, test_create_key_mismatch);
	tcase_add_test(ld, test_create_wrong_identity);
	tcase_add_test(ld, test_create_not_p256);
	tcase_add_test(ld, test_create_missing_and_broken_files);
	tcase_add_test(ld, test_create_shared_bundle_and_loose_key);
	tcase_add_test(ld, test_create_refuses_ca_credential);
	tcase_add_test(ld, test_create_fifo_refused);
	suite_add_tcase(s, ld);

	tcase_add_unchecked_fixture(ca, setup_all, teardown_all);
	tcase_add_test(ca, test_ca_files);
	suite_add_tcase(s, ca);
	return s;
}

NM_CHECK_MAIN(tls_suite)
