// SPDX-License-Identifier: Apache-2.0
/* check_identity.c - SPIFFE ID parser, SNI names, URI SAN extraction. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/x509v3.h>

#include "tools/devca.h"
#include "lib/spiffe.h"
#include "nm_check.h"

static void assert_id(const struct nm_spiffe_id *id, const char *td,
		      const char *ns, const char *sa)
{
	ck_assert_str_eq(id->trust_domain, td);
	ck_assert_str_eq(id->ns, ns);
	ck_assert_str_eq(id->sa, sa);
}

START_TEST(test_parse_valid)
{
	struct nm_spiffe_id id;
	const char *why = "unset";

	ck_assert_int_eq(nm_spiffe_parse("spiffe://cluster.local/ns/default/sa/client",
					 &id, &why), 0);
	ck_assert_ptr_null(why);
	assert_id(&id, "cluster.local", "default", "client");
	ck_assert_int_eq(nm_spiffe_parse("spiffe://a/ns/kube-system/sa/my_sa.v2",
					 &id, &why), 0);
	assert_id(&id, "a", "kube-system", "my_sa.v2");
	ck_assert_int_eq(nm_spiffe_parse("spiffe://td-1_x.example/ns/a/sa/b",
					 NULL, NULL), 0);
}
END_TEST

static const struct {
	const char *uri;
	const char *why; /* NULL: any reason */
} bad_ids[] = {
	{ "", "scheme is not spiffe://" },
	{ "SPIFFE://cluster.local/ns/a/sa/b", "scheme is not spiffe://" },
	{ "spiffe:/cluster.local/ns/a/sa/b", "scheme is not spiffe://" },
	{ "https://cluster.local/ns/a/sa/b", "scheme is not spiffe://" },
	{ "spiffe://", "ID has no path" },
	{ "spiffe://cluster.local", "ID has no path" },
	{ "spiffe://cluster.local/", "empty path segment" },
	{ "spiffe:///ns/a/sa/b", "trust domain is empty" },
	{ "spiffe://Cluster.local/ns/a/sa/b", "upper-case letters are not allowed" },
	{ "spiffe://cluster.local/ns/A/sa/b", "upper-case letters are not allowed" },
	{ "spiffe://cluster.local:443/ns/a/sa/b", "port is not allowed" },
	{ "spiffe://user@cluster.local/ns/a/sa/b", "user info is not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/b?x=1", "query is not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/b#frag", "fragment is not allowed" },
	{ "spiffe://cluster.local/ns/a%41/sa/b", "percent-encoding is not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/b/", "path has segments after the service account" },
	{ "spiffe://cluster.local/ns/a/sa/b/c", "path has segments after the service account" },
	{ "spiffe://cluster.local/ns//sa/b", "empty path segment" },
	{ "spiffe://cluster.local/ns/a/sa/", "empty path segment" },
	{ "spiffe://cluster.local//ns/a/sa/b", "empty path segment" },
	{ "spiffe://cluster.local/ns/./sa/b", "namespace is a dot segment" },
	{ "spiffe://cluster.local/ns/a/sa/..", "service account is a dot segment" },
	{ "spiffe://cluster.local/ns/a/xa/b", "path does not continue with /sa/" },
	{ "spiffe://cluster.local/nss/a/sa/b", "path does not start with /ns/" },
	{ "spiffe://cluster.local/sa/b/ns/a", "path does not start with /ns/" },
	{ "spiffe://cluster.local/ns/a", "path is not /ns/<namespace>/sa/<service-account>" },
	{ "spiffe://cluster.local/ns/a/sa", "path is not /ns/<namespace>/sa/<service-account>" },
	{ "spiffe://.cluster.local/ns/a/sa/b", NULL },
	{ "spiffe://cluster..local/ns/a/sa/b", NULL },
	{ "spiffe://cluster.local./ns/a/sa/b", NULL },
	{ "spiffe://clu ster/ns/a/sa/b", "control, space or non-ASCII character" },
	{ "spiffe://cluster.local/ns/a/sa/b\n", "control, space or non-ASCII character" },
	{ "spiffe://cluster.local/ns/caf\xc3\xa9/sa/b", "control, space or non-ASCII character" },
	{ "spiffe://cluster.local/ns/a+b/sa/b", "namespace has a character outside [a-z0-9._-]" },
	{ "spiffe://cluster.local/ns/a/sa/b*", "service account has a character outside [a-z0-9._-]" },
	{ "spiffe://clu$ter/ns/a/sa/b", "trust domain has a character outside [a-z0-9._-]" },
};

