// SPDX-License-Identifier: Apache-2.0
/*
 * ca.c - the built-in development CA (ca.h): an ECDSA P-256 root and SPIFFE
 * X.509-SVID leaves, kept as PEM files with private keys mode 0600.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "devca.h"
#include "lib/errbuf.h"
#include "lib/file.h"
#include "lib/pem.h"

#define CA_CERT_FILE "ca.crt"
#define CA_KEY_FILE "ca.key"
#define CA_TD_FILE "trust-domain"
/* Certificates start a little in the past so clocks a few minutes apart
 * across nodes do not reject a freshly issued certificate. */
#define BACKDATE_SECS (5 * 60)

static int join_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Validates a trust domain (and optionally ns/sa) with the SPIFFE parser so
 * that the CA never issues a name the agent would refuse. */
static int check_names(const char *td, const char *ns, const char *sa,
		       const char **why)
{
	struct nm_spiffe_id id;
	char uri[NM_SPIFFE_MAX];
	int n;

	n = snprintf(uri, sizeof(uri), "spiffe://%s/ns/%s/sa/%s", td,
		     ns ? ns : "x", sa ? sa : "x");
	if (n < 0 || (size_t)n >= sizeof(uri)) {
		*why = "name is too long";
		return -EINVAL;
	}
	if (nm_spiffe_parse(uri, &id, why))
		return -EINVAL;
	/* The parse must give back the same parts, not a reinterpretation
	 * (e.g. a '/' inside ns would shift the segments). */
	if (strcmp(id.trust_domain, td) || (ns && strcmp(id.ns, ns)) ||
	    (sa && strcmp(id.sa, sa))) {
		*why = "name has a character outside [a-z0-9._-]";
		return -EINVAL;
	}
	return 0;
}

int nm_ca_new_key(EVP_PKEY **out)
{
	/* The curve's SN, not its NIST alias "P-256": under the agent's
	 * built-in EC methods (mesh/ecmeth.h) OpenSSL 3.0 reads the name
	 * through OBJ_sn2nid(), which knows only "prime256v1". */
	EVP_PKEY *key = EVP_EC_gen(SN_X9_62_prime256v1);

	if (!key)
		return -EIO;
	*out = key;
	return 0;
}

static int set_random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int err = -EIO;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	/* Top bit clear keeps the INTEGER positive; the next one set keeps its
	 * encoding a full 16 bytes. */
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (!bn)
		return -ENOMEM;
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		err = 0;
	BN_free(bn);
	return err;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EIO;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EIO;
}

/* The URI SAN is built by hand: the config-string form splits on commas. */
static int add_uri_san(X509 *cert, const char *uri)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int err = -ENOMEM;

	if (!names || !gn || !ia5)
		goto out;
	if (!ASN1_STRING_set(ia5, uri, (int)strlen(uri)))
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto out;
	gn = NULL;
	err = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0,
				X509V3_ADD_DEFAULT) == 1 ? 0 : -EIO;
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(names);
	return err;
}

static int set_name(X509_NAME *name, const char *org, const char *cn)
{
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
					(const unsigned char *)org, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0))
		return -EIO;
	return 0;
}

/* Version, serial, validity and public key: what every certificate needs. */
static int cert_skeleton(EVP_PKEY *pub, int days, X509 **out)
{
	X509 *x = X509_new();
	int err;

	if (!x)
		return -ENOMEM;
	err = -EIO;
	if (!X509_set_version(x, X509_VERSION_3))
		goto fail;
	err = set_random_serial(x);
	if (err)
		goto fail;
	err = -EIO;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECS) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) ||
	    !X509_set_pubkey(x, pub))
		goto fail;
	*out = x;
	return 0;
fail:
	X509_free(x);
	return err;
}

/* One X.509v3 extension in OpenSSL's config-string form. */
struct cert_ext {
	int nid;
	const char *value;
};

/*
 * Names x "O=nodemesh, CN=<cn>" issued by issuer (x itself for the root),
 * adds exts in order then the URI SAN, and signs x with key. Hands x out,
 * or frees it on failure.
 */
