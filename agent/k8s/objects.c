// SPDX-License-Identifier: Apache-2.0
/*
 * objects.c - what the API server sends, decoded (k8s.h): list pages,
 * watch event lines (split from a chunked body that may end mid-line),
 * Status objects, and the store of the objects seen so far.
 *
 * Objects are kept as the API sent them (jansson trees, managedFields
 * dropped): the snapshot builder reads the few fields it needs, so an
 * unknown field is never an error here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

#define LINE_MAX_BYTES (64u << 20) /* one object; the API caps at ~3 MiB */

int nm_k8s_store_init(struct nm_k8s_store *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NM_K8S_KIND_MAX; i++) {
		st->objs[i] = json_object();
		if (!st->objs[i]) {
			nm_k8s_store_free(st);
			return -ENOMEM;
		}
	}
	return 0;
}

void nm_k8s_store_free(struct nm_k8s_store *st)
{
	for (int i = 0; i < NM_K8S_KIND_MAX; i++) {
		json_decref(st->objs[i]);
		st->objs[i] = NULL;
	}
}

int nm_k8s_obj_key(const json_t *obj, char *buf, size_t len)
{
	const json_t *md = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	int n;

	if (!name || !name[0])
		return -EINVAL;
	if (ns && ns[0])
		n = snprintf(buf, len, "%s/%s", ns, name);
	else
		n = snprintf(buf, len, "%s", name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void copy_rv(const json_t *obj, char *rv, size_t len)
{
	const json_t *md = json_object_get(obj, "metadata");
	const char *s = json_string_value(json_object_get(md, "resourceVersion"));

	snprintf(rv, len, "%s", s && strlen(s) < len ? s : "");
}

void nm_k8s_event_clear(struct nm_k8s_event *ev)
{
	json_decref(ev->object);
	memset(ev, 0, sizeof(*ev));
}

int nm_k8s_event_parse(const char *line, size_t len, struct nm_k8s_event *ev,
		       char *err, size_t errlen)
{
	static const char *const types[] = {
		[NM_K8S_EV_ADDED] = "ADDED", [NM_K8S_EV_MODIFIED] = "MODIFIED",
		[NM_K8S_EV_DELETED] = "DELETED", [NM_K8S_EV_BOOKMARK] = "BOOKMARK",
		[NM_K8S_EV_ERROR] = "ERROR",
	};
	json_error_t je;
	json_t *root, *obj;
	const char *type;
	int i, ret = -EINVAL;

	memset(ev, 0, sizeof(*ev));
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(err, errlen, "watch event: not JSON: %s", je.text);
		return -EINVAL;
	}
	type = json_string_value(json_object_get(root, "type"));
	obj = json_object_get(root, "object");
	if (!type) {
		snprintf(err, errlen, "watch event: no \"type\"");
		goto cleanup;
	}
	for (i = 0; i < (int)(sizeof(types) / sizeof(types[0])); i++)
		if (!strcmp(type, types[i]))
			break;
	if (i == (int)(sizeof(types) / sizeof(types[0]))) {
		snprintf(err, errlen, "watch event: unknown type \"%.32s\"", type);
		goto cleanup;
	}
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "watch event %s: \"object\" is not an object",
			 type);
		goto cleanup;
	}
	ev->type = (enum nm_k8s_ev_type)i;
	if (ev->type == NM_K8S_EV_ERROR) {
		json_t *code = json_object_get(obj, "code");

		ev->code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
	} else {
		char key[2 * 256];

		copy_rv(obj, ev->rv, sizeof(ev->rv));
		if (ev->type != NM_K8S_EV_BOOKMARK &&
		    nm_k8s_obj_key(obj, key, sizeof(key))) {
			snprintf(err, errlen, "watch event %s: object without metadata.name",
				 type);
			goto cleanup;
		}
		/* Who wrote which field is all managedFields say: memory only. */
		json_object_del(json_object_get(obj, "metadata"), "managedFields");
	}
	ev->object = json_incref(obj);
	ret = 0;
cleanup:
	json_decref(root);
	return ret;
}

