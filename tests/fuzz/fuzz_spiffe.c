// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_spiffe.c - libFuzzer target for SPIFFE IDs and the certificate URI
 * SAN (agent/identity.c).
 *
 * The input is tried three ways: as a SPIFFE ID string, as an SNI name, and
 * as a certificate (DER, then PEM) whose URI SAN is extracted. Properties:
 * the parser is canonical (an accepted ID formats back to exactly its input),
 * SNI names round-trip, whatever a certificate yields parses again, and
 * the X.509-SVID leaf and issuer rules never both accept one certificate.
 */
// fuzz-sources: lib/spiffe.c
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/spiffe.h"

#define CHECK(c)                      \
	do {                          \
		if (!(c))             \
			abort();      \
	} while (0)

#define MAX_STR 4096

static void check_id(const struct nm_spiffe_id *id)
{
	struct nm_spiffe_id back;
	char buf[NM_SPIFFE_MAX];

	CHECK(nm_spiffe_format(id, buf, sizeof(buf)) == 0);
	CHECK(nm_spiffe_parse(buf, &back, NULL) == 0);
	CHECK(strcmp(back.trust_domain, id->trust_domain) == 0 &&
	      strcmp(back.ns, id->ns) == 0 && strcmp(back.sa, id->sa) == 0);
	if (nm_spiffe_to_sni(id, buf, sizeof(buf)) == 0) {
		CHECK(nm_spiffe_from_sni(buf, id->trust_domain, &back) == 0);
		CHECK(strcmp(back.ns, id->ns) == 0 && strcmp(back.sa, id->sa) == 0);
	}
}

static void try_cert(X509 *x)
{
	struct nm_spiffe_id id;
	const char *why = NULL;
	bool leaf_ok, issuer_ok;

	if (!x)
		return;
	if (nm_x509_spiffe_id(x, &id, &why) == 0)
		check_id(&id);
	else
		CHECK(why != NULL);
	/* The leaf and issuer rules: a reason on every refusal, and no
	 * certificate passes both (a valid leaf can never issue). */
	why = NULL;
	leaf_ok = nm_x509_svid_leaf_check(x, &why) == 0;
	CHECK(leaf_ok || why != NULL);
	why = NULL;
	issuer_ok = nm_x509_svid_issuer_check(x, &why) == 0;
	CHECK(issuer_ok || why != NULL);
	CHECK(!(leaf_ok && issuer_ok));
	X509_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char str[MAX_STR + 1];
	struct nm_spiffe_id id;
	const unsigned char *p = data;
	const char *why = NULL;
	char buf[NM_SPIFFE_MAX];
	size_t n = size < MAX_STR ? size : MAX_STR;
	BIO *bio;

	memcpy(str, data, n);
	str[n] = '\0';
	if (nm_spiffe_parse(str, &id, &why) == 0) {
		/* Strict means canonical: exactly one spelling per identity. */
		CHECK(nm_spiffe_format(&id, buf, sizeof(buf)) == 0);
		CHECK(strcmp(buf, str) == 0);
		check_id(&id);
	} else {
		CHECK(why != NULL);
	}
	if (nm_spiffe_from_sni(str, "cluster.local", &id) == 0) {
		CHECK(nm_spiffe_to_sni(&id, buf, sizeof(buf)) == 0);
		CHECK(strcmp(buf, str) == 0);
	}

	if (size <= 1 << 16) {
		try_cert(d2i_X509(NULL, &p, (long)size));
		bio = BIO_new_mem_buf(data, (int)size);
		if (bio) {
			try_cert(PEM_read_bio_X509(bio, NULL, NULL, NULL));
			BIO_free(bio);
		}
	}
	return 0;
}
