// SPDX-License-Identifier: Apache-2.0
/*
 * pem.c - PEM file helpers shared by the CA and TLS loaders (pem.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "lib/errbuf.h"
#include "lib/log.h"
#include "lib/pem.h"

int nm_pem_open(const char *path, BIO **out, char *err, size_t errlen)
{
	BIO *bio;

	/* BIO_new_file() fails with errno set by fopen(), or for reasons of
	 * its own with errno left alone: start from 0 to tell them apart. */
	errno = 0;
	bio = BIO_new_file(path, "r");
	if (!bio) {
		int e = errno ? errno : EIO;

		ERR_clear_error();
		nm_set_err(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	*out = bio;
	return 0;
}

int nm_pem_no_password(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

static void warn_if_exposed(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & 077))
		pr_warn("msg=\"private key is readable by group or others\" file=%s mode=%04o",
			path, (unsigned int)(st.st_mode & 07777));
}

int nm_pem_read_key(const char *path, EVP_PKEY **out, char *err,
		    size_t errlen)
{
	EVP_PKEY *key;
	BIO *bio;
	int ret;

	ret = nm_pem_open(path, &bio, err, errlen);
	if (ret)
		return ret;
	warn_if_exposed(path);
	key = PEM_read_bio_PrivateKey(bio, NULL, nm_pem_no_password, NULL);
	BIO_free(bio);
	if (!key) {
		nm_set_ossl_err(err, errlen, path, "not a PEM private key");
		return -EINVAL;
	}
	*out = key;
	return 0;
}

const char *nm_ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	buf[0] = '\0';
	if (e)
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

void nm_set_ossl_err(char *err, size_t errlen, const char *file,
		     const char *what)
{
	char reason[256];

	nm_ossl_reason(reason, sizeof(reason));
	nm_set_err(err, errlen, "%s: %s%s%s", file, what, *reason ? ": " : "",
		   reason);
}
