/* SPDX-License-Identifier: Apache-2.0 */
/*
 * errbuf.h - the "char *err, size_t errlen" convention of functions that
 * explain their -errno: one formatter instead of a copy in every module.
 */
#ifndef NM_ERRBUF_H
#define NM_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* printf into err; does nothing when err is NULL or len is 0. */
void nm_set_err(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "<source>: <fmt...>" into err, the shape of every message that names
 * the file it is about. */
void nm_vset_err_in(char *err, size_t len, const char *source, const char *fmt,
		    va_list ap) __attribute__((format(printf, 4, 0)));

#endif
