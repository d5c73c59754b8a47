// SPDX-License-Identifier: Apache-2.0
/*
 * identity.c - SPIFFE IDs of the form spiffe://<td>/ns/<ns>/sa/<sa>
 * (identity.h), their SNI names, and the URI SAN of an X.509-SVID.
 *
 * The parser accepts exactly the IDs nodemesh issues and nothing that merely
 * looks similar: policy compares IDs as strings, so two spellings of one
 * identity (case, percent-encoding, dot segments) must not both get in.
 *
 * Choices beyond the SPIFFE spec, all on the strict side:
 *  - the trust domain is DNS-like: no leading or trailing dot, no empty
 *    label ("a..b"), since it is also the suffix of every SNI name;
 *  - ns and sa are single path segments of [a-z0-9._-], neither "." nor "..";
 *  - each part must fit NM_NAME_MAX - 1 bytes (the storage in the struct).
 * A certificate may carry other SAN types (DNS, IP) next to its one URI SAN;
 * only URI SANs are counted, as the X.509-SVID spec requires exactly one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/x509v3.h>

#include "lib/spiffe.h"

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)
/* The SPIFFE spec caps an ID at 2048 bytes; ours are far shorter. */
#define SPIFFE_URI_MAX 2048

enum part {
	PART_TD,
	PART_NS,
	PART_SA,
};

struct part_msgs {
	const char *empty;
	const char *too_long;
	const char *bad_char;
	const char *dot;
};

static const struct part_msgs msgs[] = {
	[PART_TD] = {
		.empty = "trust domain is empty",
		.too_long = "trust domain is too long",
		.bad_char = "trust domain has a character outside [a-z0-9._-]",
		.dot = "trust domain has an empty label (leading, trailing or double dot)",
	},
	[PART_NS] = {
		.empty = "namespace is empty",
		.too_long = "namespace is too long",
		.bad_char = "namespace has a character outside [a-z0-9._-]",
		.dot = "namespace is a dot segment",
	},
	[PART_SA] = {
		.empty = "service account is empty",
		.too_long = "service account is too long",
		.bad_char = "service account has a character outside [a-z0-9._-]",
		.dot = "service account is a dot segment",
	},
};

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == '-' || c == '_';
}

/* Validates s[0, n) as the given part; 0 or -EINVAL with *why. */
static int check_part(const char *s, size_t n, enum part part, const char **why)
{
	const struct part_msgs *m = &msgs[part];

	if (n == 0) {
		*why = m->empty;
		return -EINVAL;
	}
	if (n >= NM_NAME_MAX) {
		*why = m->too_long;
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!name_char(s[i])) {
			*why = m->bad_char;
			return -EINVAL;
		}
	}
	if (part == PART_TD) {
		if (s[0] == '.' || s[n - 1] == '.' || memmem(s, n, "..", 2)) {
			*why = m->dot;
			return -EINVAL;
		}
	} else if ((n == 1 && s[0] == '.') ||
		   (n == 2 && s[0] == '.' && s[1] == '.')) {
		*why = m->dot;
		return -EINVAL;
	}
	return 0;
}

static int check_id(const struct nm_spiffe_id *id, const char **why)
{
	const char *parts[] = { id->trust_domain, id->ns, id->sa };

	for (int i = PART_TD; i <= PART_SA; i++) {
		size_t n = strnlen(parts[i], NM_NAME_MAX);
		int err = check_part(parts[i], n, (enum part)i, why);

		if (err)
			return err;
	}
	return 0;
}

/*
 * Names the first URI feature we do not accept, for a useful *why; the
 * character checks per part would reject these too, less helpfully.
 */
static const char *forbidden_feature(const char *uri)
{
	for (const char *c = uri; *c; c++) {
		switch (*c) {
		case '?':
			return "query is not allowed";
		case '#':
			return "fragment is not allowed";
		case '%':
			return "percent-encoding is not allowed";
		case '@':
			return "user info is not allowed";
		case ':':
			return "port is not allowed";
		default:
			if (*c >= 'A' && *c <= 'Z')
				return "upper-case letters are not allowed";
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
				return "control, space or non-ASCII character";
		}
	}
	return NULL;
}

/* Copies the next path segment after *p (which points at a '/') into seg. */
static int next_segment(const char **p, const char **seg, size_t *n,
			const char **why)
{
	const char *s = *p, *end;

	if (*s != '/') {
		*why = "path is not /ns/<namespace>/sa/<service-account>";
		return -EINVAL;
	}
	s++;
	end = strchr(s, '/');
	if (!end)
		end = s + strlen(s);
	*seg = s;
	*n = (size_t)(end - s);
	*p = end;
	if (*n == 0) {
		*why = "empty path segment";
		return -EINVAL;
	}
	return 0;
}

