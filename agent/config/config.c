// SPDX-License-Identifier: Apache-2.0
/*
 * config.c - the standalone cluster file parser (DESIGN §8).
 *
 * jansson builds the tree; the walkers below carry the JSON path of the node
 * they look at, so any error can say which field is wrong:
 *   cluster.json: workloads[1].ip: "198.18.1.300" is not an IPv4 address
 * Parsing is pure: the only system calls are nm_cluster_load_file() reading
 * the file. Nothing is ever truncated to fit a fixed buffer: a value that does
 * not fit is an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "nm_abi.h"

#define CFG_MAX_FILE (16u << 20) /* a cluster file is never near this */
/*
 * jansson spends about 200 bytes per object or array and 40 per scalar, so
 * 16 MiB of "{}," would cost over 1 GiB. The largest file the map limits
 * allow (16384 workloads, 4096 services with 16 ports) has ~120k containers
 * and well under 1M values; these bounds keep the worst case near 200 MiB.
 */
#define CFG_MAX_CONTAINERS (512u << 10)
#define CFG_MAX_VALUES (2u << 20)
#define PATH_BUF 512             /* JSON path of a field, for messages */
#define SHOW_MAX 64              /* bytes of a bad value quoted in a message */
#define SHOW_BUF (SHOW_MAX * 4 + 8)

#define DEFAULT_OUTBOUND_PORT 15001
#define DEFAULT_INBOUND_PORT 15008
#define DEFAULT_ADMIN_PORT 15000

struct parser {
	const char *name;      /* file name used in messages */
	char *err;
	size_t errlen;
	struct nm_cluster *c;
	unsigned int *node_idx; /* node indices sorted by name, for lookups */
};

/* A field of an object, fetched with its path so later checks can name it. */
struct field {
	const json_t *v;
	char path[PATH_BUF];
};

/* --- messages ------------------------------------------------------------ */

static int fail(struct parser *p, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, const char *path, const char *fmt, ...)
{
	char msg[NM_ERRMSG_MAX];
	va_list ap;

	if (!p->err || p->errlen == 0)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path && *path)
		snprintf(p->err, p->errlen, "%s: %s: %s", p->name, path, msg);
	else
		snprintf(p->err, p->errlen, "%s: %s", p->name, msg);
	return -EINVAL;
}

static int fail_nomem(struct parser *p)
{
	fail(p, NULL, "out of memory");
	return -ENOMEM;
}

/*
 * Quote s for a message: printable ASCII as is, anything else as \xNN, at
 * most SHOW_MAX input bytes then "...". Input can be anything the fuzzer
 * dreams up, and the message may end up on a terminal.
 */