START_TEST(test_parse_invalid)
{
	struct nm_spiffe_id id;
	const char *why;

	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		why = NULL;
		ck_assert_msg(nm_spiffe_parse(bad_ids[i].uri, &id, &why) == -EINVAL,
			      "accepted \"%s\"", bad_ids[i].uri);
		ck_assert_msg(why != NULL, "no reason for \"%s\"", bad_ids[i].uri);
		if (bad_ids[i].why)
			ck_assert_msg(strcmp(why, bad_ids[i].why) == 0,
				      "\"%s\": got \"%s\", want \"%s\"",
				      bad_ids[i].uri, why, bad_ids[i].why);
	}
	ck_assert_int_eq(nm_spiffe_parse(NULL, &id, &why), -EINVAL);
}
END_TEST

START_TEST(test_parse_lengths)
{
	char uri[4096], name[NM_NAME_MAX + 1];
	struct nm_spiffe_id id;
	const char *why;

	/* 63 bytes fit, 64 do not. */
	memset(name, 'a', NM_NAME_MAX - 1);
	name[NM_NAME_MAX - 1] = '\0';
	snprintf(uri, sizeof(uri), "spiffe://td/ns/%s/sa/%s", name, name);
	ck_assert_int_eq(nm_spiffe_parse(uri, &id, &why), 0);
	ck_assert_str_eq(id.ns, name);
	memset(name, 'a', NM_NAME_MAX);
	name[NM_NAME_MAX] = '\0';
	snprintf(uri, sizeof(uri), "spiffe://td/ns/%s/sa/b", name);
	ck_assert_int_eq(nm_spiffe_parse(uri, &id, &why), -EINVAL);
	ck_assert_str_eq(why, "namespace is too long");
	snprintf(uri, sizeof(uri), "spiffe://%s/ns/a/sa/b", name);
	ck_assert_int_eq(nm_spiffe_parse(uri, &id, &why), -EINVAL);
	ck_assert_str_eq(why, "trust domain is too long");
	memset(uri, 'a', sizeof(uri) - 1);
	memcpy(uri, "spiffe://", 9);
	uri[sizeof(uri) - 1] = '\0';
	ck_assert_int_eq(nm_spiffe_parse(uri, &id, &why), -EINVAL);
	ck_assert_str_eq(why, "ID is longer than 2048 bytes");
}
END_TEST