/*
 * Reads "/<key>/<value>" at *p: the literal segment key (else *why is
 * no_key), then value, checked as part and copied into dst (NM_NAME_MAX).
 */
static int keyed_part(const char **p, const char *key, enum part part,
		      const char *no_key, char *dst, const char **why)
{
	const char *seg;
	size_t n;
	int err;

	err = next_segment(p, &seg, &n, why);
	if (err)
		return err;
	if (n != strlen(key) || memcmp(seg, key, n) != 0) {
		*why = no_key;
		return -EINVAL;
	}
	err = next_segment(p, &seg, &n, why);
	if (!err)
		err = check_part(seg, n, part, why);
	if (err)
		return err;
	memcpy(dst, seg, n);
	return 0;
}

int nm_spiffe_parse(const char *uri, struct nm_spiffe_id *out,
		    const char **why)
{
	struct nm_spiffe_id id;
	const char *dummy, *p, *slash;
	size_t len;
	int err;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!uri) {
		*why = "no ID";
		return -EINVAL;
	}
	len = strnlen(uri, SPIFFE_URI_MAX + 1);
	if (len > SPIFFE_URI_MAX) {
		*why = "ID is longer than 2048 bytes";
		return -EINVAL;
	}
	if (strncmp(uri, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0) {
		*why = "scheme is not spiffe://";
		return -EINVAL;
	}
	*why = forbidden_feature(uri + SPIFFE_SCHEME_LEN);
	if (*why)
		return -EINVAL;

	memset(&id, 0, sizeof(id));
	p = uri + SPIFFE_SCHEME_LEN;
	slash = strchr(p, '/');
	if (!slash) {
		*why = "ID has no path";
		return -EINVAL;
	}
	err = check_part(p, (size_t)(slash - p), PART_TD, why);
	if (err)
		return err;
	memcpy(id.trust_domain, p, (size_t)(slash - p));

	p = slash;
	err = keyed_part(&p, "ns", PART_NS, "path does not start with /ns/",
			 id.ns, why);
	if (!err)
		err = keyed_part(&p, "sa", PART_SA,
				 "path does not continue with /sa/", id.sa, why);
	if (err)
		return err;
	if (*p != '\0') {
		*why = "path has segments after the service account";
		return -EINVAL;
	}
	if (out)
		*out = id;
	return 0;
}

int nm_spiffe_format(const struct nm_spiffe_id *id, char *buf, size_t len)
{
	const char *why;
	int n;

	if (check_id(id, &why))
		return -EINVAL;
	n = snprintf(buf, len, SPIFFE_SCHEME "%s/ns/%s/sa/%s", id->trust_domain,
		     id->ns, id->sa);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

int nm_spiffe_to_sni(const struct nm_spiffe_id *id, char *buf, size_t len)
{
	const char *why;
	int n;

	if (check_id(id, &why))
		return -EINVAL;
	/* A dot in ns or sa would make "<sa>.<ns>.<td>" ambiguous. */
	if (strchr(id->ns, '.') || strchr(id->sa, '.'))
		return -EINVAL;
	n = snprintf(buf, len, "%s.%s.%s", id->sa, id->ns, id->trust_domain);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * SNI names are compared byte for byte: our own clients send them in lower
 * case, and accepting other spellings would only widen what a name means.
 */
int nm_spiffe_from_sni(const char *sni, const char *trust_domain,
		       struct nm_spiffe_id *out)
{
	struct nm_spiffe_id id;
	const char *why, *dot;
	size_t n, tdn, rest;

	if (!sni || !trust_domain)
		return -EINVAL;
	tdn = strnlen(trust_domain, NM_NAME_MAX);
	if (check_part(trust_domain, tdn, PART_TD, &why))
		return -EINVAL;
	n = strnlen(sni, 3 * NM_NAME_MAX);
	if (n >= 3 * NM_NAME_MAX || n < tdn + 2)
		return -EINVAL;
	rest = n - tdn - 1;
	if (sni[rest] != '.' || memcmp(sni + rest + 1, trust_domain, tdn) != 0)
		return -EINVAL;
	dot = memchr(sni, '.', rest);
	if (!dot || memchr(dot + 1, '.', rest - (size_t)(dot - sni) - 1))
		return -EINVAL;

	memset(&id, 0, sizeof(id));
	if (check_part(sni, (size_t)(dot - sni), PART_SA, &why) ||
	    check_part(dot + 1, rest - (size_t)(dot - sni) - 1, PART_NS, &why))
		return -EINVAL;
	memcpy(id.trust_domain, trust_domain, tdn);
	memcpy(id.sa, sni, (size_t)(dot - sni));
	memcpy(id.ns, dot + 1, rest - (size_t)(dot - sni) - 1);
	if (out)
		*out = id;
	return 0;
}

int nm_x509_spiffe_id(X509 *cert, struct nm_spiffe_id *out, const char **why)
{
	GENERAL_NAMES *names = NULL;
	const ASN1_IA5STRING *uri = NULL;
	char buf[SPIFFE_URI_MAX + 1];
	const char *dummy;
	int crit = -1, n_uri = 0, err = -EINVAL, len;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!cert) {
		*why = "no certificate";
		return -EINVAL;
	}
	names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (!names) {
		if (crit == -1)
			*why = "certificate has no subjectAltName";
		else if (crit == -2)
			*why = "certificate has several subjectAltName extensions";
		else
			*why = "certificate's subjectAltName does not parse";
		return -EINVAL;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type != GEN_URI)
			continue;
		n_uri++;
		uri = gn->d.uniformResourceIdentifier;
	}
	if (n_uri == 0) {
		*why = "certificate has no URI SAN";
		goto out;
	}
	if (n_uri > 1) {
		*why = "certificate has more than one URI SAN";
		goto out;
	}
	len = ASN1_STRING_length(uri);
	if (len < 0 || len > SPIFFE_URI_MAX) {
		*why = "URI SAN is longer than 2048 bytes";
		goto out;
	}
	memcpy(buf, ASN1_STRING_get0_data(uri), (size_t)len);
	buf[len] = '\0';
	/* An embedded NUL would let "spiffe://a/..\0junk" pass as its prefix. */
	if (strlen(buf) != (size_t)len) {
		*why = "URI SAN contains a NUL byte";
		goto out;
	}
	err = nm_spiffe_parse(buf, out, why);
out:
	GENERAL_NAMES_free(names);
	return err;
}