static const char *show(const char *s, char *buf)
{
	size_t o = 0, i;

	buf[o++] = '"';
	for (i = 0; s[i] && i < SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)snprintf(buf + o, SHOW_BUF - o, "\\x%02x", ch);
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

		if (i >= SHOW_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static void path_key(char *dst, const char *parent, const char *key)
{
	char q[SHOW_BUF];

	if (bare_key(key))
		snprintf(dst, PATH_BUF, "%.*s%s%s", PATH_BUF / 2, parent,
			 *parent ? "." : "", key);
	else
		snprintf(dst, PATH_BUF, "%.*s[%s]", PATH_BUF / 2, parent,
			 show(key, q));
}

static void path_idx(char *dst, const char *parent, size_t i)
{
	snprintf(dst, PATH_BUF, "%.*s[%zu]", PATH_BUF / 2, parent, i);
}

static const char *type_word(json_type t)
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

static const char *type_name(const json_t *v)
{
	return type_word(json_typeof(v));
}

/* --- name rules ---------------------------------------------------------- */

static bool is_lower_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool is_alnum(char ch)
{
	return is_lower_alnum(ch) || (ch >= 'A' && ch <= 'Z');
}

/* Kubernetes DNS label (RFC 1123): [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63. */
static bool dns_label_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63)
		return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* Kubernetes DNS subdomain: DNS labels joined by '.', <= max. */
static bool dns_subdomain_ok(const char *s, size_t n, size_t max)
{
	size_t start = 0, i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!dns_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Label name part: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, <= 63. */
static bool label_name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63)
		return false;
	if (!is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* Label key: [prefix/]name, prefix a DNS subdomain. */
static bool label_key_ok(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash)
		return label_name_ok(s, strlen(s));
	return dns_subdomain_ok(s, (size_t)(slash - s), 253) &&
	       label_name_ok(slash + 1, strlen(slash + 1));
}

static bool label_value_ok(const char *s)
{
	return *s == '\0' || label_name_ok(s, strlen(s));
}

/*
 * SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' (the SPIFFE
 * spec's set), starting and ending with a letter or digit, no empty part.
 */
static bool trust_domain_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) ||
	    !is_lower_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (!is_lower_alnum(ch) && ch != '.' && ch != '-' && ch != '_')
			return false;
		if (ch == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/*
 * Minimal shape check for spiffe://TD/ns/NS/sa/SA in our trust domain. The
 * full parser lives in identity.c; the config only has to catch mistakes
 * early. Writes what is wrong into why and returns false.
 */
static bool spiffe_ok(const char *s, const char *td, char *why, size_t whylen)
{
	static const char shape[] =
		"is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT";
	const char *d, *slash, *ns, *e, *sa;
	char q[SHOW_BUF];

	if (strncmp(s, "spiffe://", 9) != 0)
		goto bad_shape;
	d = s + 9;
	slash = strchr(d, '/');
	if (!slash || slash == d)
		goto bad_shape;
	if ((size_t)(slash - d) != strlen(td) ||
	    strncmp(d, td, (size_t)(slash - d)) != 0) {
		char tdq[SHOW_BUF], got[SHOW_BUF];
		char tmp[NM_SPIFFE_MAX];
		size_t n = (size_t)(slash - d);

		if (n >= sizeof(tmp))
			n = sizeof(tmp) - 1;
		memcpy(tmp, d, n);
		tmp[n] = '\0';
		snprintf(why, whylen, "%s is in trust domain %s, not %s",
			 show(s, q), show(tmp, got), show(td, tdq));
		return false;
	}
	if (strncmp(slash, "/ns/", 4) != 0)
		goto bad_shape;
	ns = slash + 4;
	e = strchr(ns, '/');
	if (!e || strncmp(e, "/sa/", 4) != 0)
		goto bad_shape;
	sa = e + 4;
	if (!dns_label_ok(ns, (size_t)(e - ns)) || !dns_label_ok(sa, strlen(sa))) {
		snprintf(why, whylen,
			 "%s: namespace and service account must be DNS labels",
			 show(s, q));
		return false;
	}
	return true;

bad_shape:
	snprintf(why, whylen, "%s %s", show(s, q), shape);
	return false;
}

/* --- generic field access ------------------------------------------------ */

/* Edit distance, to suggest the field a typo meant. Short strings only. */
static unsigned int edit_distance(const char *a, const char *b)
{
	unsigned int row[SHOW_MAX + 1], i, j;
	size_t la = strlen(a), lb = strlen(b);

	if (la > SHOW_MAX || lb > SHOW_MAX)
		return UINT_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		unsigned int diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			unsigned int up = row[j];
			unsigned int best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

static int check_keys(struct parser *p, const json_t *obj, const char *parent,
		      const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		const char *best = NULL;
		/* suggest only close matches: one edit for short keys, else two */
		unsigned int best_d = strlen(key) <= 4 ? 2 : 3;
		char path[PATH_BUF];
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
		path_key(path, parent, key);
		if (best)
			return fail(p, path, "unknown field (did you mean \"%s\"?)",
				    best);
		return fail(p, path, "unknown field");
	}
	return 0;
}

/* An array item that must be an object with only the allowed keys. */
static int check_object(struct parser *p, const json_t *v, const char *path,
			const char *const *allowed)
{
	if (!json_is_object(v))
		return fail(p, path, "expected an object, got %s", type_name(v));
	return check_keys(p, v, path, allowed);
}

/* 1 when present with the wanted type, 0 when absent and optional. */
static int field_get(struct parser *p, const json_t *obj, const char *parent,
		     const char *key, json_type want, bool required,
		     struct field *f)
{
	path_key(f->path, parent, key);
	f->v = json_object_get(obj, key);
	if (!f->v)
		return required ? fail(p, f->path, "missing required field") : 0;
	if (json_typeof(f->v) != want)
		return fail(p, f->path, "expected %s, got %s", type_word(want),
			    type_name(f->v));
	return 1;
}

static int copy_str(struct parser *p, const char *path, const char *s,
		    char *dst, size_t dstlen)
{
	size_t n = strlen(s);
	char q[SHOW_BUF];

	if (n >= dstlen)
		return fail(p, path, "%s is too long (%zu bytes, at most %zu)",
			    show(s, q), n, dstlen - 1);
	memcpy(dst, s, n + 1);
	return 0;
}

static int get_str(struct parser *p, const json_t *obj, const char *parent,
		   const char *key, bool required, char *dst, size_t dstlen,
		   struct field *f)
{
	int ret = field_get(p, obj, parent, key, JSON_STRING, required, f);

	if (ret <= 0)
		return ret;
	ret = copy_str(p, f->path, json_string_value(f->v), dst, dstlen);
	return ret ? ret : 1;
}

/* A DNS-label name (namespace, service account, workload, service...). */
static int get_name(struct parser *p, const json_t *obj, const char *parent,
		    const char *key, char *dst)
{
	struct field f;
	char q[SHOW_BUF];
	int ret = get_str(p, obj, parent, key, true, dst, NM_NAME_MAX, &f);

	if (ret < 0)
		return ret;
	if (!dns_label_ok(dst, strlen(dst)))
		return fail(p, f.path,
			    "%s is not a valid name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63)",
			    show(dst, q));
	return 0;
}

static int get_port(struct parser *p, const json_t *obj, const char *parent,
		    const char *key, bool required, uint16_t *out)
{
	struct field f;
	json_int_t v;
	int ret = field_get(p, obj, parent, key, JSON_INTEGER, required, &f);

	if (ret <= 0)
		return ret;
	v = json_integer_value(f.v);
	if (v < 1 || v > 65535)
		return fail(p, f.path, "%lld is not a port number (1..65535)",
			    (long long)v);
	*out = (uint16_t)v;
	return 1;
}

static bool ip_is_zero(const struct nm_addr *ip, size_t from)
{
	size_t i;

	for (i = from; i < sizeof(ip->a); i++)
		if (ip->a[i])
			return false;
	return true;
}

/* Addresses a node, pod or VIP can never have. NULL when usable. */
static const char *ip_unusable(const struct nm_addr *ip)
{
	if (nm_addr_is_v4(ip)) {
		if (ip_is_zero(ip, 12))
			return "the unspecified address";
		if ((ip->a[12] & 0xf0) == 0xe0)
			return "a multicast address";
		if (ip->a[12] == 255 && ip->a[13] == 255 && ip->a[14] == 255 &&
		    ip->a[15] == 255)
			return "the broadcast address";
		return NULL;
	}
	if (ip_is_zero(ip, 0))
		return "the unspecified address";
	if (ip->a[0] == 0xff)
		return "a multicast address";
	return NULL;
}

/* "ip" fields take IPv4 text only, "ip6" fields real (non-mapped) IPv6. */
static int get_ip(struct parser *p, const json_t *obj, const char *parent,
		  const char *key, bool want_v6, bool required,
		  struct nm_addr *out)
{
	struct field f;
	char q[SHOW_BUF];
	const char *s, *why;
	bool v6;
	int ret = field_get(p, obj, parent, key, JSON_STRING, required, &f);

	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (nm_addr_parse(s, out, &v6) || v6 != want_v6 ||
	    (want_v6 && nm_addr_is_v4(out)))
		return fail(p, f.path, "%s is not an %s address", show(s, q),
			    want_v6 ? "IPv6" : "IPv4");
	why = ip_unusable(out);
	if (why)
		return fail(p, f.path, "%s cannot be used here (%s)",
			    show(s, q), why);
	return 1;
}

/* A required IPv4 field and its optional IPv6 twin "<key>6". 0 or -errno. */
static int get_ip_pair(struct parser *p, const json_t *obj, const char *parent,
		       const char *key, struct nm_addr *ip, struct nm_addr *ip6,
		       bool *has_ip6)
{
	char key6[SHOW_MAX];
	int ret;

	if (get_ip(p, obj, parent, key, false, true, ip) < 0)
		return -EINVAL;
	snprintf(key6, sizeof(key6), "%s6", key);
	ret = get_ip(p, obj, parent, key6, true, false, ip6);
	if (ret < 0)
		return ret;
	*has_ip6 = ret == 1;
	return 0;
}

/* cgroup paths stay as written; only catch what can never be right. */
static int get_cgroup(struct parser *p, const json_t *obj, const char *parent,
		      const char *key, char *dst)
{
	struct field f;
	char q[SHOW_BUF];
	const char *s;
	int ret = get_str(p, obj, parent, key, false, dst, NM_PATH_MAX, &f);

	if (ret <= 0)
		return ret;
	if (!*dst)
		return fail(p, f.path, "must not be empty (leave the field out instead)");
	for (s = dst; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return fail(p, f.path, "%s contains a control character",
				    show(dst, q));
	}
	/* ".." would let a path climb out of the cgroup v2 mount. */
	for (s = dst; *s;) {
		size_t n = strcspn(s, "/");

		if (n == 2 && s[0] == '.' && s[1] == '.')
			return fail(p, f.path, "%s must not contain \"..\"",
				    show(dst, q));
		s += n;
		if (*s == '/')
			s++;
	}
	return 1;
}

static int get_labels(struct parser *p, const json_t *obj, const char *parent,
		      const char *key, bool required, struct nm_label *labels,
		      unsigned int *n)
{
	struct field f;
	const char *k;
	json_t *v;
	size_t size;
	int ret = field_get(p, obj, parent, key, JSON_OBJECT, required, &f);

	*n = 0;
	if (ret <= 0)
		return ret;
	size = json_object_size(f.v);
	if (size > NM_MAX_LABELS)
		return fail(p, f.path, "too many labels (%zu, at most %d)",
			    size, NM_MAX_LABELS);
	if (required && size == 0)
		return fail(p, f.path, "must name at least one label");
	json_object_foreach((json_t *)f.v, k, v) {
		struct nm_label *l = &labels[*n];
		char path[PATH_BUF], q[SHOW_BUF];
		const char *val;

		path_key(path, f.path, k);
		if (!json_is_string(v))
			return fail(p, path, "expected a string, got %s",
				    type_name(v));
		if (strlen(k) >= sizeof(l->key))
			return fail(p, path, "label key %s is too long (%zu bytes, at most %zu)",
				    show(k, q), strlen(k), sizeof(l->key) - 1);
		if (!label_key_ok(k))
			return fail(p, path,
				    "%s is not a valid label key ([prefix/]name; name is letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
				    show(k, q));
		val = json_string_value(v);
		ret = copy_str(p, path, val, l->value, sizeof(l->value));
		if (ret)
			return ret;
		if (!label_value_ok(val))
			return fail(p, path,
				    "%s is not a valid label value (empty, or letters, digits, '-', '_', '.', starting and ending with a letter or digit)",
				    show(val, q));
		memcpy(l->key, k, strlen(k) + 1);
		(*n)++;
	}
	return 1;
}

/* Room for one more element of size sz in *arr; keeps *arr valid on error. */
static int grow(void **arr, unsigned int n, unsigned int *cap, size_t sz)
{
	unsigned int ncap;
	void *na;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 4;
	na = realloc(*arr, (size_t)ncap * sz);
	if (!na)
		return -ENOMEM;
	*arr = na;
	*cap = ncap;
	return 0;
}

/* --- duplicate detection ------------------------------------------------- */

/*
 * Sort item indices by key (ties by index) so duplicates sit side by side:
 * O(n log n) even for the largest file we accept.
 */
typedef int (*item_cmp)(const void *ctx, unsigned int a, unsigned int b);

struct sort_ctx {
	item_cmp cmp;
	const void *ctx;
};

static int sort_cmp(const void *a, const void *b, void *arg)
{
	const struct sort_ctx *sc = arg;
	unsigned int ia = *(const unsigned int *)a, ib = *(const unsigned int *)b;
	int r = sc->cmp(sc->ctx, ia, ib);

	if (r)
		return r;
	return ia < ib ? -1 : ia > ib;
}

static unsigned int *sort_items(unsigned int n, item_cmp cmp, const void *ctx)
{
	struct sort_ctx sc = { .cmp = cmp, .ctx = ctx };
	unsigned int *idx = malloc((n ? n : 1) * sizeof(*idx));
	unsigned int i;

	if (!idx)
		return NULL;
	for (i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), sort_cmp, &sc);
	return idx;
}

