// SPDX-License-Identifier: Apache-2.0
/*
 * list.c - top-level arrays of objects and their duplicate checks (list.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/list.h"

struct sort_ctx {
	nm_cfg_item_cmp cmp;
	const void *ctx;
};

/* Ties broken by index, so runs of equal keys stay in file order. */
static int sort_cmp(const void *a, const void *b, void *arg)
{
	const struct sort_ctx *sc = arg;
	unsigned int ia = *(const unsigned int *)a, ib = *(const unsigned int *)b;
	int r = sc->cmp(sc->ctx, ia, ib);

	if (r)
		return r;
	return ia < ib ? -1 : ia > ib;
}

static unsigned int *sort_items(unsigned int n, nm_cfg_item_cmp cmp,
				const void *ctx)
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
static bool first_dup(const unsigned int *idx, unsigned int n,
		      nm_cfg_item_cmp cmp, const void *ctx, unsigned int *dup,
		      unsigned int *orig)
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

int nm_cfg_find_dup(unsigned int n, nm_cfg_item_cmp cmp, const void *ctx,
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

/*
 * Fails at <key>[dup].<field> when two of the n items of arr compare equal,
 * naming the earlier one; the value is quoted as written in items (the JSON
 * array).
 */
static int check_unique(struct nm_cfg_parser *p, const struct nm_cfg_list *s,
			const struct nm_cfg_unique *u, const void *arr,
			unsigned int n, const json_t *items,
			unsigned int **sorted)
{
	char path[NM_JW_PATH_MAX], q[NM_JW_SHOW_BUF];
	const json_t *item;
	unsigned int dup, orig;
	const char *v;
	int ret = nm_cfg_find_dup(n, u->cmp, arr, sorted, &dup, &orig);

	if (ret < 0)
		return nm_jw_fail_nomem(&p->j);
	if (ret == 0)
		return 0;
	item = json_array_get(items, dup);
	v = json_string_value(json_object_get(item, u->field));
	if (u->in_ns) {
		snprintf(q, sizeof(q), "%s/%s",
			 json_string_value(json_object_get(item, "namespace")), v);
		v = q;
	} else if (u->quote) {
		v = nm_jw_show(v, q);
	}
	snprintf(path, sizeof(path), "%s[%u].%s", s->key, dup, u->field);
	return nm_jw_fail(&p->j, path, "%s is already used by %s[%u]", v,
			  s->key, orig);
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

int nm_cfg_parse_list(struct nm_cfg_parser *p, const json_t *root,
		      const struct nm_cfg_list *s, void **arr, unsigned int *n,
		      unsigned int **sorted)
{
	unsigned int cap = 0;
	struct nm_jw_field f;
	size_t i, len;
	int ret;

	ret = nm_jw_field(&p->j, root, "", s->key, JSON_ARRAY, false, &f);
	if (ret < 0)
		return ret;
	len = ret ? json_array_size(f.v) : 0;
	if (s->max && len > s->max)
		return nm_jw_fail(&p->j, f.path, "too many %s (%zu, at most %u)",
				  s->key, len, s->max);
	for (i = 0; i < len; i++) {
		char path[NM_JW_PATH_MAX];
		char *item;

		if (grow(arr, *n, &cap, s->size))
			return nm_jw_fail_nomem(&p->j);
		item = (char *)*arr + (size_t)*n * s->size;
		memset(item, 0, s->size);
		nm_jw_path_idx(path, s->key, i);
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
