/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ca.h - the built-in development CA (DESIGN §6) behind `nodemesh ca`.
 *
 * The CA is an ECDSA P-256 self-signed root kept in one folder:
 *   <ca_dir>/ca.crt        root certificate (PEM), URI SAN spiffe://<td>
 *   <ca_dir>/ca.key        its private key (PEM, PKCS#8, mode 0600)
 *   <ca_dir>/trust-domain  the trust domain, one line
 * Leaves are X.509-SVIDs written in the layout nm_tls_create() reads:
 *   <out>/<ns>/<sa>/cert.pem    leaf, exactly one URI SAN
 *                               spiffe://<td>/ns/<ns>/sa/<sa>
 *   <out>/<ns>/<sa>/key.pem     leaf key (mode 0600)
 *   <out>/<ns>/<sa>/bundle.pem  the CA certificate (trust anchor)
 * Folders that hold keys are created mode 0700. Files are written to a
 * temporary name and renamed into place, so a watcher never sees half a file.
 *
 * Functions return 0 or -errno; those taking err write "FILE: what is wrong"
 * there on failure.
 */
#ifndef NM_CA_H
#define NM_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/spiffe.h"

#define NM_CA_DEFAULT_TRUST_DOMAIN "cluster.local"
#define NM_CA_DEFAULT_DAYS 3650     /* root */
#define NM_CA_LEAF_DEFAULT_DAYS 365 /* leaves */
#define NM_CA_MAX_DAYS 36500

struct nm_ca {
	X509 *cert;
	EVP_PKEY *key;
	char trust_domain[NM_NAME_MAX];
};

/* --- in memory ------------------------------------------------------- */

/* A fresh ECDSA P-256 key. 0 or -ENOMEM / -EIO. */
int nm_ca_new_key(EVP_PKEY **out);
/*
 * Self-signed root for trust_domain: basicConstraints critical CA:TRUE,
 * keyUsage critical keyCertSign+cRLSign, SKI, AKI, URI SAN spiffe://<td>.
 * 0 or -EINVAL (bad trust domain or days) / -ENOMEM / -EIO.
 */
int nm_ca_new_root(EVP_PKEY *key, const char *trust_domain, int days,
		   X509 **out);
/*
 * Leaf for id signed by ca: one URI SAN, keyUsage critical digitalSignature,
 * extendedKeyUsage serverAuth+clientAuth, basicConstraints critical CA:FALSE,
 * random 128-bit serial, SKI, AKI. 0 or -EINVAL / -ENOMEM / -EIO.
 */
int nm_ca_new_leaf(const struct nm_ca *ca, EVP_PKEY *leaf_key,
		   const struct nm_spiffe_id *id, int days, X509 **out);

/*
 * Test certificates: anything nm_ca_new_leaf() would never issue (CA leaves,
 * leaf-signed chains, several or odd URI SANs, a NUL inside a SAN, expired),
 * for the unit tests and for `nm_peer mkcert` in the integration tests. Not
 * used by `nodemesh ca`. Always: version 3, random serial, subject
 * "O=nodemesh-test, CN=<cn>", SKI, and AKI when issued by another cert,
 * signed with SHA-256.
 */
#define NM_CA_CRAFT_SANS 4
struct nm_ca_craft {
	X509 *issuer;          /* NULL: self-signed with key */
	EVP_PKEY *issuer_key;  /* the issuer's key (ignored when self-signed) */
	EVP_PKEY *key;         /* the subject's key */
	const char *cn;        /* NULL: "test" */
	/* URI SANs; uri_len[i] 0 means strlen(uri[i]), else that many bytes
	 * (so a NUL can sit inside). */
	const char *uri[NM_CA_CRAFT_SANS];
	int uri_len[NM_CA_CRAFT_SANS];
	const char *dns[NM_CA_CRAFT_SANS];
	bool ca;               /* critical CA:TRUE (else critical CA:FALSE) */
	bool no_basic_constraints;
	/* Config strings ("critical,digitalSignature"); NULL picks the default
	 * for ca (keyCertSign,cRLSign / digitalSignature and serverAuth,
	 * clientAuth), "" leaves the extension out. */
	const char *key_usage;
	const char *ext_key_usage;
	long not_before;       /* seconds from now (default -300) */
	long not_after;        /* seconds from now (0: one day) */
};
/* 0 or -EINVAL / -ENOMEM / -EIO. */
int nm_ca_craft(const struct nm_ca_craft *spec, X509 **out);

/* --- files ------------------------------------------------------------ */

/*
 * Creates the CA in dir (made 0700 if missing). Refuses to replace an
 * existing ca.key unless force. On success, if path is non-NULL, writes the
 * ca.crt path there.
 */
int nm_ca_init(const char *dir, const char *trust_domain, int days, bool force,
	       char *path, size_t pathlen, char *err, size_t errlen);
/* Loads ca.crt, ca.key and trust-domain from dir; release with nm_ca_release. */
int nm_ca_load(const char *dir, struct nm_ca *out, char *err, size_t errlen);
void nm_ca_release(struct nm_ca *ca);
/*
 * Issues ns/sa into out_dir/<ns>/<sa>/ (replacing what is there). On
 * success, if path is non-NULL, writes the credential folder there.
 */
int nm_ca_issue(const struct nm_ca *ca, const char *out_dir, const char *ns,
		const char *sa, int days, char *path, size_t pathlen,
		char *err, size_t errlen);

/* Atomic PEM writers (mode 0600 for keys, 0644 for certificates). */
int nm_ca_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen);
int nm_ca_write_certs(const char *path, X509 *const *certs, unsigned int n,
		      char *err, size_t errlen);
/* mkdir -p with mode for every folder it creates. */
int nm_ca_mkdirs(const char *path, mode_t mode, char *err, size_t errlen);

#endif