/*
 * The first item in file order that repeats an earlier one: in each run of
 * equal keys the second entry repeats the first; take the earliest such.
 */
static bool first_dup(const unsigned int *idx, unsigned int n, item_cmp cmp,
		      const void *ctx, unsigned int *dup, unsigned int *orig)
{
	bool found = false;
	unsigned int i;

	for (i = 1; i < n; i++) {
		if (cmp(ctx, idx[i - 1], idx[i]) != 0)
			continue;
		if (i >= 2 && cmp(ctx, idx[i - 2], idx[i]) == 0)
			continue; /* third or later of a run */
		if (!found || idx[i] < *dup) {
			*dup = idx[i];
			*orig = idx[i - 1];
			found = true;
		}
	}
	return found;
}

/* Sorts, reports the first duplicate in *dup and *orig; 1, 0 or -ENOMEM. */
static int find_dup(unsigned int n, item_cmp cmp, const void *ctx,
		    unsigned int **sorted, unsigned int *dup, unsigned int *orig)
{
	unsigned int *idx = sort_items(n, cmp, ctx);
	bool found;

	if (!idx)
		return -ENOMEM;
	found = first_dup(idx, n, cmp, ctx, dup, orig);
	if (sorted)
		*sorted = idx;
	else
		free(idx);
	return found;
}

/* The keys of each section's items; ctx is the section's array. */
static int node_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_node *n = ctx;

	return strcmp(n[a].name, n[b].name);
}

static int workload_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_workload_cfg *w = ctx;
	int r = strcmp(w[a].ns, w[b].ns);

	return r ? r : strcmp(w[a].name, w[b].name);
}

static int service_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_service_cfg *s = ctx;
	int r = strcmp(s[a].ns, s[b].ns);

	return r ? r : strcmp(s[a].name, s[b].name);
}