static int finish_cert(X509 *x, X509 *issuer, const char *cn,
		       const struct cert_ext *exts, size_t n_exts,
		       const char *uri, EVP_PKEY *key, X509 **out)
{
	int err = set_name(X509_get_subject_name(x), "nodemesh", cn);

	if (!err && !X509_set_issuer_name(x, X509_get_subject_name(issuer)))
		err = -EIO;
	for (size_t i = 0; !err && i < n_exts; i++)
		err = add_ext(x, issuer, exts[i].nid, exts[i].value);
	if (!err)
		err = add_uri_san(x, uri);
	if (!err && !X509_sign(x, key, EVP_sha256()))
		err = -EIO;
	if (err) {
		X509_free(x);
		return err;
	}
	*out = x;
	return 0;
}

int nm_ca_new_root(EVP_PKEY *key, const char *trust_domain, int days,
		   X509 **out)
{
	/* SKI before AKI: the root's AKI is computed from its own SKI. */
	static const struct cert_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	char uri[NM_SPIFFE_MAX], cn[NM_SPIFFE_MAX];
	const char *why;
	X509 *x = NULL;
	int err;

	if (days < 1 || days > NM_CA_MAX_DAYS ||
	    check_names(trust_domain, NULL, NULL, &why))
		return -EINVAL;
	snprintf(uri, sizeof(uri), "spiffe://%s", trust_domain);
	snprintf(cn, sizeof(cn), "nodemesh CA %s", trust_domain);
	err = cert_skeleton(key, days, &x);
	if (err)
		return err;
	return finish_cert(x, x, cn, exts, sizeof(exts) / sizeof(exts[0]), uri,
			   key, out);
}

int nm_ca_new_leaf(const struct nm_ca *ca, EVP_PKEY *leaf_key,
		   const struct nm_spiffe_id *id, int days, X509 **out)
{
	static const struct cert_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "serverAuth,clientAuth" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	char uri[NM_SPIFFE_MAX], cn[2 * NM_NAME_MAX + 2];
	X509 *x = NULL;
	int err;

	if (days < 1 || days > NM_CA_MAX_DAYS)
		return -EINVAL;
	err = nm_spiffe_format(id, uri, sizeof(uri));
	if (err)
		return err;
	snprintf(cn, sizeof(cn), "%s/%s", id->ns, id->sa);
	err = cert_skeleton(leaf_key, days, &x);
	if (err)
		return err;
	/* A leaf that outlives its CA stops verifying anyway; say so in
	 * its notAfter rather than promise more. */
	if (ASN1_TIME_compare(X509_get0_notAfter(x),
			      X509_get0_notAfter(ca->cert)) > 0 &&
	    !X509_set1_notAfter(x, X509_get0_notAfter(ca->cert))) {
		X509_free(x);
		return -EIO;
	}
	return finish_cert(x, ca->cert, cn, exts, sizeof(exts) / sizeof(exts[0]),
			   uri, ca->key, out);
}

/* --- test certificates ------------------------------------------------ */

static int add_sans(X509 *x, const struct nm_ca_craft *sp)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	int err = -ENOMEM, n = 0;

	if (!names)
		return -ENOMEM;
	for (int t = 0; t < 2; t++) {
		for (int i = 0; i < NM_CA_CRAFT_SANS; i++) {
			const char *v = t ? sp->dns[i] : sp->uri[i];
			int len = t ? 0 : sp->uri_len[i];
			ASN1_IA5STRING *ia5;
			GENERAL_NAME *gn;

			if (!v)
				continue;
			if (!len)
				len = (int)strlen(v);
			ia5 = ASN1_IA5STRING_new();
			gn = GENERAL_NAME_new();
			if (!ia5 || !gn || !ASN1_STRING_set(ia5, v, len)) {
				ASN1_IA5STRING_free(ia5);
				GENERAL_NAME_free(gn);
				goto out;
			}
			GENERAL_NAME_set0_value(gn, t ? GEN_DNS : GEN_URI, ia5);
			if (!sk_GENERAL_NAME_push(names, gn)) {
				GENERAL_NAME_free(gn);
				goto out;
			}
			n++;
		}
	}
	err = 0;
	if (n && X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0,
				   X509V3_ADD_DEFAULT) != 1)
		err = -EIO;
out:
	GENERAL_NAMES_free(names);
	return err;
}