START_TEST(test_format)
{
	struct nm_spiffe_id id = { "cluster.local", "default", "client" }, back;
	char buf[NM_SPIFFE_MAX];

	ck_assert_int_eq(nm_spiffe_format(&id, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "spiffe://cluster.local/ns/default/sa/client");
	ck_assert_int_eq(nm_spiffe_parse(buf, &back, NULL), 0);
	assert_id(&back, "cluster.local", "default", "client");
	ck_assert_int_eq(nm_spiffe_format(&id, buf, 20), -ENAMETOOLONG);
	ck_assert_int_eq(nm_spiffe_format(&id, buf, 43), -ENAMETOOLONG);
	ck_assert_int_eq(nm_spiffe_format(&id, buf, 44), 0);

	struct nm_spiffe_id bad = { "cluster.local", "De", "x" };

	ck_assert_int_eq(nm_spiffe_format(&bad, buf, sizeof(buf)), -EINVAL);
	struct nm_spiffe_id empty = { "cluster.local", "", "x" };

	ck_assert_int_eq(nm_spiffe_format(&empty, buf, sizeof(buf)), -EINVAL);
	struct nm_spiffe_id slash = { "cluster.local", "a/b", "x" };

	ck_assert_int_eq(nm_spiffe_format(&slash, buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(test_sni)
{
	struct nm_spiffe_id id = { "cluster.local", "default", "server" }, back;
	char buf[256];

	ck_assert_int_eq(nm_spiffe_to_sni(&id, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "server.default.cluster.local");
	ck_assert_int_eq(nm_spiffe_from_sni(buf, "cluster.local", &back), 0);
	assert_id(&back, "cluster.local", "default", "server");
	ck_assert_int_eq(nm_spiffe_to_sni(&id, buf, 10), -ENAMETOOLONG);
	ck_assert_int_eq(nm_spiffe_to_sni(&id, buf, sizeof(buf)), 0);

	/* Wrong or partial trust domain, wrong shapes. */
	ck_assert_int_eq(nm_spiffe_from_sni(buf, "local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni(buf, "other.local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("server.cluster.local", "cluster.local",
					    &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("a.b.c.cluster.local", "cluster.local",
					    &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni(".default.cluster.local",
					    "cluster.local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("server..cluster.local",
					    "cluster.local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("Server.default.cluster.local",
					    "cluster.local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("server.defaultxcluster.local",
					    "cluster.local", &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni("cluster.local", "cluster.local",
					    &back), -EINVAL);
	ck_assert_int_eq(nm_spiffe_from_sni(NULL, "cluster.local", &back),
			 -EINVAL);

	/* A dot in ns or sa has no unambiguous SNI. */
	struct nm_spiffe_id dotted = { "cluster.local", "default", "sa.v2" };

	ck_assert_int_eq(nm_spiffe_to_sni(&dotted, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* --- certificates ---------------------------------------------------------- */

static struct nm_ca test_ca;

static void ca_setup(void)
{
	ck_assert_int_eq(nm_ca_new_key(&test_ca.key), 0);
	strcpy(test_ca.trust_domain, "cluster.local");
	ck_assert_int_eq(nm_ca_new_root(test_ca.key, "cluster.local", 30,
					&test_ca.cert), 0);
}

static void ca_teardown(void)
{
	nm_ca_release(&test_ca);
}

/* A leaf signed by the test CA with whatever SAN extensions are given. */
static X509 *leaf_with_sans(const char *const *sans, int n_exts)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;

	ck_assert_ptr_nonnull(x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, test_ca.key);
	X509_set_issuer_name(x, X509_get_subject_name(test_ca.cert));
	X509V3_set_ctx(&ctx, test_ca.cert, x, NULL, NULL, 0);
	for (int i = 0; i < n_exts; i++) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx,
							NID_subject_alt_name,
							sans[i]);

		ck_assert_ptr_nonnull(e);
		ck_assert_int_eq(X509_add_ext(x, e, -1), 1);
		X509_EXTENSION_free(e);
	}
	ck_assert_int_gt(X509_sign(x, test_ca.key, EVP_sha256()), 0);
	return x;
}

START_TEST(test_x509_issued_leaf)
{
	struct nm_spiffe_id want = { "cluster.local", "default", "client" }, got;
	EVP_PKEY *key;
	X509 *leaf;
	const char *why;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	ck_assert_int_eq(nm_ca_new_leaf(&test_ca, key, &want, 1, &leaf), 0);
	ck_assert_int_eq(nm_x509_spiffe_id(leaf, &got, &why), 0);
	assert_id(&got, "cluster.local", "default", "client");
	/* The CA itself has URI spiffe://cluster.local, which has no path. */
	ck_assert_int_eq(nm_x509_spiffe_id(test_ca.cert, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "ID has no path");
	X509_free(leaf);
	EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_x509_san_shapes)
{
	struct nm_spiffe_id got;
	const char *why;
	X509 *x;

	const char *one_uri_and_dns[] = {
		"DNS:server.default.svc,URI:spiffe://cluster.local/ns/default/sa/server,IP:198.18.0.1",
	};
	x = leaf_with_sans(one_uri_and_dns, 1);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), 0);
	assert_id(&got, "cluster.local", "default", "server");
	X509_free(x);

	const char *two_uris[] = {
		"URI:spiffe://cluster.local/ns/default/sa/a,URI:spiffe://cluster.local/ns/default/sa/b",
	};
	x = leaf_with_sans(two_uris, 1);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "certificate has more than one URI SAN");
	X509_free(x);

	const char *two_exts[] = {
		"URI:spiffe://cluster.local/ns/default/sa/a",
		"URI:spiffe://cluster.local/ns/default/sa/b",
	};
	x = leaf_with_sans(two_exts, 2);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "certificate has several subjectAltName extensions");
	X509_free(x);

	const char *dns_only[] = { "DNS:server.default.svc" };

	x = leaf_with_sans(dns_only, 1);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "certificate has no URI SAN");
	X509_free(x);

	x = leaf_with_sans(NULL, 0);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "certificate has no subjectAltName");
	X509_free(x);

	const char *not_spiffe[] = { "URI:https://cluster.local/ns/a/sa/b" };

	x = leaf_with_sans(not_spiffe, 1);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "scheme is not spiffe://");
	X509_free(x);

	ck_assert_int_eq(nm_x509_spiffe_id(NULL, &got, &why), -EINVAL);
}
END_TEST

START_TEST(test_x509_uri_with_nul)
{
	static const char raw[] = "spiffe://cluster.local/ns/a/sa/b\0evil";
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	struct nm_spiffe_id got;
	const char *why;
	X509 *x;

	x = leaf_with_sans(NULL, 0);
	ck_assert_int_eq(ASN1_STRING_set(ia5, raw, sizeof(raw) - 1), 1);
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	sk_GENERAL_NAME_push(names, gn);
	ck_assert_int_eq(X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0,
					   X509V3_ADD_DEFAULT), 1);
	GENERAL_NAMES_free(names);
	ck_assert_int_eq(nm_x509_spiffe_id(x, &got, &why), -EINVAL);
	ck_assert_str_eq(why, "URI SAN contains a NUL byte");
	X509_free(x);
}
END_TEST

/* nm_x509_svid_leaf_check / nm_x509_svid_issuer_check over crafted shapes. */
START_TEST(test_x509_leaf_and_issuer_rules)
{
	struct nm_spiffe_id id = { "cluster.local", "default", "client" };
	static const char wl[] = "spiffe://cluster.local/ns/default/sa/client";
	EVP_PKEY *key;
	const char *why;
	X509 *x;

	ck_assert_int_eq(nm_ca_new_key(&key), 0);
	/* What the dev CA issues: a good leaf, never an issuer. */
	ck_assert_int_eq(nm_ca_new_leaf(&test_ca, key, &id, 1, &x), 0);
	ck_assert_int_eq(nm_x509_svid_leaf_check(x, &why), 0);
	ck_assert_int_eq(nm_x509_svid_issuer_check(x, &why), -EPERM);
	ck_assert_str_eq(why, "issuer is not a CA (basicConstraints cA=TRUE missing)");
	X509_free(x);
	/* The dev CA root: an issuer (trust domain ID, no path), never a leaf. */
	ck_assert_int_eq(nm_x509_svid_issuer_check(test_ca.cert, &why), 0);
	ck_assert_int_eq(nm_x509_svid_leaf_check(test_ca.cert, &why), -EPERM);
	ck_assert_str_eq(why, "leaf certificate is a CA (basicConstraints cA=TRUE)");

	struct {
		struct nm_ca_craft sp;
		int leaf, issuer; /* expected results */
		const char *leaf_why, *issuer_why;
	} cases[] = {
		/* CA:TRUE with a workload ID: neither. */
		{ { .ca = true, .uri = { wl } }, -EPERM, -EPERM,
		  "leaf certificate is a CA (basicConstraints cA=TRUE)",
		  "issuer carries a workload SPIFFE ID" },
		/* The same with the scheme in upper case: still a workload. */
		{ { .ca = true, .uri = { "SPIFFE://cluster.local/ns/a/sa/b" } },
		  -EPERM, -EPERM, NULL, "issuer carries a workload SPIFFE ID" },
		/* keyCertSign without basicConstraints. */
		{ { .no_basic_constraints = true,
		    .key_usage = "critical,digitalSignature,keyCertSign",
		    .uri = { wl } }, -EPERM, -EPERM,
		  "leaf certificate may sign certificates or CRLs (keyUsage keyCertSign/cRLSign)",
		  "issuer is not a CA (basicConstraints cA=TRUE missing)" },
		/* cRLSign with CA:FALSE. */
		{ { .key_usage = "critical,digitalSignature,cRLSign",
		    .uri = { wl } }, -EPERM, -EPERM,
		  "leaf certificate may sign certificates or CRLs (keyUsage keyCertSign/cRLSign)",
		  NULL },
		/* No keyUsage at all, CA:FALSE: a leaf. */
		{ { .key_usage = "", .uri = { wl } }, 0, -EPERM, NULL, NULL },
		/* An intermediate without SAN: an issuer. */
		{ { .ca = true }, -EPERM, 0, NULL, NULL },
		/* An intermediate with a DNS SAN only: an issuer. */
		{ { .ca = true, .dns = { "ca.example" } }, -EPERM, 0, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct nm_ca_craft sp = cases[i].sp;

		sp.issuer = test_ca.cert;
		sp.issuer_key = test_ca.key;
		sp.key = key;
		ck_assert_int_eq(nm_ca_craft(&sp, &x), 0);
		why = NULL;
		ck_assert_msg(nm_x509_svid_leaf_check(x, &why) == cases[i].leaf,
			      "case %zu leaf: %s", i, why ? why : "accepted");
		if (cases[i].leaf_why)
			ck_assert_str_eq(why, cases[i].leaf_why);
		why = NULL;
		ck_assert_msg(nm_x509_svid_issuer_check(x, &why) == cases[i].issuer,
			      "case %zu issuer: %s", i, why ? why : "accepted");
		if (cases[i].issuer_why)
			ck_assert_str_eq(why, cases[i].issuer_why);
		X509_free(x);
	}
	ck_assert_int_eq(nm_x509_svid_leaf_check(NULL, &why), -EPERM);
	ck_assert_int_eq(nm_x509_svid_issuer_check(NULL, NULL), -EPERM);
	EVP_PKEY_free(key);
}
END_TEST

static Suite *identity_suite(void)
{
	Suite *s = suite_create("identity");
	TCase *tc = tcase_create("spiffe");
	TCase *tx = tcase_create("x509");

	tcase_add_test(tc, test_parse_valid);
	tcase_add_test(tc, test_parse_invalid);
	tcase_add_test(tc, test_parse_lengths);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_sni);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tx, ca_setup, ca_teardown);
	tcase_add_test(tx, test_x509_issued_leaf);
	tcase_add_test(tx, test_x509_san_shapes);
	tcase_add_test(tx, test_x509_uri_with_nul);
	tcase_add_test(tx, test_x509_leaf_and_issuer_rules);
	suite_add_tcase(s, tx);
	return s;
}

NM_CHECK_MAIN(identity_suite)
