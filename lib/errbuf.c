// SPDX-License-Identifier: Apache-2.0
/*
 * errbuf.c - nm_set_err() (errbuf.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "lib/errbuf.h"

void nm_set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

void nm_vset_err_in(char *err, size_t len, const char *source, const char *fmt,
		    va_list ap)
{
	int n;

	if (!err || len == 0)
		return;
	n = snprintf(err, len, "%s: ", source);
	if (n >= 0 && (size_t)n < len)
		vsnprintf(err + n, len - (size_t)n, fmt, ap);
}