int nm_x509_svid_leaf_check(X509 *cert, const char **why)
{
	const char *dummy;
	uint32_t flags;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!cert) {
		*why = "no certificate";
		return -EPERM;
	}
	/* Also computes the cached extension flags; a certificate whose
	 * extensions do not parse is marked EXFLAG_INVALID. */
	flags = X509_get_extension_flags(cert);
	if (flags & EXFLAG_INVALID) {
		*why = "certificate extensions do not parse";
		return -EPERM;
	}
	if (flags & EXFLAG_CA) {
		*why = "leaf certificate is a CA (basicConstraints cA=TRUE)";
		return -EPERM;
	}
	if ((flags & EXFLAG_KUSAGE) &&
	    (X509_get_key_usage(cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))) {
		*why = "leaf certificate may sign certificates or CRLs (keyUsage keyCertSign/cRLSign)";
		return -EPERM;
	}
	/* Catches the remaining ways OpenSSL would let it act as an issuer
	 * (v1 self-signed, Netscape cert type). */
	if (X509_check_ca(cert) != 0) {
		*why = "leaf certificate is usable as a CA";
		return -EPERM;
	}
	return 0;
}

/* True when the URI (not NUL-terminated) is spiffe://<anything>/<path>. */
static bool uri_has_spiffe_path(const unsigned char *s, int len)
{
	/* Schemes are case-insensitive (RFC 3986 §3.1): "SPIFFE://" is the
	 * same claim, even though nm_spiffe_parse() refuses that spelling. */
	if (len < (int)SPIFFE_SCHEME_LEN ||
	    strncasecmp((const char *)s, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0)
		return false;
	return memchr(s + SPIFFE_SCHEME_LEN, '/',
		      (size_t)len - SPIFFE_SCHEME_LEN) != NULL;
}

int nm_x509_svid_issuer_check(X509 *cert, const char **why)
{
	GENERAL_NAMES *names;
	const char *dummy;
	uint32_t flags;
	int crit = -1, ret = 0;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!cert) {
		*why = "no certificate";
		return -EPERM;
	}
	flags = X509_get_extension_flags(cert);
	if (flags & EXFLAG_INVALID) {
		*why = "issuer certificate extensions do not parse";
		return -EPERM;
	}
	if (!(flags & EXFLAG_CA) || X509_check_ca(cert) != 1) {
		*why = "issuer is not a CA (basicConstraints cA=TRUE missing)";
		return -EPERM;
	}
	names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (!names) {
		/* No SAN: fine for a CA. Several or broken SAN extensions: not. */
		if (crit != -1) {
			*why = "issuer's subjectAltName does not parse";
			return -EPERM;
		}
		return 0;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *u;

		if (gn->type != GEN_URI)
			continue;
		u = gn->d.uniformResourceIdentifier;
		if (uri_has_spiffe_path(ASN1_STRING_get0_data(u),
					ASN1_STRING_length(u))) {
			*why = "issuer carries a workload SPIFFE ID";
			ret = -EPERM;
			break;
		}
	}
	GENERAL_NAMES_free(names);
	return ret;
}

int64_t nm_x509_time_secs(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}