int nm_ca_craft(const struct nm_ca_craft *sp, X509 **out)
{
	const char *ku = sp->key_usage, *eku = sp->ext_key_usage;
	X509 *x = X509_new(), *issuer;
	EVP_PKEY *sign_key;
	int err = -EIO;

	if (!x)
		return -ENOMEM;
	if (!sp->key)
		goto inval;
	issuer = sp->issuer ? sp->issuer : x;
	sign_key = sp->issuer ? sp->issuer_key : sp->key;
	if (!sign_key)
		goto inval;
	if (!ku)
		ku = sp->ca ? "critical,keyCertSign,cRLSign"
			    : "critical,digitalSignature";
	if (!eku)
		eku = sp->ca ? "" : "serverAuth,clientAuth";
	if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x),
			     sp->not_before ? sp->not_before : -BACKDATE_SECS) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x),
			     sp->not_after ? sp->not_after : 86400) ||
	    !X509_set_pubkey(x, sp->key) ||
	    set_name(X509_get_subject_name(x), "nodemesh-test",
		     sp->cn ? sp->cn : "test") ||
	    !X509_set_issuer_name(x, X509_get_subject_name(issuer)))
		goto fail;
	if (!sp->no_basic_constraints &&
	    add_ext(x, issuer, NID_basic_constraints,
		    sp->ca ? "critical,CA:TRUE" : "critical,CA:FALSE"))
		goto fail;
	if ((*ku && add_ext(x, issuer, NID_key_usage, ku)) ||
	    (*eku && add_ext(x, issuer, NID_ext_key_usage, eku)) ||
	    add_ext(x, issuer, NID_subject_key_identifier, "hash") ||
	    (sp->issuer &&
	     add_ext(x, issuer, NID_authority_key_identifier, "keyid:always")))
		goto fail;
	err = add_sans(x, sp);
	if (err)
		goto fail;
	err = -EIO;
	if (!X509_sign(x, sign_key, EVP_sha256()))
		goto fail;
	*out = x;
	return 0;
inval:
	err = -EINVAL;
fail:
	X509_free(x);
	ERR_clear_error();
	return err;
}

/* --- files ------------------------------------------------------------ */

int nm_ca_mkdirs(const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[NM_PATH_MAX];
	struct stat st;
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		nm_set_err(err, errlen, "%s: path is empty or too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST) {
			int e = errno;

			nm_set_err(err, errlen, "%s: cannot create folder: %s", buf,
				   strerror(e));
			return -e;
		}
		if (stat(buf, &st) || !S_ISDIR(st.st_mode)) {
			nm_set_err(err, errlen, "%s: exists and is not a folder",
				   buf);
			return -ENOTDIR;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}

typedef int (*pem_writer)(FILE *f, const void *arg);

/*
 * Writes path through a temporary file in the same folder and renames it
 * into place. mkstemp creates the file 0600, so a key is never readable by
 * others, not even for a moment; fchmod then sets the final mode.
 */
static int atomic_write(const char *path, mode_t mode, pem_writer writer,
			const void *arg, char *err, size_t errlen)
{
	char tmp[NM_PATH_MAX];
	FILE *f = NULL;
	int fd, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >=
	    (int)sizeof(tmp)) {
		nm_set_err(err, errlen, "%s: path is too long", path);
		return -ENAMETOOLONG;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: cannot create: %s", path,
			   strerror(errno));
		return ret;
	}
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		close(fd);
		nm_set_err(err, errlen, "%s: %s", path, strerror(-ret));
		goto fail;
	}
	ret = writer(f, arg);
	if (ret) {
		nm_set_ossl_err(err, errlen, path, "cannot encode PEM");
		goto fail;
	}
	if (fchmod(fd, mode) || fflush(f) || fsync(fd)) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: cannot write: %s", path,
			   strerror(errno));
		goto fail;
	}
	if (fclose(f)) {
		f = NULL;
		ret = -errno;
		nm_set_err(err, errlen, "%s: cannot write: %s", path,
			   strerror(errno));
		goto fail;
	}
	f = NULL;
	if (rename(tmp, path)) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: cannot rename into place: %s", path,
			   strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (f)
		fclose(f);
	unlink(tmp);
	return ret;
}

static int write_key_pem(FILE *f, const void *arg)
{
	EVP_PKEY *key = (EVP_PKEY *)arg;

	return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) ? 0
									: -EIO;
}

struct cert_list {
	X509 *const *certs;
	unsigned int n;
};

