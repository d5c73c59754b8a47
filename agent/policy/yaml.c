// SPDX-License-Identifier: Apache-2.0
/*
 * yaml.c - policy files in YAML, read with libyaml's event parser into the
 * JSON tree the converter checks, typed the way Kubernetes types YAML
 * (sigs.k8s.io/yaml over go-yaml v2, YAML 1.1): a plain `8080` is an
 * integer and `yes` a boolean, so `ports: [8080]` is refused exactly as
 * `kubectl apply` refuses it, while quoted scalars and `!!str` stay strings.
 *
 * Anchors and aliases work; an alias shares its node (jansson refcounts),
 * an alias to a node still open is refused (no cycles), and every alias
 * counts the size of what it stands for, so a "billion laughs" file is
 * refused instead of expanding. Merge keys (`<<`) are not supported: they
 * read as a key named "<<" and are refused as an unknown field.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "lib/errbuf.h"
#include "policy/load.h"

#define MAX_DEPTH 64
#define MAX_NODES (1u << 20)  /* nodes, counting what aliases expand to */
#define MAX_ANCHORS 4096

struct anchor {
	char *name;
	json_t *v;
	size_t size;   /* nodes under it, expanded */
};

struct frame {
	json_t *v;        /* object or array */
	char *key;        /* object: the key waiting for its value */
	char *anchor;     /* to register when the container ends */
	size_t start;     /* node count when it opened */
};

struct yl {
	const char *file;
	char *err;
	size_t errlen;
	struct frame st[MAX_DEPTH + 1];
	unsigned int depth;
	struct anchor *anchors;
	unsigned int n_anchors;
	size_t nodes;
	json_t *docs;     /* the result */
	json_t *root;     /* the current document's value */
};

static int fail(struct yl *y, const yaml_mark_t *mk, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct yl *y, const yaml_mark_t *mk, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (mk)
		nm_set_err(y->err, y->errlen, "%s: line %zu, column %zu: %s", y->file,
			   mk->line + 1, mk->column + 1, msg);
	else
		nm_set_err(y->err, y->errlen, "%s: %s", y->file, msg);
	return -EINVAL;
}

/* --- scalars ----------------------------------------------------------------- */

static bool in_list(const char *s, const char *const *l)
{
	for (; *l; l++)
		if (!strcmp(s, *l))
			return true;
	return false;
}

/* go-yaml v2's integers: [-+]? decimal, 0x hex, 0b binary, 0 octal, '_' */
static bool yaml_int(const char *s, long long *out)
{
	char buf[80];
	size_t n = 0;
	const char *p = s;
	int base = 10;
	bool neg = false;
	char *end;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'b')) {
		base = p[1] == 'x' ? 16 : 2;
		p += 2;
	} else if (p[0] == '0' && p[1]) {
		base = 8;
		p++;
	}
	if (!*p)
		return false;
	for (; *p; p++) {
		if (*p == '_')
			continue;
		if (n + 1 >= sizeof(buf))
			return false;
		buf[n++] = *p;
	}
	buf[n] = '\0';
	if (!n || buf[0] == '-' || buf[0] == '+')
		return false;
	errno = 0;
	*out = strtoll(buf, &end, base);
	if (*end || errno)
		return false;
	if (neg)
		*out = -*out;
	return true;
}

static bool yaml_float(const char *s, double *out)
{
	size_t i = 0, digits = 0;
	char *end;

	if (s[i] == '-' || s[i] == '+')
		i++;
	for (; s[i] >= '0' && s[i] <= '9'; i++)
		digits++;
	if (s[i] == '.')
		for (i++; s[i] >= '0' && s[i] <= '9'; i++)
			digits++;
	if (!digits)
		return false;
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '-' || s[i] == '+')
			i++;
		if (s[i] < '0' || s[i] > '9')
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (s[i])
		return false;
	*out = strtod(s, &end);
	return !*end;
}

