/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jsonlines.h - a list of JSON objects from an HTTP answer that is either
 * one document (an array of objects, or an object holding such an array
 * under `key`) or JSON lines (one object per line, blank lines and CR
 * ignored). `nodemesh flows` reads the admin API's /flows with it.
 */
#ifndef NM_LIB_JSONLINES_H
#define NM_LIB_JSONLINES_H

#include <stddef.h>
#include <jansson.h>

/*
 * The objects as a JSON array (new reference), or NULL when buf is
 * neither form (a line that is not an object, an array holding a
 * non-object, stray text after a document).
 */
json_t *nm_json_list_parse(const char *buf, size_t len, const char *key);

#endif
