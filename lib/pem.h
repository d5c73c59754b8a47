/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pem.h - reading the PEM files of the CA (ca.c) and of the TLS credentials
 * (tls.c) the same way: never prompting for a password, warning about keys
 * others can read, and naming the file and OpenSSL's reason in every error.
 *
 * Functions return 0 or -errno; those taking err write "FILE: what is wrong"
 * there on failure.
 */
#ifndef NM_PEM_H
#define NM_PEM_H

#include <stddef.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

/* Opens path for reading. */
int nm_pem_open(const char *path, BIO **out, char *err, size_t errlen);
/* A pem_password_cb that never prompts: our keys are stored unencrypted. */
int nm_pem_no_password(char *buf, int size, int rwflag, void *u);
/*
 * The private key in path, with a warning in the log when group or others
 * may read the file. -EINVAL when it holds no PEM private key.
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
