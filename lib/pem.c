// SPDX-License-Identifier: Apache-2.0
/*
 * pem.c - PEM file helpers shared by the CA and TLS loaders (pem.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "lib/errbuf.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/pem.h"

/*
 * The whole file goes through nm_file_read() (O_NONBLOCK, regular files
 * only, bounded) into a memory BIO: a FIFO or device put in place of a
 * certificate fails at once with the file named, instead of blocking the
 * agent's event loop in open() or read(). The BIO is a secure-memory one so
 * key bytes are wiped when it is freed; our own copy is wiped here.
 */
static int pem_load(const char *path, size_t max, BIO **out, char *err,
		    size_t errlen)
{
	const char *why = NULL;
	char *buf = NULL;
	size_t len = 0;
	BIO *bio;
	int ret;

	ret = nm_file_read(path, max, &buf, &len, &why);
	if (ret) {
		/* Our own reasons where nm_file_read() made the error, the
		 * system's ("No such file or directory") otherwise. */
		if (why && (ret == -EINVAL || ret == -EFBIG || ret == -EAGAIN))
			nm_set_err(err, errlen, "%s: %s", path, why);
		else
			nm_set_err(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = -ENOMEM;
	bio = BIO_new(BIO_s_secmem());
	if (!bio || (len && BIO_write(bio, buf, (int)len) != (int)len)) {
		BIO_free(bio);
		ERR_clear_error();
		nm_set_err(err, errlen, "%s: out of memory", path);
		goto out;
	}
	*out = bio;
	ret = 0;
out:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return ret;
}

int nm_pem_open(const char *path, BIO **out, char *err, size_t errlen)
{
	return pem_load(path, NM_PEM_MAX, out, err, errlen);
}

int nm_pem_no_password(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

/*
 * Warn, not refuse: Kubernetes secret and projected volumes (the layout
 * DESIGN §6 reads) default to mode 0644 inside a directory only root can
 * enter, so refusing would break the normal deployment for no gain.
 */
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

	ret = pem_load(path, NM_PEM_KEY_MAX, &bio, err, errlen);
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
