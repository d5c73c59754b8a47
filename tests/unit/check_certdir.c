// SPDX-License-Identifier: Apache-2.0
/*
 * check_certdir.c - the watched certificate directory (agent/mesh/certdir.c)
 * and reloading credentials (nm_tls_reload in agent/mesh/tls.c): each kind
 * of bad file refused naming it with the identity's last good credential
 * kept, files replaced by rename and Kubernetes' "..data" symlink swap seen
 * by the watcher within a second, new <ns>/<sa> folders followed, session
 * tickets resuming across a leaf rotation but not across a new trust
 * bundle, the expiry-warning arithmetic.
 *
 * Credentials come from the development CA (tools/devca.c) in a mkdtemp
 * folder, crafted ones (expired, not yet valid) from nm_ca_craft().
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

#include "config/config.h"
#include "lib/spiffe.h"
#include "mesh/certdir.h"
#include "mesh/tls.h"
#include "nm_check.h"
#include "tools/devca.h"

#define TD "cluster.local"

static char base[256];
static char ca1_dir[300], ca2_dir[300];
static pid_t owner;

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void teardown_all(void)
{
	if (base[0] && getpid() == owner) {
		rm_tree(base);
		base[0] = '\0';
	}
}

static void setup_all(void)
{
	char err[512];

	if (base[0])
		return;
	strcpy(base, "/tmp/nm-check-certdir.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	owner = getpid();
	atexit(teardown_all);
	snprintf(ca1_dir, sizeof(ca1_dir), "%s/ca1", base);
	snprintf(ca2_dir, sizeof(ca2_dir), "%s/ca2", base);
	ck_assert_msg(nm_ca_init(ca1_dir, TD, 2, false, NULL, 0, err,
				 sizeof(err)) == 0, "%s", err);
	ck_assert_msg(nm_ca_init(ca2_dir, TD, 2, false, NULL, 0, err,
				 sizeof(err)) == 0, "%s", err);
}

/* A fresh folder under base named name. */
static void fresh(char *dir, size_t len, const char *name)
{
	snprintf(dir, len, "%s/%s", base, name);
	rm_tree(dir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
}

static void issue(const char *ca_dir, const char *out, const char *sa)
{
	char err[512];
	struct nm_ca ca;

	ck_assert_msg(nm_ca_load(ca_dir, &ca, err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(nm_ca_issue(&ca, out, "default", sa, 1, NULL, 0, err,
				  sizeof(err)) == 0, "%s", err);
	nm_ca_release(&ca);
}

static void file_path(char *buf, size_t len, const char *dir, const char *sa,
		      const char *file)
{
	ck_assert_int_lt(snprintf(buf, len, "%s/default/%s/%s", dir, sa, file),
			 (int)len);
}

/* Replaces dir/default/sa/file with bytes, by rename. */
static void put(const char *dir, const char *sa, const char *file,
		const void *bytes, size_t n)
{
	char path[600], tmp[620];
	int fd;

	file_path(path, sizeof(path), dir, sa, file);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, bytes, n), (ssize_t)n);
	close(fd);
	ck_assert_int_eq(rename(tmp, path), 0);
}

static void copy(const char *from, const char *to)
{
	char buf[16384];
	ssize_t n;
	int in = open(from, O_RDONLY), out;

	ck_assert_msg(in >= 0, "%s", from);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_msg(out >= 0, "%s", to);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

/* A leaf for default/sa from CA 1 valid from nb to na (seconds from
 * now), written as dir's cert.pem and key.pem. */
static void put_crafted(const char *dir, const char *sa, long nb, long na)
{
	char uri[128], err[512], path[600];
	struct nm_ca ca;
	struct nm_ca_craft sp = { 0 };
	EVP_PKEY *key = NULL;
	X509 *x = NULL;

	ck_assert_msg(nm_ca_load(ca1_dir, &ca, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/sa/%s", TD, sa);
	sp.issuer = ca.cert;
	sp.issuer_key = ca.key;
	sp.key = key;
	sp.uri[0] = uri;
	sp.not_before = nb;
	sp.not_after = na;
	ck_assert_int_eq(nm_ca_craft(&sp, &x), 0);
	file_path(path, sizeof(path), dir, sa, "key.pem");
	ck_assert_msg(nm_ca_write_key(path, key, err, sizeof(err)) == 0, "%s", err);
	file_path(path, sizeof(path), dir, sa, "cert.pem");
	ck_assert_msg(nm_ca_write_certs(path, &x, 1, err, sizeof(err)) == 0, "%s", err);
	X509_free(x);
	EVP_PKEY_free(key);
	nm_ca_release(&ca);
}

static struct nm_tls *load(const char *dir)
{
	struct nm_tls *t = NULL;
	char err[512] = "";

	ck_assert_msg(nm_tls_create(dir, TD, &t, err, sizeof(err)) == 0, "%s", err);
	return t;
}

/* The serial of ns default / sa in t ("" when absent). */
static const char *serial_of(const struct nm_tls *t, const char *sa)
{
	static char s[NM_TLS_SERIAL_MAX];
	struct nm_tls_cert_info ci;

	s[0] = '\0';
	for (unsigned int i = 0; i < nm_tls_identity_count(t); i++)
		if (!nm_tls_cert_info(t, i, &ci) && !strcmp(ci.id.sa, sa))
			snprintf(s, sizeof(s), "%s", ci.serial);
	return s;
}

/* --- loading ------------------------------------------------------------- */

START_TEST(test_cert_info)
{
	struct nm_tls_cert_info ci;
	char dir[300], want[600];
	struct nm_tls *t;
	int64_t now = (int64_t)time(NULL);

	fresh(dir, sizeof(dir), "info");
	issue(ca1_dir, dir, "client");
	t = load(dir);
	ck_assert_uint_eq(nm_tls_identity_count(t), 1);
	ck_assert_uint_eq(nm_tls_generation(t), 1);
	ck_assert_uint_eq(nm_tls_anchor_count(t), 1);
	ck_assert_int_eq(nm_tls_cert_info(t, 0, &ci), 0);
	ck_assert_int_eq(nm_tls_cert_info(t, 1, &ci), -ENOENT);
	ck_assert_int_eq(nm_tls_cert_info(t, 0, &ci), 0);
	file_path(want, sizeof(want), dir, "client", "cert.pem");
	ck_assert_str_eq(ci.file, want);
	ck_assert_str_eq(ci.id.sa, "client");
	ck_assert_int_ge(strlen(ci.serial), 16);
	/* The CA backdates by 5 minutes; one day of validity. */
	ck_assert_int_le(ci.not_before, now);
	ck_assert_int_gt(ci.not_before, now - 3600);
	ck_assert_int_gt(ci.not_after - now, 86400 - 3600);
	ck_assert_int_le(ci.not_after - now, 86400 + 60);
	nm_tls_free(t);
}
END_TEST

/* Each bad kind: nm_tls_create() fails naming the file; a reload after a
 * good set keeps that identity's credential and takes the others' new
 * ones. */
START_TEST(test_bad_kinds_keep_last_good)
{
	static const char garbage[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
	const char *kinds[] = { "garbage", "fifo", "dangling", "mismatch",
				"expired", "not-yet-valid", "wrong-san",
				"empty" };
	char dir[300], path[600], other[600], err[1024];

	for (unsigned int k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct nm_tls *good, *t = NULL, *t2 = NULL;
		char good_client[NM_TLS_SERIAL_MAX], good_server[NM_TLS_SERIAL_MAX];
		const char *bad_file = "cert.pem";

		fresh(dir, sizeof(dir), "kinds");
		issue(ca1_dir, dir, "client");
		issue(ca1_dir, dir, "server");
		good = load(dir);
		snprintf(good_client, sizeof(good_client), "%s", serial_of(good, "client"));
		snprintf(good_server, sizeof(good_server), "%s", serial_of(good, "server"));
		file_path(path, sizeof(path), dir, "client", "cert.pem");
		if (!strcmp(kinds[k], "garbage")) {
			put(dir, "client", "cert.pem", garbage, sizeof(garbage) - 1);
		} else if (!strcmp(kinds[k], "empty")) {
			put(dir, "client", "cert.pem", "", 0);
		} else if (!strcmp(kinds[k], "fifo")) {
			ck_assert_int_eq(unlink(path), 0);
			ck_assert_int_eq(mkfifo(path, 0600), 0);
		} else if (!strcmp(kinds[k], "dangling")) {
			ck_assert_int_eq(unlink(path), 0);
			ck_assert_int_eq(symlink("..data/cert.pem", path), 0);
		} else if (!strcmp(kinds[k], "mismatch")) {
			/* The server's key beside the client's certificate. */
			file_path(other, sizeof(other), dir, "server", "key.pem");
			file_path(path, sizeof(path), dir, "client", "key.pem");
			copy(other, path);
			bad_file = "key.pem";
		} else if (!strcmp(kinds[k], "expired")) {
			put_crafted(dir, "client", -7200, -60);
		} else if (!strcmp(kinds[k], "not-yet-valid")) {
			put_crafted(dir, "client", 3600, 7200);
		} else if (!strcmp(kinds[k], "wrong-san")) {
			/* The server's credential in the client's folder. */
			file_path(other, sizeof(other), dir, "server", "cert.pem");
			copy(other, path);
			file_path(other, sizeof(other), dir, "server", "key.pem");
			file_path(path, sizeof(path), dir, "client", "key.pem");
			copy(other, path);
		}
		issue(ca1_dir, dir, "server"); /* rotates fine meanwhile */

		err[0] = '\0';
		ck_assert_msg(nm_tls_create(dir, TD, &t, err, sizeof(err)) < 0,
			      "%s: loaded", kinds[k]);
		file_path(path, sizeof(path), dir, "client", bad_file);
		ck_assert_msg(strstr(err, path), "%s: error does not name %s: %s",
			      kinds[k], path, err);

		ck_assert_msg(nm_tls_reload(dir, TD, good, &t2, err, sizeof(err)) == 0,
			      "%s: %s", kinds[k], err);
		ck_assert_uint_eq(nm_tls_identity_count(t2), 2);
		ck_assert_uint_eq(nm_tls_refused_count(t2), 1);
		ck_assert_uint_eq(nm_tls_generation(t2), 2);
		ck_assert_str_eq(serial_of(t2, "client"), good_client);
		ck_assert_str_ne(serial_of(t2, "server"), good_server);
		ck_assert(!nm_tls_same(t2, good));
		nm_tls_free(t2);
		nm_tls_free(good);
	}
}
END_TEST

START_TEST(test_bad_bundle_keeps_last_good)
{
	char dir[300], err[1024];
	struct nm_tls *good, *t = NULL;

	fresh(dir, sizeof(dir), "bundle");
	issue(ca1_dir, dir, "client");
	good = load(dir);
	put(dir, "client", "bundle.pem", "junk\n", 5);
	ck_assert_int_eq(nm_tls_reload(dir, TD, good, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(nm_tls_refused_count(t), 1);
	ck_assert_uint_eq(nm_tls_anchor_count(t), 1);
	ck_assert(nm_tls_same(t, good));
	nm_tls_free(t);
	/* No last good set: the whole load fails, naming the file. */
	ck_assert_int_lt(nm_tls_create(dir, TD, &t, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "bundle.pem"));
	nm_tls_free(good);
}
END_TEST

/* Old and new root side by side, then the new one only. */
START_TEST(test_multi_root_bundle)
{
	char dir[300], a[600], b[600], path[600];
	struct nm_tls *t1, *t2, *t3;
	FILE *f;

	fresh(dir, sizeof(dir), "roots");
	issue(ca1_dir, dir, "client");
	t1 = load(dir);
	snprintf(a, sizeof(a), "%s/ca.crt", ca1_dir);
	snprintf(b, sizeof(b), "%s/ca.crt", ca2_dir);
	file_path(path, sizeof(path), dir, "client", "bundle.pem");
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	copy(a, path);
	{
		char buf[8192];
		int in = open(b, O_RDONLY), out = open(path, O_WRONLY | O_APPEND);
		ssize_t n = read(in, buf, sizeof(buf));

		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	t2 = load(dir);
	ck_assert_uint_eq(nm_tls_anchor_count(t2), 2);
	ck_assert(!nm_tls_same_anchors(t1, t2));
	ck_assert(nm_tls_same_anchors(t2, t2));
	issue(ca2_dir, dir, "client"); /* bundle.pem: CA 2 only */
	t3 = load(dir);
	ck_assert_uint_eq(nm_tls_anchor_count(t3), 1);
	ck_assert(!nm_tls_same_anchors(t1, t3));
	ck_assert(!nm_tls_same_anchors(t2, t3));
	nm_tls_free(t1);
	nm_tls_free(t2);
	nm_tls_free(t3);
}
END_TEST

/* --- resumption across a swap -------------------------------------------- */

struct pair {
	int fd[2];
	SSL *c, *s;
	int c_st, s_st;
};

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

/* Handshake, then one byte server -> client so the client takes in the
 * ticket. Returns whether the client resumed. */
static bool handshake(struct nm_tls *tc, struct nm_tls *ts)
{
	static const struct nm_spiffe_id srv = { TD, "default", "server" };
	struct pair p = { 0 };
	bool reused;
	char c = 0;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p.fd), 0);
	ck_assert_int_eq(nm_tls_client_new(tc, "default", "client", &srv, NULL, p.fd[0], &p.c), 0);
	ck_assert_int_eq(nm_tls_server_new(ts, NULL, NULL, p.fd[1], &p.s), 0);
	for (int i = 0; i < 200 && (!p.c_st || !p.s_st); i++) {
		if (!p.c_st)
			step(p.c, &p.c_st);
		if (!p.s_st)
			step(p.s, &p.s_st);
	}
	ck_assert_int_eq(p.c_st, 1);
	ck_assert_int_eq(p.s_st, 1);
	ck_assert_int_eq(nm_tls_check_peer(p.c, NULL, NULL, NULL), 0);
	ck_assert_int_eq(SSL_write(p.s, "x", 1), 1);
	for (int i = 0; i < 50 && SSL_read(p.c, &c, 1) != 1; i++)
		;
	ck_assert_int_eq(c, 'x');
	reused = SSL_session_reused(p.c);
	SSL_free(p.c);
	SSL_free(p.s);
	close(p.fd[0]);
	close(p.fd[1]);
	ERR_clear_error();
	return reused;
}

START_TEST(test_tickets_across_swaps)
{
	char cdir[300], sdir[300], err[1024], path[600], b[600];
	struct nm_tls *client, *s1, *s2 = NULL, *s3 = NULL;

	fresh(cdir, sizeof(cdir), "tk-client");
	fresh(sdir, sizeof(sdir), "tk-server");
	issue(ca1_dir, cdir, "client");
	issue(ca1_dir, sdir, "server");
	client = load(cdir);
	s1 = load(sdir);
	ck_assert(!handshake(client, s1));
	ck_assert(handshake(client, s1));

	/* New leaf, same anchors: the ticket keys carry over. */
	issue(ca1_dir, sdir, "server");
	ck_assert_int_eq(nm_tls_reload(sdir, TD, s1, &s2, err, sizeof(err)), 0);
	nm_tls_inherit(s2, s1);
	ck_assert(handshake(client, s2));

	/* A second root in the bundle: tickets from before stop resuming. */
	file_path(path, sizeof(path), sdir, "server", "bundle.pem");
	snprintf(b, sizeof(b), "%s/ca.crt", ca2_dir);
	{
		char buf[8192];
		int in = open(b, O_RDONLY), out = open(path, O_WRONLY | O_APPEND);
		ssize_t n = read(in, buf, sizeof(buf));

		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	ck_assert_int_eq(nm_tls_reload(sdir, TD, s2, &s3, err, sizeof(err)), 0);
	ck_assert_uint_eq(nm_tls_anchor_count(s3), 2);
	nm_tls_inherit(s3, s2);
	ck_assert(!handshake(client, s3));
	ck_assert(handshake(client, s3));
	nm_tls_free(client);
	nm_tls_free(s1);
	nm_tls_free(s2);
	nm_tls_free(s3);
}
END_TEST

/* --- the watcher ----------------------------------------------------------- */

/* Waits up to ms for a new set; NULL when none came. *took: ms waited. */
static struct nm_tls *wait_set(struct nm_certdir *w, int ms, int64_t *took)
{
	struct pollfd p = { .fd = nm_certdir_fd(w), .events = POLLIN };
	struct timespec a, b;
	struct nm_tls *t;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (poll(&p, 1, ms) != 1)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (took)
		*took = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	t = nm_certdir_take(w, NULL);
	ck_assert_ptr_nonnull(t);
	return t;
}

static struct nm_certdir *watch(const char *dir, struct nm_tls *cur)
{
	struct nm_certdir_opts o = { .dir = dir, .trust_domain = TD,
				     .current = cur, .expiry_warning = 0 };
	struct nm_certdir *w = NULL;

	ck_assert_int_eq(nm_certdir_start(&o, &w), 0);
	/* The start-up read finds nothing new. */
	ck_assert_ptr_null(wait_set(w, 400, NULL));
	return w;
}

START_TEST(test_watch_rename_and_new_identity)
{
	char dir[300], old[NM_TLS_SERIAL_MAX], bad[600];
	struct nm_tls *t0, *t;
	struct nm_certdir *w;
	int64_t took = 0;

	fresh(dir, sizeof(dir), "watch");
	issue(ca1_dir, dir, "client");
	t0 = load(dir);
	snprintf(old, sizeof(old), "%s", serial_of(t0, "client"));
	w = watch(dir, t0);

	issue(ca1_dir, dir, "client"); /* three renames */
	t = wait_set(w, 2000, &took);
	ck_assert_msg(t, "no new set after a rotation");
	ck_assert_str_ne(serial_of(t, "client"), old);
	ck_assert_uint_eq(nm_tls_generation(t), 2);
	ck_assert_int_lt(took, 1000);
	printf("certdir: rename to new set in %lld ms\n", (long long)took);
	nm_tls_free(t);

	/* A new <ns>/<sa> folder appears. */
	issue(ca1_dir, dir, "server");
	t = wait_set(w, 2000, NULL);
	ck_assert_msg(t, "no new set after a new identity");
	ck_assert_uint_eq(nm_tls_identity_count(t), 2);
	nm_tls_free(t);

	/* A bad file: refused, nothing to swap; fixed: swapped. */
	put(dir, "client", "cert.pem", "garbage", 7);
	ck_assert_ptr_null(wait_set(w, 600, NULL));
	file_path(bad, sizeof(bad), dir, "client", "cert.pem");
	issue(ca1_dir, dir, "client");
	t = wait_set(w, 2000, NULL);
	ck_assert_msg(t, "no new set after the fix");
	nm_tls_free(t);
	nm_certdir_stop(w);
	nm_tls_free(t0);
}
END_TEST

/*
 * Kubernetes' atomic writer: <dir>/..TS/default/<sa>/files, ..data -> ..TS,
 * default -> ..data/default; an update writes ..TS2, points ..data_tmp at
 * it, renames ..data_tmp over ..data and removes ..TS.
 */
static void k8s_write(const char *dir, const char *ts)
{
	char path[600], tmp[600];

	snprintf(path, sizeof(path), "%s/%s", dir, ts);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	issue(ca1_dir, path, "client");
	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
	ck_assert_int_eq(symlink(ts, tmp), 0);
	snprintf(path, sizeof(path), "%s/..data", dir);
	ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(test_watch_k8s_data_swap)
{
	char dir[300], path[600], s1[NM_TLS_SERIAL_MAX];
	struct nm_tls *t0, *t;
	struct nm_certdir *w;
	int64_t took = 0;

	fresh(dir, sizeof(dir), "k8s");
	k8s_write(dir, "..2026_12_02_01");
	snprintf(path, sizeof(path), "%s/default", dir);
	ck_assert_int_eq(symlink("..data/default", path), 0);
	t0 = load(dir);
	snprintf(s1, sizeof(s1), "%s", serial_of(t0, "client"));
	w = watch(dir, t0);

	for (int round = 2; round <= 3; round++) {
		char ts[32], old[600];

		snprintf(ts, sizeof(ts), "..2026_12_02_0%d", round);
		k8s_write(dir, ts);
		snprintf(old, sizeof(old), "%s/..2026_12_02_0%d", dir, round - 1);
		rm_tree(old);
		t = wait_set(w, 2000, &took);
		ck_assert_msg(t, "round %d: no new set after the ..data swap", round);
		ck_assert_str_ne(serial_of(t, "client"), s1);
		snprintf(s1, sizeof(s1), "%s", serial_of(t, "client"));
		ck_assert_int_lt(took, 1000);
		printf("certdir: ..data swap to new set in %lld ms\n", (long long)took);
		nm_tls_free(t);
	}
	nm_certdir_stop(w);
	nm_tls_free(t0);
}
END_TEST

/* certDir removed (the set in force stays), then back with new files. */
START_TEST(test_watch_dir_comes_back)
{
	char dir[300], old[NM_TLS_SERIAL_MAX];
	struct nm_tls *t0, *t;
	struct nm_certdir *w;

	fresh(dir, sizeof(dir), "gone");
	issue(ca1_dir, dir, "client");
	t0 = load(dir);
	snprintf(old, sizeof(old), "%s", serial_of(t0, "client"));
	w = watch(dir, t0);
	rm_tree(dir);
	ck_assert_ptr_null(wait_set(w, 600, NULL));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	issue(ca1_dir, dir, "client");
	t = wait_set(w, 3000, NULL);
	ck_assert_msg(t, "no new set after certDir came back");
	ck_assert_str_ne(serial_of(t, "client"), old);
	nm_tls_free(t);
	nm_certdir_stop(w);
	nm_tls_free(t0);
}
END_TEST

START_TEST(test_warn_threshold)
{
	/* Absent: a day, at most a fifth of the lifetime. */
	ck_assert_int_eq(nm_certdir_warn_threshold(-1, 0, 365 * 86400), 86400);
	ck_assert_int_eq(nm_certdir_warn_threshold(-1, 0, 86400), 86400 / 5);
	ck_assert_int_eq(nm_certdir_warn_threshold(-1, 100, 100), 86400);
	/* Set: as set; 0: never. */
	ck_assert_int_eq(nm_certdir_warn_threshold(7200, 0, 86400), 7200);
	ck_assert_int_eq(nm_certdir_warn_threshold(0, 0, 86400), 0);
	ck_assert_int_eq(nm_certdir_rewarn_interval(86400), 21600);
	ck_assert_int_eq(nm_certdir_rewarn_interval(86400 * 10), 21600);
	ck_assert_int_eq(nm_certdir_rewarn_interval(100), 60);
	ck_assert_int_eq(nm_certdir_rewarn_interval(3600), 900);
}
END_TEST

/* mesh.certExpiryWarning: absent -1 (the default rule), seconds, 0 off;
 * anything else refused naming the field. */
START_TEST(test_config_key)
{
	static const char *const bad[] = { "-5", "\"1h\"", "1.5", "316224001" };
	static const struct { const char *v; long long want; } good[] = {
		{ NULL, -1 }, { "0", 0 }, { "3600", 3600 }, { "316224000", 316224000 },
	};
	struct nm_cluster *c = NULL;
	char buf[256], err[512];

	for (unsigned int i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (good[i].v)
			snprintf(buf, sizeof(buf), "{\"trustDomain\":\"td\",\"certDir\":\"c\",\"mesh\":{\"certExpiryWarning\":%s}}",
				 good[i].v);
		else
			snprintf(buf, sizeof(buf), "{\"trustDomain\":\"td\",\"certDir\":\"c\"}");
		ck_assert_msg(nm_cluster_load_buf(buf, strlen(buf), "t.json", &c, err,
						  sizeof(err)) == 0, "%s: %s", buf, err);
		ck_assert_int_eq(c->mesh.cert_expiry_warning, good[i].want);
		nm_cluster_free(c);
		c = NULL;
	}
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "{\"trustDomain\":\"td\",\"certDir\":\"c\",\"mesh\":{\"certExpiryWarning\":%s}}",
			 bad[i]);
		ck_assert_int_lt(nm_cluster_load_buf(buf, strlen(buf), "t.json", &c,
						     err, sizeof(err)), 0);
		ck_assert_msg(strstr(err, "mesh.certExpiryWarning"), "%s: %s", bad[i], err);
		ck_assert_ptr_null(c);
	}
}
END_TEST

static Suite *certdir_suite(void)
{
	Suite *s = suite_create("certdir");
	TCase *ld = tcase_create("load");
	TCase *wt = tcase_create("watch");

	tcase_add_unchecked_fixture(ld, setup_all, NULL);
	tcase_add_unchecked_fixture(wt, setup_all, NULL);
	tcase_set_timeout(ld, 60);
	tcase_set_timeout(wt, 60);
	tcase_add_test(ld, test_cert_info);
	tcase_add_test(ld, test_bad_kinds_keep_last_good);
	tcase_add_test(ld, test_bad_bundle_keeps_last_good);
	tcase_add_test(ld, test_multi_root_bundle);
	tcase_add_test(ld, test_tickets_across_swaps);
	tcase_add_test(ld, test_warn_threshold);
	tcase_add_test(ld, test_config_key);
	tcase_add_test(wt, test_watch_rename_and_new_identity);
	tcase_add_test(wt, test_watch_k8s_data_swap);
	tcase_add_test(wt, test_watch_dir_comes_back);
	suite_add_tcase(s, ld);
	suite_add_tcase(s, wt);
	return s;
}

NM_CHECK_MAIN(certdir_suite)