int nm_k8s_store_apply(json_t *map, const struct nm_k8s_event *ev)
{
	char key[2 * 256];
	json_t *old;

	if (ev->type == NM_K8S_EV_BOOKMARK || ev->type == NM_K8S_EV_ERROR)
		return 0;
	if (nm_k8s_obj_key(ev->object, key, sizeof(key)))
		return -EINVAL;
	old = json_object_get(map, key);
	if (ev->type == NM_K8S_EV_DELETED) {
		if (!old)
			return 0;
		json_object_del(map, key);
		return 1;
	}
	if (old && json_equal(old, ev->object))
		return 0;
	return json_object_set(map, key, ev->object) ? -ENOMEM : 1;
}

int nm_k8s_lines_feed(struct nm_k8s_lines *lb, const char *p, size_t n,
		      nm_k8s_line_fn fn, void *arg)
{
	size_t start = 0, i;
	int ret;

	if (lb->len + n > LINE_MAX_BYTES)
		return -E2BIG;
	if (lb->len + n + 1 > lb->cap) {
		size_t cap = lb->cap ? lb->cap : 4096;
		char *nb;

		while (cap < lb->len + n + 1)
			cap *= 2;
		nb = realloc(lb->buf, cap);
		if (!nb)
			return -ENOMEM;
		lb->buf = nb;
		lb->cap = cap;
	}
	memcpy(lb->buf + lb->len, p, n);
	lb->len += n;
	for (i = 0; i < lb->len; i++) {
		if (lb->buf[i] != '\n')
			continue;
		if (i > start) {
			ret = fn(lb->buf + start, i - start, arg);
			if (ret)
				return ret;
		}
		start = i + 1;
	}
	memmove(lb->buf, lb->buf + start, lb->len - start);
	lb->len -= start;
	return 0;
}

void nm_k8s_lines_reset(struct nm_k8s_lines *lb)
{
	lb->len = 0;
}

void nm_k8s_lines_free(struct nm_k8s_lines *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

int nm_k8s_page_parse(const char *body, size_t len, json_t **root,
		      struct nm_k8s_page *pg, char *err, size_t errlen)
{
	json_error_t je;
	json_t *r, *md, *items;
	const char *kind, *s;
	size_t i;
	json_t *it;

	memset(pg, 0, sizeof(*pg));
	*root = NULL;
	r = json_loadb(body, len, 0, &je);
	if (!r) {
		snprintf(err, errlen, "list: not JSON: line %d: %s", je.line, je.text);
		return -EINVAL;
	}
	kind = json_string_value(json_object_get(r, "kind"));
	items = json_object_get(r, "items");
	md = json_object_get(r, "metadata");
	if (!kind || strlen(kind) < 4 || strcmp(kind + strlen(kind) - 4, "List")) {
		snprintf(err, errlen, "list: kind is \"%.64s\", not a List",
			 kind ? kind : "(none)");
		goto fail;
	}
	/* An empty list may come as "items": null. */
	if (json_is_null(items) || !items) {
		items = json_array();
		json_object_set_new(r, "items", items);
	}
	if (!json_is_array(items)) {
		snprintf(err, errlen, "list: items is not an array");
		goto fail;
	}
	json_array_foreach(items, i, it) {
		if (!json_is_object(it)) {
			snprintf(err, errlen, "list: items[%zu] is not an object", i);
			goto fail;
		}
		json_object_del(json_object_get(it, "metadata"), "managedFields");
	}
	s = json_string_value(json_object_get(md, "resourceVersion"));
	if (s && strlen(s) < sizeof(pg->rv))
		snprintf(pg->rv, sizeof(pg->rv), "%s", s);
	s = json_string_value(json_object_get(md, "continue"));
	if (s && strlen(s) >= sizeof(pg->cont)) {
		snprintf(err, errlen, "list: continue token too long");
		goto fail;
	}
	if (s)
		snprintf(pg->cont, sizeof(pg->cont), "%s", s);
	pg->items = items;
	*root = r;
	return 0;
fail:
	json_decref(r);
	return -EINVAL;
}

int nm_k8s_status_code(const char *body, size_t len)
{
	json_t *r = json_loadb(body, len, 0, NULL);
	const char *kind = json_string_value(json_object_get(r, "kind"));
	json_t *code = json_object_get(r, "code");
	int c = 0;

	if (kind && !strcmp(kind, "Status") && json_is_integer(code))
		c = (int)json_integer_value(code);
	json_decref(r);
	return c;
}
