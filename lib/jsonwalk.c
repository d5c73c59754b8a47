// SPDX-License-Identifier: Apache-2.0
/*
 * jsonwalk.c - the JSON walker (jsonwalk.h): bounded loading, typed field access
 * with JSON paths, key checking, and messages that are safe to print.
 *
 * Input can be anything a fuzzer or a damaged file produces, and messages
 * end up on terminals and in logs: every quoted value goes through
 * nm_jw_show() and every jansson message through sanitize().
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/jsonwalk.h"

#define ERRMSG_MAX 512
/*
 * jansson spends about 200 bytes per object or array and 40 per scalar, so
 * 16 MiB of "{}," would cost over 1 GiB. The largest file the map limits
 * allow (16384 workloads, 4096 services with 16 ports) has ~120k containers
 * and well under 1M values; these bounds keep the worst case near 200 MiB.
 */
#define MAX_CONTAINERS (512u << 10)
#define MAX_VALUES (2u << 20)

/* --- messages ------------------------------------------------------------ */

int nm_jw_fail(struct nm_jw *j, const char *path, const char *fmt, ...)
{
	char msg[ERRMSG_MAX];
	va_list ap;

	if (!j->err || j->errlen == 0)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path && *path)
		snprintf(j->err, j->errlen, "%s: %s: %s", j->name, path, msg);
	else
		snprintf(j->err, j->errlen, "%s: %s", j->name, msg);
	return -EINVAL;
}

int nm_jw_fail_nomem(struct nm_jw *j)
{
	nm_jw_fail(j, NULL, "out of memory");
	return -ENOMEM;
}

const char *nm_jw_show(const char *s, char *buf)
{
	size_t o = 0, i;

	buf[o++] = '"';
	for (i = 0; s[i] && i < NM_JW_SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)snprintf(buf + o, NM_JW_SHOW_BUF - o,
					      "\\x%02x", ch);
		} else {
			buf[o++] = (char)ch;
		}
	}
	buf[o++] = '"';
	if (s[i]) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* jansson's own messages quote the input near the error; make them safe. */
static void sanitize(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in && o + 1 < outlen; in++) {
		unsigned char ch = (unsigned char)*in;

		out[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
	}
	out[o] = '\0';
}

/* --- paths --------------------------------------------------------------- */

/*
 * Keys that look like identifiers ([A-Za-z_][A-Za-z0-9_-]*) print bare
 * (a.b), others quoted (a["x.y/z"]) so the path stays unambiguous.
 */