static int write_certs_pem(FILE *f, const void *arg)
{
	const struct cert_list *l = arg;

	for (unsigned int i = 0; i < l->n; i++)
		if (!PEM_write_X509(f, l->certs[i]))
			return -EIO;
	return 0;
}

static int write_text(FILE *f, const void *arg)
{
	return fprintf(f, "%s\n", (const char *)arg) < 0 ? -EIO : 0;
}

int nm_ca_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
	return atomic_write(path, 0600, write_key_pem, key, err, errlen);
}

int nm_ca_write_certs(const char *path, X509 *const *certs, unsigned int n,
		      char *err, size_t errlen)
{
	struct cert_list l = { .certs = certs, .n = n };

	return atomic_write(path, 0644, write_certs_pem, &l, err, errlen);
}

int nm_ca_load(const char *dir, struct nm_ca *out, char *err, size_t errlen)
{
	char path[NM_PATH_MAX], line[NM_NAME_MAX + 2];
	struct nm_ca ca = { 0 };
	const char *why;
	char *text = NULL;
	BIO *bio;
	size_t n;
	int ret;

	/* trust-domain */
	if (join_path(path, sizeof(path), dir, CA_TD_FILE))
		goto toolong;
	/* Non-blocking and bounded like every file we read (lib/file.h). */
	ret = nm_file_read(path, 4096, &text, NULL, &why);
	if (ret) {
		nm_set_err(err, errlen, "%s: %s", path,
			   ret == -EINVAL || ret == -EFBIG ? why : strerror(-ret));
		return ret;
	}
	n = strcspn(text, "\r\n");
	snprintf(line, sizeof(line), "%.*s", (int)n, text);
	free(text);
	n = strlen(line); /* an embedded NUL ends it early */
	if (n >= NM_NAME_MAX || check_names(line, NULL, NULL, &why)) {
		nm_set_err(err, errlen, "%s: \"%s\" is not a valid trust domain%s%s",
			   path, line, n >= NM_NAME_MAX ? "" : ": ",
			   n >= NM_NAME_MAX ? "" : why);
		return -EINVAL;
	}
	memcpy(ca.trust_domain, line, n + 1);

	/* ca.crt */
	if (join_path(path, sizeof(path), dir, CA_CERT_FILE))
		goto toolong;
	ret = nm_pem_open(path, &bio, err, errlen);
	if (ret)
		goto fail;
	ca.cert = PEM_read_bio_X509(bio, NULL, nm_pem_no_password, NULL);
	BIO_free(bio);
	if (!ca.cert) {
		nm_set_ossl_err(err, errlen, path, "not a PEM certificate");
		ret = -EINVAL;
		goto fail;
	}
	if (X509_check_ca(ca.cert) != 1) {
		nm_set_err(err, errlen, "%s: not a CA certificate", path);
		ret = -EINVAL;
		goto fail;
	}

	/* ca.key */
	if (join_path(path, sizeof(path), dir, CA_KEY_FILE))
		goto toolong;
	ret = nm_pem_read_key(path, &ca.key, err, errlen);
	if (ret)
		goto fail;
	if (X509_check_private_key(ca.cert, ca.key) != 1) {
		ERR_clear_error();
		nm_set_err(err, errlen, "%s: key does not match %s/%s", path, dir,
			   CA_CERT_FILE);
		ret = -EINVAL;
		goto fail;
	}
	*out = ca;
	return 0;
toolong:
	nm_set_err(err, errlen, "%s: path is too long", dir);
	ret = -ENAMETOOLONG;
fail:
	nm_ca_release(&ca);
	return ret;
}

void nm_ca_release(struct nm_ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	ca->cert = NULL;
	ca->key = NULL;
}

