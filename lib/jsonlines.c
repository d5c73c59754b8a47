// SPDX-License-Identifier: Apache-2.0
/* jsonlines.c - one document or JSON lines, as a list (jsonlines.h). */
#include <stdbool.h>
#include <string.h>

#include "lib/jsonlines.h"

static bool all_objects(json_t *arr)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
		if (!json_is_object(v))
			return false;
	return true;
}

static bool blank(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

json_t *nm_json_list_parse(const char *buf, size_t len, const char *key)
{
	const char *p = buf, *end = buf + len;
	json_error_t jerr;
	json_t *doc, *arr;

	/* One document: it must be all there is (JSON lines of one object
	 * also parse as a document, and then are a list of one). */
	doc = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &jerr);
	if (doc && jerr.position >= 0 && (size_t)jerr.position <= len &&
	    blank(buf + jerr.position, len - (size_t)jerr.position)) {
		if (json_is_array(doc) && all_objects(doc))
			return doc;
		arr = key ? json_object_get(doc, key) : NULL;
		if (json_is_array(arr) && all_objects(arr)) {
			json_incref(arr);
			json_decref(doc);
			return arr;
		}
		if (json_is_object(doc) && !arr) {
			arr = json_array();
			json_array_append_new(arr, doc);
			return arr;
		}
		json_decref(doc);
		return NULL;
	}
	json_decref(doc);
	arr = json_array();
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (!blank(p, l)) {
			json_t *o = json_loadb(p, l, 0, &jerr);

			if (!json_is_object(o)) {
				json_decref(o);
				json_decref(arr);
				return NULL;
			}
			json_array_append_new(arr, o);
		}
		p += l + 1;
	}
	return arr;
}
