// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/mesh/tls.c agent/mesh/vcache.c tools/devca.c lib/*.c
/*
 * fuzz_certdir.c - libFuzzer target for the certificate-directory loader's
 * PEM handling (agent/mesh/tls.c: nm_tls_create, nm_tls_reload), through
 * the real files: the input becomes <dir>/default/client/{cert,key,
 * bundle}.pem and the same validation path the watcher uses runs on them.
 *
 * Input: one mode byte, then parts separated by "\n====\n". Bit 0 of the
 * mode: cert.pem comes from the next part, bit 1: key.pem, bit 2:
 * bundle.pem; a file whose bit is clear gets the good content made at
 * start-up (development CA, one day), so one file can be fuzzed alone.
 *
 * Promises checked (abort on a broken one):
 *  - nm_tls_create() either loads exactly one identity, valid now, with a
 *    serial, or fails with an error naming a file under <dir>;
 *  - nm_tls_reload() after the good set never fails (a bad file is
 *    refused, the last good content kept); when create failed it refused
 *    something, and when create succeeded it loaded the same set;
 *  - when the credential files were refused, the identity keeps the good
 *    certificate.
 *
 *   make fuzz && build/tests/fuzz/fuzz_certdir -max_total_time=60 \
 *       tests/fuzz/corpus/certdir
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

#include "lib/log.h"
#include "mesh/tls.h"
#include "tools/devca.h"

#define CHECK(c)                      \
	do {                          \
		if (!(c))             \
			abort();      \
	} while (0)

#define TD "cluster.local"
#define SEP "\n====\n"
static const char *const names[3] = { "cert.pem", "key.pem", "bundle.pem" };

static char dir[64];          /* the cert dir */
static char paths[3][256];    /* its three files */
static char *good[3];         /* their good content */
static size_t good_len[3];
static struct nm_tls *good_set;
static struct nm_tls_cert_info good_info;

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	return remove(path);
}

/* The two folders made at start-up go when the fuzzer exits. */
static void cleanup(void)
{
	char ca_dir[128];

	snprintf(ca_dir, sizeof(ca_dir), "%s-ca", dir);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	nftw(ca_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 16);

	CHECK(f && buf);
	*len = fread(buf, 1, 1 << 16, f);
	fclose(f);
	return buf;
}

static void put(int i, const uint8_t *p, size_t n)
{
	char tmp[300];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
	close(fd);
	CHECK(rename(tmp, paths[i]) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char ca_dir[128], err[512];
	struct nm_ca ca;

	/* Refusals are logged at warn; nothing below that is wanted. */
	nm_log_set_level(NM_LOG_WARN);
	strcpy(dir, "/tmp/nm-fuzz-certdir.XXXXXX");
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(ca_dir, sizeof(ca_dir), "%s-ca", dir);
	CHECK(nm_ca_init(ca_dir, TD, 3650, true, NULL, 0, err, sizeof(err)) == 0);
	CHECK(nm_ca_load(ca_dir, &ca, err, sizeof(err)) == 0);
	CHECK(nm_ca_issue(&ca, dir, "default", "client", 1, NULL, 0, err,
			  sizeof(err)) == 0);
	nm_ca_release(&ca);
	for (int i = 0; i < 3; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/default/client/%s", dir,
			 names[i]);
		good[i] = slurp(paths[i], &good_len[i]);
	}
	CHECK(nm_tls_create(dir, TD, &good_set, err, sizeof(err)) == 0);
	CHECK(nm_tls_cert_info(good_set, 0, &good_info) == 0);
	return 0;
}

static bool same_cert(const struct nm_tls_cert_info *a,
		      const struct nm_tls_cert_info *b)
{
	return !strcmp(a->serial, b->serial) && a->not_after == b->not_after &&
	       a->not_before == b->not_before && !strcmp(a->file, b->file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1, *end = data + size;
	struct nm_tls *t = NULL, *r = NULL;
	struct nm_tls_cert_info ci;
	char err[1024] = "";
	bool cred_fuzzed;
	unsigned int mode;
	int ret;

	if (size < 1 || size > (1 << 16))
		return 0;
	mode = data[0] & 7;
	cred_fuzzed = mode & 3;
	for (int i = 0; i < 3; i++) {
		const uint8_t *q;
		size_t n;

		if (!(mode & (1u << i))) {
			put(i, (const uint8_t *)good[i], good_len[i]);
			continue;
		}
		q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
		n = q ? (size_t)(q - p) : (size_t)(end - p);
		put(i, p, n);
		p = q ? q + strlen(SEP) : end;
	}

	ret = nm_tls_create(dir, TD, &t, err, sizeof(err));
	if (ret == 0) {
		int64_t now = (int64_t)time(NULL);

		CHECK(nm_tls_identity_count(t) == 1);
		CHECK(nm_tls_cert_info(t, 0, &ci) == 0);
		CHECK(ci.serial[0] && ci.not_before <= now && now < ci.not_after);
		CHECK(!strcmp(ci.file, paths[0]));
		CHECK(nm_tls_anchor_count(t) >= 1);
	} else {
		CHECK(t == NULL);
		CHECK(!strncmp(err, dir, strlen(dir)));
	}

	err[0] = '\0';
	CHECK(nm_tls_reload(dir, TD, good_set, &r, err, sizeof(err)) == 0);
	CHECK(nm_tls_identity_count(r) == 1);
	CHECK(nm_tls_generation(r) == 2);
	CHECK(nm_tls_anchor_count(r) >= 1);
	if (t) {
		CHECK(nm_tls_refused_count(r) == 0);
		CHECK(nm_tls_same(t, r));
	} else {
		CHECK(nm_tls_refused_count(r) >= 1);
	}
	CHECK(nm_tls_cert_info(r, 0, &ci) == 0);
	if (!cred_fuzzed)
		CHECK(same_cert(&ci, &good_info));
	nm_tls_free(t);
	nm_tls_free(r);
	ERR_clear_error();
	return 0;
}
