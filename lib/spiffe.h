/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spiffe.h - SPIFFE IDs (spiffe://<trust-domain>/ns/<ns>/sa/<sa>), the SNI
 * names derived from them, and extracting the one URI SAN of a certificate.
 * The parser is strict: exactly that shape, lower-case scheme, trust domain of
 * [a-z0-9.-_], ns and sa of [a-z0-9.-_] (Kubernetes names), no query,
 * fragment, port, user info, percent-encoding, empty or dot segments.
 */
#ifndef NM_IDENTITY_H
#define NM_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#define NM_NAME_MAX 64   /* names, namespaces, service accounts, labels */
#define NM_PATH_MAX 512
#define NM_SPIFFE_MAX 256

struct nm_spiffe_id {
	char trust_domain[NM_NAME_MAX];
	char ns[NM_NAME_MAX];
	char sa[NM_NAME_MAX];
};

/* 0, or -EINVAL with *why (may be NULL) saying what is wrong. */
int nm_spiffe_parse(const char *uri, struct nm_spiffe_id *out, const char **why);
/* Writes "spiffe://td/ns/NS/sa/SA"; 0 or -ENAMETOOLONG / -EINVAL. */
int nm_spiffe_format(const struct nm_spiffe_id *id, char *buf, size_t len);
/*
 * The TLS SNI that asks a server for this identity's certificate:
 * "<sa>.<ns>.<trust-domain>" (ns and sa carry no dots in Kubernetes, so the
 * name splits unambiguously). 0 or -ENAMETOOLONG / -EINVAL.
 */
int nm_spiffe_to_sni(const struct nm_spiffe_id *id, char *buf, size_t len);
int nm_spiffe_from_sni(const char *sni, const char *trust_domain,
		       struct nm_spiffe_id *out);
/*
 * The certificate's SPIFFE ID: it must have exactly one URI SAN and it must
 * parse. 0 or -EINVAL (no URI SAN, several, or malformed) with *why.
 */
int nm_x509_spiffe_id(X509 *cert, struct nm_spiffe_id *out, const char **why);
/*
 * X.509-SVID leaf rules (SPIFFE X.509-SVID §4.3, on the strict side): the
 * certificate a peer authenticates with must not be able to issue. Refused:
 * basicConstraints cA=TRUE, keyUsage keyCertSign or cRLSign, and anything
 * else OpenSSL's X509_check_ca() counts as a CA (v1 self-signed, Netscape CA
 * types). The SPIFFE ID itself is nm_x509_spiffe_id()'s job. 0 or -EPERM
 * with *why.
 */
int nm_x509_svid_leaf_check(X509 *cert, const char **why);

/* A certificate time (notBefore, notAfter) as seconds since the epoch, UTC;
 * 0 when t is NULL or unreadable. */
int64_t nm_x509_time_secs(const ASN1_TIME *t);
/*
 * Rules for every certificate above the leaf in a verified chain (the
 * intermediates and the trust anchor): basicConstraints cA=TRUE (not merely
 * keyCertSign, not v1), and no workload identity: a URI SAN that is a
 * SPIFFE ID with a path (spiffe://td/...) marks a workload, which must
 * never sign another certificate. A trust domain ID without path
 * (spiffe://td, what the development CA carries) is allowed. 0 or -EPERM
 * with *why.
 */
int nm_x509_svid_issuer_check(X509 *cert, const char **why);

#endif