static int forward_name_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_forward_cfg *f = ctx;

	return strcmp(f[a].name, f[b].name);
}

static int sockaddr_cmp(const struct sockaddr_storage *a,
			const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return a->ss_family < b->ss_family ? -1 : 1;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		int r = memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr));

		return r ? r : memcmp(&x->sin_port, &y->sin_port, 2);
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		int r = memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));

		return r ? r : memcmp(&x->sin6_port, &y->sin6_port, 2);
	}
}

static int forward_listen_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct nm_forward_cfg *f = ctx;

	return sockaddr_cmp(&f[a].listen, &f[b].listen);
}

/* Count containers and values without parsing, to bound jansson's memory. */
static int check_complexity(struct parser *p, const char *buf, size_t len)
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
	if (containers > CFG_MAX_CONTAINERS)
		return fail(p, NULL, "file is too complex (%zu objects and arrays, at most %u)",
			    containers, CFG_MAX_CONTAINERS);
	if (commas + 1 > CFG_MAX_VALUES)
		return fail(p, NULL, "file is too complex (%zu values, at most %u)",
			    commas + 1, CFG_MAX_VALUES);
	return 0;
}

/* --- sections ------------------------------------------------------------ */

/* A field no two items of a section may share. */
struct unique_key {
	const char *field; /* its JSON key, named as <key>[i].<field> */
	item_cmp cmp;      /* compares two items of the section's array */
	/* How a message shows the value: as "<namespace>/<value>" (names
	 * unique per namespace), quoted with show() (free-form), or as is. */
	bool in_ns, quote;
};

/* A top-level array of objects: nodes, workloads, services, forwards. */
struct section {
	const char *key;
	unsigned int max; /* most items accepted, 0 for no limit */
	size_t size;      /* bytes of one item */
	/* Fills the zeroed item from v; 0 or -errno. */
	int (*parse)(struct parser *p, const json_t *v, const char *path,
		     void *item);
	struct unique_key unique[2]; /* checked in order, up to a NULL field */
};

/*
 * Fails at <key>[dup].<field> when two of the n items of arr compare equal,
 * naming the earlier one; the value is quoted as written in items (the JSON
 * array). *sorted, when given, receives the sorted index.
 */
static int check_unique(struct parser *p, const struct section *s,
			const struct unique_key *u, const void *arr,
			unsigned int n, const json_t *items,
			unsigned int **sorted)
{
	char path[PATH_BUF], q[SHOW_BUF];
	const json_t *item;
	unsigned int dup, orig;
	const char *v;
	int ret = find_dup(n, u->cmp, arr, sorted, &dup, &orig);

	if (ret < 0)
		return fail_nomem(p);
	if (ret == 0)
		return 0;
	item = json_array_get(items, dup);
	v = json_string_value(json_object_get(item, u->field));
	if (u->in_ns) {
		snprintf(q, sizeof(q), "%s/%s",
			 json_string_value(json_object_get(item, "namespace")), v);
		v = q;
	} else if (u->quote) {
		v = show(v, q);
	}
	snprintf(path, sizeof(path), "%s[%u].%s", s->key, dup, u->field);
	return fail(p, path, "%s is already used by %s[%u]", v, s->key, orig);
}

/*
 * Parses the optional array root.<key> into *arr and *n, then checks its
 * unique keys; the index sorted by the first one goes to *sorted when
 * given. *arr grows one item at a time: a file that fails halfway costs
 * only what it got through, and *arr stays valid for the caller to keep
 * (and free) whatever happens.
 */
