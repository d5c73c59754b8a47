/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pem.h - reading the PEM files of the CA (devca.c) and of the TLS
 * credentials (tls.c) the same way: through nm_file_read() (O_NONBLOCK,
 * regular files only, bounded size, so a FIFO in place of a certificate is
 * an immediate error naming it), never prompting for a password, and naming
 * the file and OpenSSL's reason in every error.
 *
 * Private keys readable by group or others (mode & 077) are loaded with a
 * warning, not refused: Kubernetes secret and projected volumes, which the
 * watched certificate directory of DESIGN §6 is made of, write 0644 files
 * by default inside a root-only directory; refusing them would break the
 * ordinary deployment while the directory is what protects the key.
 *
 * Functions return 0 or -errno; those taking err write "FILE: what is wrong"
 * there on failure.
 */
#ifndef NM_PEM_H
#define NM_PEM_H

#include <stddef.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

#define NM_PEM_MAX (1u << 20)     /* certificate chain or bundle file */
#define NM_PEM_KEY_MAX (64u << 10) /* private key file */

/*
 * Reads all of path (a regular file of at most NM_PEM_MAX bytes) into a
 * memory BIO for the PEM readers; BIO_free() it. -EINVAL "not a regular
 * file", -EFBIG, or the open/read errno, with "PATH: reason" in err.
 */
int nm_pem_open(const char *path, BIO **out, char *err, size_t errlen);
/* A pem_password_cb that never prompts: our keys are stored unencrypted. */
int nm_pem_no_password(char *buf, int size, int rwflag, void *u);
/*
 * The private key in path (at most NM_PEM_KEY_MAX bytes), with a warning in
 * the log when group or others may read the file. -EINVAL when it holds no
 * PEM private key (or is not a regular file).
 */
int nm_pem_read_key(const char *path, EVP_PKEY **out, char *err,
		    size_t errlen);
/*
 * The reason of OpenSSL's last error into buf ("" when there is none),
 * draining OpenSSL's error queue. Returns buf.
 */
const char *nm_ossl_reason(char *buf, size_t len);
/* "FILE: what: <OpenSSL's reason>" into err (no ": " part without one). */
void nm_set_ossl_err(char *err, size_t errlen, const char *file,
		     const char *what);

#endif
