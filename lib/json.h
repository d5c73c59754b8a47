/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.h - JSON output through jansson for the CLI (and anything else that
 * prints a document): one way to print, compact or indented, always ending
 * in a newline, so every `--json` output is one parseable document.
 */
#ifndef NM_LIB_JSON_H
#define NM_LIB_JSON_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>

/*
 * Writes doc to out (compact, or indented by 2 when pretty) and a newline,
 * then releases doc (NULL is taken as an allocation failure). 0, -ENOMEM or
 * -EIO.
 */
int nm_json_print(FILE *out, json_t *doc, bool pretty);

/* json_string(s), or JSON null for NULL. Never NULL unless out of memory. */
json_t *nm_json_str_or_null(const char *s);

#endif