static int parse_section(struct parser *p, const json_t *root,
			 const struct section *s, void **arr, unsigned int *n,
			 unsigned int **sorted)
{
	unsigned int cap = 0;
	struct field f;
	size_t i, len;
	int ret;

	ret = field_get(p, root, "", s->key, JSON_ARRAY, false, &f);
	if (ret < 0)
		return ret;
	len = ret ? json_array_size(f.v) : 0;
	if (s->max && len > s->max)
		return fail(p, f.path, "too many %s (%zu, at most %u)", s->key,
			    len, s->max);
	for (i = 0; i < len; i++) {
		char path[PATH_BUF];
		char *item;

		if (grow(arr, *n, &cap, s->size))
			return fail_nomem(p);
		item = (char *)*arr + (size_t)*n * s->size;
		memset(item, 0, s->size);
		path_idx(path, s->key, i);
		ret = s->parse(p, json_array_get(f.v, i), path, item);
		if (ret)
			return ret;
		(*n)++;
	}
	for (i = 0; i < 2 && s->unique[i].field; i++) {
		ret = check_unique(p, s, &s->unique[i], *arr, *n, f.v,
				   i == 0 ? sorted : NULL);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_mesh(struct parser *p, const json_t *root)
{
	static const char *const keys[] = { "outboundPort", "inboundPort",
					    "adminPort", "failMode", NULL };
	struct nm_mesh_cfg *m = &p->c->mesh;
	struct field f;
	char q[SHOW_BUF];
	int ret;

	ret = field_get(p, root, "", "mesh", JSON_OBJECT, false, &f);
	if (ret <= 0)
		return ret;
	ret = check_keys(p, f.v, "mesh", keys);
	if (ret)
		return ret;
	if (get_port(p, f.v, "mesh", "outboundPort", false, &m->outbound_port) < 0 ||
	    get_port(p, f.v, "mesh", "inboundPort", false, &m->inbound_port) < 0 ||
	    get_port(p, f.v, "mesh", "adminPort", false, &m->admin_port) < 0)
		return -EINVAL;
	ret = field_get(p, f.v, "mesh", "failMode", JSON_STRING, false, &f);
	if (ret < 0)
		return ret;
	if (ret) {
		const char *s = json_string_value(f.v);

		if (strcmp(s, "closed") == 0)
			m->fail_mode = NM_CFG_FAIL_CLOSED;
		else if (strcmp(s, "open") == 0)
			m->fail_mode = NM_CFG_FAIL_OPEN;
		else
			return fail(p, f.path, "%s is not \"closed\" or \"open\"",
				    show(s, q));
	}
	/* The three listeners share the node address. */
	if (m->inbound_port == m->outbound_port)
		return fail(p, "mesh.inboundPort", "%u is already used by mesh.outboundPort",
			    m->inbound_port);
	if (m->admin_port == m->outbound_port)
		return fail(p, "mesh.adminPort", "%u is already used by mesh.outboundPort",
			    m->admin_port);
	if (m->admin_port == m->inbound_port)
		return fail(p, "mesh.adminPort", "%u is already used by mesh.inboundPort",
			    m->admin_port);
	return 0;
}

static int parse_node(struct parser *p, const json_t *v, const char *path,
		      void *item)
{
	static const char *const keys[] = { "name", "address", "address6",
					    "cgroupRoot", NULL };
	struct nm_node *n = item;
	struct field f;
	char q[SHOW_BUF];
	int ret;

	ret = check_object(p, v, path, keys);
	if (ret)
		return ret;
	ret = get_str(p, v, path, "name", true, n->name, sizeof(n->name), &f);
	if (ret < 0)
		return ret;
	/* Node names are DNS subdomains in Kubernetes (often FQDNs). */
	if (!dns_subdomain_ok(n->name, strlen(n->name), NM_NAME_MAX - 1))
		return fail(p, f.path,
			    "%s is not a valid node name (lowercase letters, digits, '-' and '.', parts starting and ending with a letter or digit, at most 63)",
			    show(n->name, q));
	if (get_ip_pair(p, v, path, "address", &n->addr, &n->addr6, &n->has_addr6))
		return -EINVAL;
	return get_cgroup(p, v, path, "cgroupRoot", n->cgroup_root) < 0 ? -EINVAL : 0;
}

static int parse_nodes(struct parser *p, const json_t *root)
{
	static const struct section s = {
		.key = "nodes", .size = sizeof(struct nm_node),
		.parse = parse_node,
		.unique = { { "name", node_cmp, .quote = true } },
	};
	void *arr = NULL;
	/* Even without nodes: workloads look their node up in this index. */
	int ret = parse_section(p, root, &s, &arr, &p->c->n_nodes, &p->node_idx);

	p->c->nodes = arr;
	return ret;
}

static int lookup_node(const struct parser *p, const char *name)
{
	const struct nm_cluster *c = p->c;
	unsigned int lo = 0, hi = c->n_nodes;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->nodes[p->node_idx[mid]].name);

		if (r == 0)
			return (int)p->node_idx[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

static int parse_workload(struct parser *p, const json_t *v, const char *path,
			  void *item)
{
	static const char *const keys[] = { "name", "namespace", "serviceAccount",
					    "labels", "ip", "ip6", "node",
					    "cgroup", NULL };
	struct nm_workload_cfg *w = item;
	char node[NM_NAME_MAX], q[SHOW_BUF];
	struct field f;
	int ret;

	ret = check_object(p, v, path, keys);
	if (ret)
		return ret;
	if (get_name(p, v, path, "name", w->name) ||
	    get_name(p, v, path, "namespace", w->ns) ||
	    get_name(p, v, path, "serviceAccount", w->sa))
		return -EINVAL;
	if (get_labels(p, v, path, "labels", false, w->labels, &w->n_labels) < 0)
		return -EINVAL;
	if (get_ip_pair(p, v, path, "ip", &w->ip, &w->ip6, &w->has_ip6))
		return -EINVAL;
	ret = get_str(p, v, path, "node", true, node, sizeof(node), &f);
	if (ret < 0)
		return ret;
	w->node = lookup_node(p, node);
	if (w->node < 0)
		return fail(p, f.path, "%s is not a node listed in nodes",
			    show(node, q));
	return get_cgroup(p, v, path, "cgroup", w->cgroup) < 0 ? -EINVAL : 0;
}

static int parse_workloads(struct parser *p, const json_t *root)
{
	static const struct section s = {
		.key = "workloads", .max = NM_MAX_ENDPOINTS,
		.size = sizeof(struct nm_workload_cfg), .parse = parse_workload,
		.unique = { { "name", workload_cmp, .in_ns = true } },
	};
	void *arr = NULL;
	int ret = parse_section(p, root, &s, &arr, &p->c->n_workloads, NULL);

	p->c->workloads = arr;
	return ret;
}

static int parse_port_map(struct parser *p, const json_t *v, const char *path,
			  struct nm_port_map *pm)
{
	static const char *const keys[] = { "port", "targetPort", NULL };
	int ret;

	ret = check_object(p, v, path, keys);
	if (ret)
		return ret;
	if (get_port(p, v, path, "port", true, &pm->port) < 0)
		return -EINVAL;
	ret = get_port(p, v, path, "targetPort", false, &pm->target_port);
	if (ret < 0)
		return ret;
	if (ret == 0)
		pm->target_port = pm->port; /* Kubernetes' default */
	return 0;
}

static int parse_service(struct parser *p, const json_t *v, const char *path,
			 void *item)
{
	static const char *const keys[] = { "name", "namespace", "vip", "vip6",
					    "ports", "selector", NULL };
	struct nm_service_cfg *s = item;
	struct field f;
	size_t i, j;
	int ret;

	ret = check_object(p, v, path, keys);
	if (ret)
		return ret;
	if (get_name(p, v, path, "name", s->name) ||
	    get_name(p, v, path, "namespace", s->ns))
		return -EINVAL;
	if (get_ip_pair(p, v, path, "vip", &s->vip, &s->vip6, &s->has_vip6))
		return -EINVAL;
	ret = field_get(p, v, path, "ports", JSON_ARRAY, true, &f);
	if (ret < 0)
		return ret;
	if (json_array_size(f.v) == 0)
		return fail(p, f.path, "must list at least one port");
	if (json_array_size(f.v) > NM_MAX_PORTS)
		return fail(p, f.path, "too many ports (%zu, at most %d)",
			    json_array_size(f.v), NM_MAX_PORTS);
	for (i = 0; i < json_array_size(f.v); i++) {
		char ppath[PATH_BUF];

		path_idx(ppath, f.path, i);
		ret = parse_port_map(p, json_array_get(f.v, i), ppath,
				     &s->ports[i]);
		if (ret)
			return ret;
		for (j = 0; j < i; j++) {
			if (s->ports[j].port == s->ports[i].port) {
				char fpath[PATH_BUF];

				path_key(fpath, ppath, "port");
				return fail(p, fpath, "%u is already used by ports[%zu]",
					    s->ports[i].port, j);
			}
		}
		s->n_ports++;
	}
	/* A selector-less service would have no endpoints: nothing to mesh. */
	ret = get_labels(p, v, path, "selector", true, s->selector, &s->n_selector);
	return ret < 0 ? ret : 0;
}

static int parse_services(struct parser *p, const json_t *root)
{
	static const struct section s = {
		.key = "services", .max = NM_MAX_SERVICES,
		.size = sizeof(struct nm_service_cfg), .parse = parse_service,
		.unique = { { "name", service_cmp, .in_ns = true } },
	};
	void *arr = NULL;
	int ret = parse_section(p, root, &s, &arr, &p->c->n_services, NULL);

	p->c->services = arr;
	return ret;
}

/* "ip:port" or "[ip6]:port" with a port that can be bound or dialled. */
static int get_sockaddr(struct parser *p, const json_t *obj, const char *parent,
			const char *key, bool required, bool may_be_any,
			struct sockaddr_storage *out)
{
	struct field f;
	char q[SHOW_BUF];
	const char *s;
	int ret = field_get(p, obj, parent, key, JSON_STRING, required, &f);

	if (ret <= 0)
		return ret;
	s = json_string_value(f.v);
	if (nm_sockaddr_parse(s, out))
		return fail(p, f.path,
			    "%s is not an address:port (like \"127.0.0.1:8080\" or \"[::1]:8080\")",
			    show(s, q));
	if (out->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)out;

		if (sin->sin_port == 0)
			return fail(p, f.path, "%s: port 0 is not allowed", show(s, q));
		if (!may_be_any && sin->sin_addr.s_addr == htonl(INADDR_ANY))
			return fail(p, f.path, "%s: cannot connect to the unspecified address",
				    show(s, q));
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)out;

		if (sin6->sin6_port == 0)
			return fail(p, f.path, "%s: port 0 is not allowed", show(s, q));
		if (!may_be_any && IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			return fail(p, f.path, "%s: cannot connect to the unspecified address",
				    show(s, q));
	}
	return 1;
}

static int get_spiffe(struct parser *p, const char *path, const json_t *v,
		      char *dst)
{
	char why[NM_ERRMSG_MAX];
	int ret;

	if (!json_is_string(v))
		return fail(p, path, "expected a string, got %s", type_name(v));
	ret = copy_str(p, path, json_string_value(v), dst, NM_SPIFFE_MAX);
	if (ret)
		return ret;
	if (!spiffe_ok(dst, p->c->trust_domain, why, sizeof(why)))
		return fail(p, path, "%s", why);
	return 0;
}

static int parse_forward(struct parser *p, const json_t *v, const char *path,
			 void *item)
{
	static const char *const keys[] = { "name", "mode", "listen", "peer",
					    "destination", "identity",
					    "peerIdentity", "allowedPeers", NULL };
	struct nm_forward_cfg *fw = item;
	char id[2 * NM_NAME_MAX], q[SHOW_BUF];
	struct field f;
	const char *s, *slash;
	size_t i, j;
	int ret;

	ret = check_object(p, v, path, keys);
	if (ret)
		return ret;
	if (get_name(p, v, path, "name", fw->name))
		return -EINVAL;
	ret = field_get(p, v, path, "mode", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	s = json_string_value(f.v);
	if (strcmp(s, "outbound") == 0)
		fw->mode = NM_FWD_OUTBOUND;
	else if (strcmp(s, "inbound") == 0)
		fw->mode = NM_FWD_INBOUND;
	else
		return fail(p, f.path, "%s is not \"outbound\" or \"inbound\"",
			    show(s, q));

	if (get_sockaddr(p, v, path, "listen", true, true, &fw->listen) < 0)
		return -EINVAL;
	if (fw->mode == NM_FWD_OUTBOUND) {
		if (get_sockaddr(p, v, path, "peer", true, false, &fw->peer) < 0)
			return -EINVAL;
	} else if (json_object_get(v, "peer")) {
		path_key(f.path, path, "peer");
		return fail(p, f.path, "only outbound forwards have a peer");
	}
	if (get_sockaddr(p, v, path, "destination", true, false,
			 &fw->destination) < 0)
		return -EINVAL;

	ret = get_str(p, v, path, "identity", true, id, sizeof(id), &f);
	if (ret < 0)
		return ret;
	slash = strchr(id, '/');
	if (!slash || !dns_label_ok(id, (size_t)(slash - id)) ||
	    !dns_label_ok(slash + 1, strlen(slash + 1)) ||
	    (size_t)(slash - id) >= sizeof(fw->id_ns) ||
	    strlen(slash + 1) >= sizeof(fw->id_sa))
		return fail(p, f.path,
			    "%s is not \"namespace/serviceAccount\" (two DNS labels)",
			    show(id, q));
	memcpy(fw->id_ns, id, (size_t)(slash - id));
	fw->id_ns[slash - id] = '\0';
	memcpy(fw->id_sa, slash + 1, strlen(slash + 1) + 1);

	path_key(f.path, path, "peerIdentity");
	f.v = json_object_get(v, "peerIdentity");
	if (fw->mode == NM_FWD_OUTBOUND) {
		if (!f.v)
			return fail(p, f.path, "missing required field");
		ret = get_spiffe(p, f.path, f.v, fw->peer_identity);
		if (ret)
			return ret;
	} else if (f.v) {
		return fail(p, f.path,
			    "only outbound forwards have a peerIdentity (inbound ones use allowedPeers)");
	}

	ret = field_get(p, v, path, "allowedPeers", JSON_ARRAY, false, &f);
	if (ret < 0)
		return ret;
	if (ret == 0)
		return 0;
	if (fw->mode == NM_FWD_OUTBOUND)
		return fail(p, f.path,
			    "only inbound forwards have allowedPeers (outbound ones use peerIdentity)");
	if (json_array_size(f.v) > NM_MAX_ALLOWED_PEERS)
		return fail(p, f.path, "too many peers (%zu, at most %d)",
			    json_array_size(f.v), NM_MAX_ALLOWED_PEERS);
	for (i = 0; i < json_array_size(f.v); i++) {
		char ppath[PATH_BUF];

		path_idx(ppath, f.path, i);
		ret = get_spiffe(p, ppath, json_array_get(f.v, i),
				 fw->allowed_peers[i]);
		if (ret)
			return ret;
		for (j = 0; j < i; j++) {
			if (strcmp(fw->allowed_peers[j], fw->allowed_peers[i]) == 0)
				return fail(p, ppath, "%s is already listed in allowedPeers[%zu]",
					    show(fw->allowed_peers[i], q), j);
		}
		fw->n_allowed_peers++;
	}
	return 0;
}

static int parse_forwards(struct parser *p, const json_t *root)
{
	static const struct section s = {
		.key = "forwards", .max = NM_MAX_FORWARDS,
		.size = sizeof(struct nm_forward_cfg), .parse = parse_forward,
		.unique = { { "name", forward_name_cmp, .quote = true },
			    { "listen", forward_listen_cmp } },
	};
	void *arr = NULL;
	int ret = parse_section(p, root, &s, &arr, &p->c->n_forwards, NULL);

	p->c->forwards = arr;
	return ret;
}

/*
 * Every address in the file is one endpoint in the maps: a node, pod or VIP
 * address used twice would make lookups by address ambiguous.
 */
enum addr_kind { AK_NODE, AK_NODE6, AK_WL, AK_WL6, AK_SVC, AK_SVC6 };

/* Where an address came from, to name both fields in a message. */
static const char *const addr_section[] = {
	[AK_NODE] = "nodes", [AK_NODE6] = "nodes", [AK_WL] = "workloads",
	[AK_WL6] = "workloads", [AK_SVC] = "services", [AK_SVC6] = "services",
};
static const char *const addr_key[] = {
	[AK_NODE] = "address", [AK_NODE6] = "address6", [AK_WL] = "ip",
	[AK_WL6] = "ip6", [AK_SVC] = "vip", [AK_SVC6] = "vip6",
};

struct addr_ent {
	struct nm_addr ip;
	enum addr_kind kind;
	unsigned int idx;
};

static int addr_cmp(const void *ctx, unsigned int a, unsigned int b)
{
	const struct addr_ent *e = ctx;

	return memcmp(e[a].ip.a, e[b].ip.a, sizeof(e[a].ip.a));
}

static void addr_add(struct addr_ent *e, unsigned int *n, const struct nm_addr *ip,
		     enum addr_kind kind, unsigned int idx)
{
	e[*n].ip = *ip;
	e[*n].kind = kind;
	e[*n].idx = idx;
	(*n)++;
}

static void addr_path(char *dst, const struct addr_ent *e)
{
	snprintf(dst, PATH_BUF, "%s[%u].%s", addr_section[e->kind], e->idx,
		 addr_key[e->kind]);
}

static int check_addresses(struct parser *p)
{
	const struct nm_cluster *c = p->c;
	size_t max = 2 * ((size_t)c->n_nodes + c->n_workloads + c->n_services);
	struct addr_ent *e;
	unsigned int n = 0, i, dup, orig;
	int ret;

	if (max == 0)
		return 0;
	e = calloc(max, sizeof(*e));
	if (!e)
		return fail_nomem(p);
	for (i = 0; i < c->n_nodes; i++) {
		addr_add(e, &n, &c->nodes[i].addr, AK_NODE, i);
		if (c->nodes[i].has_addr6)
			addr_add(e, &n, &c->nodes[i].addr6, AK_NODE6, i);
	}
	for (i = 0; i < c->n_workloads; i++) {
		addr_add(e, &n, &c->workloads[i].ip, AK_WL, i);
		if (c->workloads[i].has_ip6)
			addr_add(e, &n, &c->workloads[i].ip6, AK_WL6, i);
	}
	for (i = 0; i < c->n_services; i++) {
		addr_add(e, &n, &c->services[i].vip, AK_SVC, i);
		if (c->services[i].has_vip6)
			addr_add(e, &n, &c->services[i].vip6, AK_SVC6, i);
	}
	ret = find_dup(n, addr_cmp, e, NULL, &dup, &orig);
	if (ret < 0) {
		ret = fail_nomem(p);
	} else if (ret) {
		char path[PATH_BUF], other[PATH_BUF], ip[INET6_ADDRSTRLEN];

		addr_path(path, &e[dup]);
		addr_path(other, &e[orig]);
		nm_addr_format(&e[dup].ip, ip, sizeof(ip));
		ret = fail(p, path, "%s is already used by %s", ip, other);
	}
	free(e);
	return ret;
}

/* certDir relative to the folder of the file (as the file was named). */
static int resolve_cert_dir(struct parser *p, const char *path, const char *dir)
{
	struct nm_cluster *c = p->c;
	const char *slash = strrchr(c->path, '/');
	size_t base;
	char q[SHOW_BUF];
	int n;

	if (!*dir)
		return fail(p, path, "must not be empty");
	if (dir[0] == '/' || !slash)
		return copy_str(p, path, dir, c->cert_dir, sizeof(c->cert_dir));
	base = slash == c->path ? 1 : (size_t)(slash - c->path); /* "/x.json" */
	n = snprintf(c->cert_dir, sizeof(c->cert_dir), "%.*s%s%s", (int)base,
		     c->path, base == 1 && c->path[0] == '/' ? "" : "/", dir);
	if (n < 0 || (size_t)n >= sizeof(c->cert_dir))
		return fail(p, path,
			    "%s resolved against the file's folder is too long (at most %d bytes)",
			    show(dir, q), NM_PATH_MAX - 1);
	return 0;
}

static int parse_root(struct parser *p, const json_t *root)
{
	static const char *const keys[] = { "trustDomain", "certDir", "mesh",
					    "nodes", "workloads", "services",
					    "forwards", NULL };
	struct nm_cluster *c = p->c;
	struct field f;
	char q[SHOW_BUF];
	int ret;

	if (!json_is_object(root))
		return fail(p, NULL, "expected a JSON object at the top level, got %s",
			    type_name(root));
	ret = check_keys(p, root, "", keys);
	if (ret)
		return ret;
	ret = get_str(p, root, "", "trustDomain", true, c->trust_domain,
		      sizeof(c->trust_domain), &f);
	if (ret < 0)
		return ret;
	if (!trust_domain_ok(c->trust_domain))
		return fail(p, f.path,
			    "%s is not a valid trust domain (lowercase letters, digits, '.', '-', '_', starting and ending with a letter or digit)",
			    show(c->trust_domain, q));
	ret = field_get(p, root, "", "certDir", JSON_STRING, true, &f);
	if (ret < 0)
		return ret;
	ret = resolve_cert_dir(p, f.path, json_string_value(f.v));
	if (ret)
		return ret;
	ret = parse_mesh(p, root);
	if (ret)
		return ret;
	ret = parse_nodes(p, root);
	if (ret)
		return ret;
	ret = parse_workloads(p, root);
	if (ret)
		return ret;
	ret = parse_services(p, root);
	if (ret)
		return ret;
	ret = parse_forwards(p, root);
	if (ret)
		return ret;
	return check_addresses(p);
}

/* --- API ----------------------------------------------------------------- */

int nm_cluster_load_buf(const char *buf, size_t len, const char *name,
			struct nm_cluster **out, char *err, size_t errlen)
{
	struct parser p = { .name = name ? name : "<buffer>", .err = err,
			    .errlen = errlen };
	struct nm_cluster *c = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (!buf && len))
		return fail(&p, NULL, "invalid arguments");
	*out = NULL;
	if (len > CFG_MAX_FILE)
		return fail(&p, NULL, "file is too large (%zu bytes, at most 16 MiB)",
			    len);
	if (strlen(p.name) >= sizeof(c->path))
		return fail(&p, NULL, "file name is too long (at most %d bytes)",
			    NM_PATH_MAX - 1);
	c = calloc(1, sizeof(*c));
	if (!c)
		return fail_nomem(&p);
	memcpy(c->path, p.name, strlen(p.name) + 1);
	c->mesh.outbound_port = DEFAULT_OUTBOUND_PORT;
	c->mesh.inbound_port = DEFAULT_INBOUND_PORT;
	c->mesh.admin_port = DEFAULT_ADMIN_PORT;
	c->mesh.fail_mode = NM_CFG_FAIL_CLOSED;
	p.c = c;

	ret = check_complexity(&p, buf ? buf : "", len);
	if (ret)
		goto cleanup;
	/* Duplicate keys are typos or merge accidents; \u0000 stays refused. */
	root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char text[JSON_ERROR_TEXT_LENGTH];

		sanitize(jerr.text, text, sizeof(text));
		ret = fail(&p, NULL, "line %d, column %d: %s", jerr.line,
			   jerr.column, text);
		goto cleanup;
	}
	ret = parse_root(&p, root);
	if (ret)
		goto cleanup;
	*out = c;
	c = NULL;
cleanup:
	free(p.node_idx);
	json_decref(root);
	nm_cluster_free(c);
	return ret;
}

int nm_cluster_load_file(const char *path, struct nm_cluster **out, char *err,
			 size_t errlen)
{
	struct parser p = { .name = path ? path : "<null>", .err = err,
			    .errlen = errlen };
	size_t len = 0, cap;
	char *buf = NULL;
	struct stat st;
	int fd, ret;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return fail(&p, NULL, "invalid arguments");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		fail(&p, NULL, "cannot open: %s", strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		fail(&p, NULL, "cannot stat: %s", strerror(-ret));
		goto cleanup;
	}
	if (S_ISREG(st.st_mode) && st.st_size > (off_t)CFG_MAX_FILE) {
		ret = fail(&p, NULL, "file is too large (%lld bytes, at most 16 MiB)",
			   (long long)st.st_size);
		goto cleanup;
	}
	/* Pipes and files that grow while we read are capped all the same. */
	cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap > CFG_MAX_FILE) {
				ret = fail(&p, NULL, "file is too large (more than 16 MiB)");
				goto cleanup;
			}
			cap *= 2;
			if (cap > CFG_MAX_FILE + 1)
				cap = CFG_MAX_FILE + 1;
			nb = realloc(buf, cap);
			if (!nb) {
				ret = fail_nomem(&p);
				goto cleanup;
			}
			buf = nb;
		} else if (!buf) {
			buf = malloc(cap);
			if (!buf) {
				ret = fail_nomem(&p);
				goto cleanup;
			}
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			fail(&p, NULL, "cannot read: %s", strerror(-ret));
			goto cleanup;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CFG_MAX_FILE) {
		ret = fail(&p, NULL, "file is too large (more than 16 MiB)");
		goto cleanup;
	}
	ret = nm_cluster_load_buf(buf, len, path, out, err, errlen);
