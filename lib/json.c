// SPDX-License-Identifier: Apache-2.0
/*
 * json.c - JSON document output (json.h).
 */
#include <errno.h>

#include "lib/json.h"

int nm_json_print(FILE *out, json_t *doc, bool pretty)
{
	size_t flags = JSON_PRESERVE_ORDER | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
	int ret = 0;

	if (!doc)
		return -ENOMEM;
	if (json_dumpf(doc, out, flags) || fputc('\n', out) == EOF ||
	    fflush(out))
		ret = -EIO;
	json_decref(doc);
	return ret;
}

json_t *nm_json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}