int nm_ca_init(const char *dir, const char *trust_domain, int days, bool force,
	       char *path, size_t pathlen, char *err, size_t errlen)
{
	char key_path[NM_PATH_MAX], cert_path[NM_PATH_MAX], td_path[NM_PATH_MAX];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	const char *why;
	int ret;

	if (check_names(trust_domain, NULL, NULL, &why)) {
		nm_set_err(err, errlen, "trust domain \"%s\": %s", trust_domain,
			   why);
		return -EINVAL;
	}
	if (days < 1 || days > NM_CA_MAX_DAYS) {
		nm_set_err(err, errlen, "days: %d is not within 1..%d", days,
			   NM_CA_MAX_DAYS);
		return -EINVAL;
	}
	if (join_path(key_path, sizeof(key_path), dir, CA_KEY_FILE) ||
	    join_path(cert_path, sizeof(cert_path), dir, CA_CERT_FILE) ||
	    join_path(td_path, sizeof(td_path), dir, CA_TD_FILE)) {
		nm_set_err(err, errlen, "%s: path is too long", dir);
		return -ENAMETOOLONG;
	}
	ret = nm_ca_mkdirs(dir, 0700, err, errlen);
	if (ret)
		return ret;
	if (!force && access(key_path, F_OK) == 0) {
		nm_set_err(err, errlen,
			   "%s: already exists; refusing to replace the CA (use --force)",
			   key_path);
		return -EEXIST;
	}
	ret = nm_ca_new_key(&key);
	if (ret) {
		nm_set_ossl_err(err, errlen, key_path,
				"cannot generate a P-256 key");
		return ret;
	}
	ret = nm_ca_new_root(key, trust_domain, days, &cert);
	if (ret) {
		nm_set_ossl_err(err, errlen, cert_path,
				"cannot build the CA certificate");
		goto out;
	}
	ret = nm_ca_write_key(key_path, key, err, errlen);
	if (!ret)
		ret = nm_ca_write_certs(cert_path, &cert, 1, err, errlen);
	if (!ret)
		ret = atomic_write(td_path, 0644, write_text, trust_domain, err,
				   errlen);
	if (!ret && path)
		snprintf(path, pathlen, "%s", cert_path);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

int nm_ca_issue(const struct nm_ca *ca, const char *out_dir, const char *ns,
		const char *sa, int days, char *path, size_t pathlen,
		char *err, size_t errlen)
{
	char dir[NM_PATH_MAX], file[NM_PATH_MAX + 16];
	struct nm_spiffe_id id = { 0 };
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	const char *why;
	int ret, n;

	if (check_names(ca->trust_domain, ns, NULL, &why)) {
		nm_set_err(err, errlen, "namespace \"%s\": %s", ns, why);
		return -EINVAL;
	}
	if (check_names(ca->trust_domain, ns, sa, &why)) {
		nm_set_err(err, errlen, "service account \"%s\": %s", sa, why);
		return -EINVAL;
	}
	if (days < 1 || days > NM_CA_MAX_DAYS) {
		nm_set_err(err, errlen, "days: %d is not within 1..%d", days,
			   NM_CA_MAX_DAYS);
		return -EINVAL;
	}
	snprintf(id.trust_domain, sizeof(id.trust_domain), "%s", ca->trust_domain);
	snprintf(id.ns, sizeof(id.ns), "%s", ns);
	snprintf(id.sa, sizeof(id.sa), "%s", sa);

	n = snprintf(dir, sizeof(dir), "%s/%s/%s", out_dir, ns, sa);
	if (n < 0 || (size_t)n >= sizeof(dir)) {
		nm_set_err(err, errlen, "%s: path is too long", out_dir);
		return -ENAMETOOLONG;
	}
	ret = nm_ca_mkdirs(dir, 0700, err, errlen);
	if (ret)
		return ret;

	ret = nm_ca_new_key(&key);
	if (ret) {
		nm_set_ossl_err(err, errlen, dir, "cannot generate a P-256 key");
		return ret;
	}
	ret = nm_ca_new_leaf(ca, key, &id, days, &cert);
	if (ret) {
		nm_set_ossl_err(err, errlen, dir, "cannot build the certificate");
		goto out;
	}
	/* Key, then certificate, then bundle, each renamed into place: a
	 * reader racing a reissue may see the new key with the old
	 * certificate for a moment; nm_tls_create() reports that mismatch
	 * naming key.pem, and a retry succeeds. */
	(void)join_path(file, sizeof(file), dir, "key.pem");
	ret = nm_ca_write_key(file, key, err, errlen);
	if (ret)
		goto out;
	(void)join_path(file, sizeof(file), dir, "cert.pem");
	ret = nm_ca_write_certs(file, &cert, 1, err, errlen);
	if (ret)
		goto out;
	(void)join_path(file, sizeof(file), dir, "bundle.pem");
	ret = nm_ca_write_certs(file, (X509 *const *)&ca->cert, 1, err, errlen);
	if (ret)
		goto out;
	if (path)
		snprintf(path, pathlen, "%s", dir);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}