static int scalar(struct yl *y, const yaml_event_t *ev, json_t **out)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
	static const char *const trues[] = {
		"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE", NULL,
	};
	static const char *const falses[] = {
		"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE", NULL,
	};
	static const char *const infs[] = {
		".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
		"-.INF", ".nan", ".NaN", ".NAN", NULL,
	};
	const char *s = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	size_t len = ev->data.scalar.length;
	long long iv;
	double dv;

	if (strlen(s) != len)
		return fail(y, &ev->start_mark, "a NUL character in a scalar");
	if (tag && strcmp(tag, "!") && strcmp(tag, YAML_STR_TAG) &&
	    strcmp(tag, YAML_INT_TAG) && strcmp(tag, YAML_BOOL_TAG) &&
	    strcmp(tag, YAML_NULL_TAG) && strcmp(tag, YAML_FLOAT_TAG))
		return fail(y, &ev->start_mark, "unsupported tag %.64s", tag);
	if ((tag && !strcmp(tag, YAML_STR_TAG)) || (tag && !strcmp(tag, "!")) ||
	    (!tag && !ev->data.scalar.plain_implicit)) {
		*out = json_string(s);
	} else if (in_list(s, nulls)) {
		*out = json_null();
	} else if (in_list(s, trues)) {
		*out = json_true();
	} else if (in_list(s, falses)) {
		*out = json_false();
	} else if (yaml_int(s, &iv)) {
		*out = json_integer(iv);
	} else if (yaml_float(s, &dv)) {
		if (!isfinite(dv))
			return fail(y, &ev->start_mark, "number out of range");
		*out = json_real(dv);
	} else if (in_list(s, infs)) {
		return fail(y, &ev->start_mark, "%s has no JSON form", s);
	} else {
		*out = json_string(s);
	}
	if (!*out)
		return fail(y, &ev->start_mark, "not valid UTF-8 or out of memory");
	/* an explicit non-str tag must agree with what the scalar reads as */
	if (tag && !strcmp(tag, YAML_INT_TAG) && !json_is_integer(*out))
		goto mismatch;
	if (tag && !strcmp(tag, YAML_BOOL_TAG) && !json_is_boolean(*out))
		goto mismatch;
	if (tag && !strcmp(tag, YAML_NULL_TAG) && !json_is_null(*out))
		goto mismatch;
	if (tag && !strcmp(tag, YAML_FLOAT_TAG) && !json_is_number(*out))
		goto mismatch;
	return 0;
mismatch:
	json_decref(*out);
	*out = NULL;
	return fail(y, &ev->start_mark, "\"%.64s\" does not match its tag %s", s, tag);
}

/* --- the tree ----------------------------------------------------------------- */

static int add_anchor(struct yl *y, const yaml_mark_t *mk, char *name,
		      json_t *v, size_t size)
{
	struct anchor *a;
	unsigned int i;

	if (!name)
		return 0;
	/* a later anchor of the same name hides the earlier one (YAML 1.2) */
	for (i = 0; i < y->n_anchors; i++) {
		if (!strcmp(y->anchors[i].name, name)) {
			json_decref(y->anchors[i].v);
			free(name);
			y->anchors[i].v = json_incref(v);
			y->anchors[i].size = size;
			return 0;
		}
	}
	if (y->n_anchors >= MAX_ANCHORS) {
		free(name);
		return fail(y, mk, "more than %u anchors", MAX_ANCHORS);
	}
	a = realloc(y->anchors, (y->n_anchors + 1) * sizeof(*a));
	if (!a) {
		free(name);
		return fail(y, mk, "out of memory");
	}
	y->anchors = a;
	a[y->n_anchors].name = name;
	a[y->n_anchors].v = json_incref(v);
	a[y->n_anchors].size = size;
	y->n_anchors++;
	return 0;
}

/* True when the parser waits for a mapping key. */
static bool want_key(const struct yl *y)
{
	return y->depth && json_is_object(y->st[y->depth - 1].v) &&
	       !y->st[y->depth - 1].key;
}

/* Puts v (a new reference, taken) where the parser is. */
static int place(struct yl *y, const yaml_mark_t *mk, json_t *v)
{
	struct frame *f;

	if (!y->depth) {
		y->root = v;
		return 0;
	}
	f = &y->st[y->depth - 1];
	if (json_is_array(f->v)) {
		if (json_array_append_new(f->v, v))
			return fail(y, mk, "out of memory");
		return 0;
	}
	if (json_object_get(f->v, f->key)) {
		json_decref(v);
		return fail(y, mk, "duplicate key \"%.64s\"", f->key);
	}
	if (json_object_set_new(f->v, f->key, v))
		return fail(y, mk, "out of memory or a key that is not UTF-8");
	free(f->key);
	f->key = NULL;
	return 0;
}

static int count(struct yl *y, const yaml_mark_t *mk, size_t n)
{
	y->nodes += n;
	if (y->nodes > MAX_NODES)
		return fail(y, mk, "more than %u nodes (aliases included)", MAX_NODES);
	return 0;
}

