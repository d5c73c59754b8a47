/* SPDX-License-Identifier: Apache-2.0 */
/*
 * list.h - the top-level arrays of the cluster file (nodes, workloads,
 * services, forwards): parse each item into a growing array and refuse
 * duplicate keys, naming both items. Internal to agent/config.
 */
#ifndef NM_CONFIG_LIST_H
#define NM_CONFIG_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "config/fields.h"

/* Compares items a and b of the array ctx: <0, 0, >0. */
typedef int (*nm_cfg_item_cmp)(const void *ctx, unsigned int a, unsigned int b);

/*
 * Sorts the indices of n items by cmp (O(n log n) even for the largest
 * file accepted) and reports the first item in file order that repeats an
 * earlier one in *dup, the earlier one in *orig. The sorted index goes to
 * *sorted (caller frees) when sorted is not NULL. 1, 0 or -ENOMEM.
 */
int nm_cfg_find_dup(unsigned int n, nm_cfg_item_cmp cmp, const void *ctx,
		    unsigned int **sorted, unsigned int *dup, unsigned int *orig);

/* A field no two items of a list may share. */
struct nm_cfg_unique {
	const char *field; /* its JSON key, named as <key>[i].<field> */
	nm_cfg_item_cmp cmp;
	/* How a message shows the value: as "<namespace>/<value>" (names
	 * unique per namespace), quoted (free-form), or as is. */
	bool in_ns, quote;
};

struct nm_cfg_list {
	const char *key;  /* top-level key */
	unsigned int max; /* most items accepted, 0 for no limit */
	size_t size;      /* bytes of one item */
	/* Fills the zeroed item from v (at path); 0 or -errno. */
	int (*parse)(struct nm_cfg_parser *p, const json_t *v, const char *path,
		     void *item);
	struct nm_cfg_unique unique[2]; /* checked in order, up to a NULL field */
};

/*
 * Parses the optional array root.<key> into *arr and *n, then checks its
 * unique fields; the index sorted by the first one goes to *sorted when
 * given. *arr grows one item at a time: a file that fails halfway costs
 * only what it got through, and *arr stays valid for the caller to keep
 * (and free) whatever happens. 0 or -errno.
 */
int nm_cfg_parse_list(struct nm_cfg_parser *p, const json_t *root,
		      const struct nm_cfg_list *s, void **arr, unsigned int *n,
		      unsigned int **sorted);

#endif