cleanup:
	free(buf);
	close(fd);
	return ret;
}

void nm_cluster_free(struct nm_cluster *c)
{
	if (!c)
		return;
	free(c->nodes);
	free(c->workloads);
	free(c->services);
	free(c->forwards);
	free(c);
}

int nm_cluster_find_node(const struct nm_cluster *c, const char *name)
{
	unsigned int i;

	if (!c || !name)
		return -ENOENT;
	for (i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

int nm_cluster_find_workload_by_ip(const struct nm_cluster *c,
				   const struct nm_addr *addr)
{
	unsigned int i;

	if (!c || !addr)
		return -ENOENT;
	for (i = 0; i < c->n_workloads; i++) {
		const struct nm_workload_cfg *w = &c->workloads[i];

		if (memcmp(&w->ip, addr, sizeof(*addr)) == 0 ||
		    (w->has_ip6 && memcmp(&w->ip6, addr, sizeof(*addr)) == 0))
			return (int)i;
	}
	return -ENOENT;
}

int nm_cluster_find_workload(const struct nm_cluster *c, const char *ns,
			     const char *name)
{
	unsigned int i;

	if (!c || !ns || !name)
		return -ENOENT;
	for (i = 0; i < c->n_workloads; i++)
		if (strcmp(c->workloads[i].ns, ns) == 0 &&
		    strcmp(c->workloads[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

/*
 * An empty selector selects nothing, as in Kubernetes (a Service without a
 * selector gets no automatic endpoints). The parser never produces one.
 */
bool nm_service_selects(const struct nm_service_cfg *svc,
			const struct nm_workload_cfg *wl)
{
	unsigned int i, j;

	if (!svc || !wl || svc->n_selector == 0 || strcmp(svc->ns, wl->ns) != 0)
		return false;
	for (i = 0; i < svc->n_selector; i++) {
		bool found = false;

		for (j = 0; j < wl->n_labels && !found; j++)
			found = strcmp(svc->selector[i].key, wl->labels[j].key) == 0 &&
				strcmp(svc->selector[i].value, wl->labels[j].value) == 0;
		if (!found)
			return false;
	}
	return true;
}