static char *take_anchor(yaml_char_t *a)
{
	return a ? strdup((const char *)a) : NULL;
}

static int on_event(struct yl *y, yaml_event_t *ev)
{
	const yaml_mark_t *mk = &ev->start_mark;
	struct frame *f;
	json_t *v;
	unsigned int i;
	int ret;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		y->root = NULL;
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		/* empty documents and a bare `null` carry nothing */
		if (y->root && !json_is_null(y->root) &&
		    json_array_append(y->docs, y->root))
			ret = fail(y, mk, "out of memory");
		else
			ret = 0;
		json_decref(y->root);
		y->root = NULL;
		/* anchors do not cross documents */
		for (i = 0; i < y->n_anchors; i++) {
			free(y->anchors[i].name);
			json_decref(y->anchors[i].v);
		}
		y->n_anchors = 0;
		return ret;
	case YAML_SCALAR_EVENT:
		if ((ret = count(y, mk, 1)))
			return ret;
		if (want_key(y)) {
			if (strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length)
				return fail(y, mk, "a NUL character in a key");
			y->st[y->depth - 1].key = strdup((const char *)ev->data.scalar.value);
			return y->st[y->depth - 1].key ? 0 : fail(y, mk, "out of memory");
		}
		if ((ret = scalar(y, ev, &v)))
			return ret;
		if (ev->data.scalar.anchor &&
		    (ret = add_anchor(y, mk, take_anchor(ev->data.scalar.anchor), v, 1))) {
			json_decref(v);
			return ret;
		}
		return place(y, mk, v);
	case YAML_ALIAS_EVENT:
		if (want_key(y))
			return fail(y, mk, "an alias as a mapping key is not supported");
		for (i = 0; i < y->n_anchors; i++)
			if (!strcmp(y->anchors[i].name, (const char *)ev->data.alias.anchor))
				break;
		if (i == y->n_anchors)
			return fail(y, mk, "unknown anchor (or an alias inside its own anchor)");
		if ((ret = count(y, mk, y->anchors[i].size)))
			return ret;
		return place(y, mk, json_incref(y->anchors[i].v));
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (want_key(y))
			return fail(y, mk, "a mapping key must be a scalar");
		if (y->depth >= MAX_DEPTH)
			return fail(y, mk, "nested deeper than %d", MAX_DEPTH);
		if ((ret = count(y, mk, 1)))
			return ret;
		v = ev->type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
		if (!v)
			return fail(y, mk, "out of memory");
		f = &y->st[y->depth++];
		f->v = v;
		f->key = NULL;
		f->start = y->nodes - 1;
		f->anchor = take_anchor(ev->type == YAML_SEQUENCE_START_EVENT ?
					ev->data.sequence_start.anchor :
					ev->data.mapping_start.anchor);
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		f = &y->st[--y->depth];
		v = f->v;
		f->v = NULL;
		free(f->key);
		f->key = NULL;
		if (f->anchor) {
			ret = add_anchor(y, mk, f->anchor, v, y->nodes - f->start);
			f->anchor = NULL;
			if (ret) {
				json_decref(v);
				return ret;
			}
		}
		return place(y, mk, v);
	default:
		return 0;
	}
}

json_t *nm_pol_yaml_load(const char *buf, size_t len, const char *file,
			 char *err, size_t errlen)
{
	struct yl y = { .file = file, .err = err, .errlen = errlen };
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int ret = 0;

	y.docs = json_array();
	if (!y.docs) {
		fail(&y, NULL, "out of memory");
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		json_decref(y.docs);
		fail(&y, NULL, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!done && !ret) {
		if (!yaml_parser_parse(&parser, &ev)) {
			ret = fail(&y, &parser.problem_mark, "%s%s%.128s",
				   parser.problem ? parser.problem : "syntax error",
				   parser.context ? " " : "",
				   parser.context ? parser.context : "");
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		ret = on_event(&y, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	while (y.depth) {
		struct frame *f = &y.st[--y.depth];

		json_decref(f->v);
		free(f->key);
		free(f->anchor);
	}
	json_decref(y.root);
	for (unsigned int i = 0; i < y.n_anchors; i++) {
		free(y.anchors[i].name);
		json_decref(y.anchors[i].v);
	}
	free(y.anchors);
	if (ret) {
		json_decref(y.docs);
		return NULL;
	}
	return y.docs;
}
