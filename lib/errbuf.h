/* SPDX-License-Identifier: Apache-2.0 */
/*
 * errbuf.h - the "char *err, size_t errlen" convention of functions that
 * explain their -errno: one formatter instead of a copy in every module.
 */
#ifndef NM_ERRBUF_H
#define NM_ERRBUF_H

#include <stddef.h>

/* printf into err; does nothing when err is NULL or len is 0. */
void nm_set_err(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