static bool bare_key(const char *k)
{
	size_t i;

	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') ||
	      k[0] == '_'))
		return false;
	for (i = 0; k[i]; i++) {
		char ch = k[i];

		if (i >= NM_JW_SHOW_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

void nm_jw_path_key(char *dst, const char *parent, const char *key)
{
	char q[NM_JW_SHOW_BUF];

	if (bare_key(key))
		snprintf(dst, NM_JW_PATH_MAX, "%.*s%s%s", NM_JW_PATH_MAX / 2,
			 parent, *parent ? "." : "", key);
	else
		snprintf(dst, NM_JW_PATH_MAX, "%.*s[%s]", NM_JW_PATH_MAX / 2,
			 parent, nm_jw_show(key, q));
}

void nm_jw_path_idx(char *dst, const char *parent, size_t i)
{
	snprintf(dst, NM_JW_PATH_MAX, "%.*s[%zu]", NM_JW_PATH_MAX / 2, parent, i);
}

const char *nm_jw_type_word(json_type t)
{
	switch (t) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number with a fraction or exponent";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a value";
}

const char *nm_jw_type_name(const json_t *v)
{
	return nm_jw_type_word(json_typeof(v));
}

/* --- loading ------------------------------------------------------------- */

/* Count containers and values without parsing, to bound jansson's memory. */
static int check_complexity(struct nm_jw *j, const char *buf, size_t len)
{
	size_t containers = 0, commas = 0, i;
	bool in_str = false;

	for (i = 0; i < len; i++) {
		char ch = buf[i];

		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"')
			in_str = true;
		else if (ch == '{' || ch == '[')
			containers++;
		else if (ch == ',')
			commas++;
	}
	if (containers > MAX_CONTAINERS)
		return nm_jw_fail(j, NULL,
				  "file is too complex (%zu objects and arrays, at most %u)",
				  containers, MAX_CONTAINERS);
	if (commas + 1 > MAX_VALUES)
		return nm_jw_fail(j, NULL, "file is too complex (%zu values, at most %u)",
				  commas + 1, MAX_VALUES);
	return 0;
}

json_t *nm_jw_load(struct nm_jw *j, const char *buf, size_t len,
		   size_t max_len)
{
	json_error_t jerr;
	json_t *root;

	if (!buf)
		buf = "";
	if (len > max_len) {
		nm_jw_fail(j, NULL, "file is too large (%zu bytes, at most %zu MiB)",
			   len, max_len >> 20);
		return NULL;
	}
	if (check_complexity(j, buf, len))
		return NULL;
	/* Duplicate keys are typos or merge accidents; \u0000 stays refused. */
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char text[JSON_ERROR_TEXT_LENGTH];

		sanitize(jerr.text, text, sizeof(text));
		nm_jw_fail(j, NULL, "line %d, column %d: %s", jerr.line,
			   jerr.column, text);
	}
	return root;
}

/* --- keys ---------------------------------------------------------------- */

/* Edit distance, to suggest the field a typo meant. Short strings only. */
static unsigned int edit_distance(const char *a, const char *b)
{
	unsigned int row[NM_JW_SHOW_MAX + 1], i, k;
	size_t la = strlen(a), lb = strlen(b);

	if (la > NM_JW_SHOW_MAX || lb > NM_JW_SHOW_MAX)
		return UINT_MAX;
	for (k = 0; k <= lb; k++)
		row[k] = k;
	for (i = 1; i <= la; i++) {
		unsigned int diag = row[0];

		row[0] = i;
		for (k = 1; k <= lb; k++) {
			unsigned int up = row[k];
			unsigned int best = diag + (a[i - 1] != b[k - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[k - 1] + 1 < best)
				best = row[k - 1] + 1;
			diag = up;
			row[k] = best;
		}
	}
	return row[lb];
}

int nm_jw_check_keys(struct nm_jw *j, const json_t *obj, const char *parent,
		     const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		const char *best = NULL;
		/* suggest only close matches: one edit for short keys, else two */
		unsigned int best_d = strlen(key) <= 4 ? 2 : 3;
		char path[NM_JW_PATH_MAX];
		size_t i;

		(void)v;
		for (i = 0; allowed[i]; i++) {
			if (strcmp(key, allowed[i]) == 0)
				break;
		}
		if (allowed[i])
			continue;
		for (i = 0; allowed[i]; i++) {
			unsigned int d = edit_distance(key, allowed[i]);

			if (d < best_d) {
				best_d = d;
				best = allowed[i];
			}
		}
		nm_jw_path_key(path, parent, key);
		if (best)
			return nm_jw_fail(j, path,
					  "unknown field (did you mean \"%s\"?)", best);
		return nm_jw_fail(j, path, "unknown field");
	}
	return 0;
}

int nm_jw_check_object(struct nm_jw *j, const json_t *v, const char *path,
		       const char *const *allowed)
{
	if (!json_is_object(v))
		return nm_jw_fail(j, path, "expected an object, got %s",
				  nm_jw_type_name(v));
	return nm_jw_check_keys(j, v, path, allowed);
}

/* --- typed fields -------------------------------------------------------- */

int nm_jw_field(struct nm_jw *j, const json_t *obj, const char *parent,
		const char *key, json_type want, bool required,
		struct nm_jw_field *f)
{
	nm_jw_path_key(f->path, parent, key);
	f->v = json_object_get(obj, key);
	if (!f->v)
		return required ? nm_jw_fail(j, f->path, "missing required field") : 0;
	if (json_typeof(f->v) != want)
		return nm_jw_fail(j, f->path, "expected %s, got %s",
				  nm_jw_type_word(want), nm_jw_type_name(f->v));
	return 1;
}

int nm_jw_copy_str(struct nm_jw *j, const char *path, const char *s,
		   char *dst, size_t dstlen)
{
	size_t n = strlen(s);
	char q[NM_JW_SHOW_BUF];

	if (n >= dstlen)
		return nm_jw_fail(j, path, "%s is too long (%zu bytes, at most %zu)",
				  nm_jw_show(s, q), n, dstlen - 1);
	memcpy(dst, s, n + 1);
	return 0;
}

int nm_jw_get_str(struct nm_jw *j, const json_t *obj, const char *parent,
		  const char *key, bool required, char *dst, size_t dstlen,
		  struct nm_jw_field *f)
{
	int ret = nm_jw_field(j, obj, parent, key, JSON_STRING, required, f);

	if (ret <= 0)
		return ret;
	ret = nm_jw_copy_str(j, f->path, json_string_value(f->v), dst, dstlen);
	return ret ? ret : 1;
}

int nm_jw_get_int(struct nm_jw *j, const json_t *obj, const char *parent,
		  const char *key, bool required, long long min, long long max,
		  const char *what, long long *out)
{
	struct nm_jw_field f;
	json_int_t v;
	int ret = nm_jw_field(j, obj, parent, key, JSON_INTEGER, required, &f);

	if (ret <= 0)
		return ret;
	v = json_integer_value(f.v);
	if (v < min || v > max)
		return nm_jw_fail(j, f.path, "%lld is not %s", (long long)v, what);
	*out = v;
	return 1;
}
