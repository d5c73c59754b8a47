/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jsonwalk.h - the JSON walker under the cluster-file and policy parsers
 * (shared, so it lives in lib/): a bounded load
 * (size and complexity caps, duplicate keys refused), typed field access
 * that carries the JSON path of what it looks at, key checking with a
 * "did you mean" hint, and messages of the form
 *   FILE: json.path: what is wrong
 * Nothing here knows what a file contains; the parsers above it do.
 */
#ifndef NM_LIB_JSONWALK_H
#define NM_LIB_JSONWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define NM_JW_PATH_MAX 512 /* JSON path of a field, for messages */
#define NM_JW_SHOW_MAX 64  /* bytes of a bad value quoted in a message */
#define NM_JW_SHOW_BUF (NM_JW_SHOW_MAX * 4 + 8)

/* One walk over one document: where messages go and what they name. */
struct nm_jw {
	const char *name; /* file name used in messages */
	char *err;        /* may be NULL */
	size_t errlen;
};

/* A field of an object, fetched with its path so later checks can name it. */
struct nm_jw_field {
	const json_t *v;
	char path[NM_JW_PATH_MAX];
};

/* Writes "NAME: PATH: MSG" (or "NAME: MSG" without a path); -EINVAL. */
int nm_jw_fail(struct nm_jw *j, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "NAME: out of memory"; -ENOMEM. */
int nm_jw_fail_nomem(struct nm_jw *j);

/*
 * Quotes s for a message into buf (NM_JW_SHOW_BUF bytes): printable ASCII as
 * is, anything else as \xNN, cut after NM_JW_SHOW_MAX bytes with "..."
 * after the closing quote. Returns buf.
 */
const char *nm_jw_show(const char *s, char *buf);

/* parent.key (or parent["odd key"]) and parent[i], into NM_JW_PATH_MAX. */
void nm_jw_path_key(char *dst, const char *parent, const char *key);
void nm_jw_path_idx(char *dst, const char *parent, size_t i);

/* "an object", "an integer", ... for "expected X, got Y". */
const char *nm_jw_type_word(json_type t);
const char *nm_jw_type_name(const json_t *v);

/*
 * Parses buf[0, len) after refusing more than max_len bytes and documents
 * whose containers or values would make jansson's tree huge. NULL on error
 * with the message written; syntax errors give line and column.
 */
json_t *nm_jw_load(struct nm_jw *j, const char *buf, size_t len,
		   size_t max_len);

/* Fails at the first key of obj that is not in allowed (NULL-terminated). */
int nm_jw_check_keys(struct nm_jw *j, const json_t *obj, const char *parent,
		     const char *const *allowed);
/* v must be an object with only the allowed keys. */
int nm_jw_check_object(struct nm_jw *j, const json_t *v, const char *path,
		       const char *const *allowed);

/*
 * obj.key into f: 1 when present with type want, 0 when absent and not
 * required, -EINVAL (message written) otherwise. null is not "absent".
 */
int nm_jw_field(struct nm_jw *j, const json_t *obj, const char *parent,
		const char *key, json_type want, bool required,
		struct nm_jw_field *f);

/* Copies s into dst[dstlen] or fails at path: never truncates. */
int nm_jw_copy_str(struct nm_jw *j, const char *path, const char *s,
		   char *dst, size_t dstlen);
/* A string field copied into dst; 1, 0 (absent) or -EINVAL. */
int nm_jw_get_str(struct nm_jw *j, const json_t *obj, const char *parent,
		  const char *key, bool required, char *dst, size_t dstlen,
		  struct nm_jw_field *f);
/*
 * An integer field in [min, max]; 1, 0 (absent, *out untouched) or
 * -EINVAL. what names the range in the message: "%lld is not <what>".
 */
int nm_jw_get_int(struct nm_jw *j, const json_t *obj, const char *parent,
		  const char *key, bool required, long long min, long long max,
		  const char *what, long long *out);

#endif
