// SPDX-License-Identifier: Apache-2.0
/* table.c - aligned text tables for the CLI (table.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/table.h"

#define NM_TABLE_MAX_COLS 32
#define NM_TABLE_GAP 3

struct nm_table {
	unsigned int ncols;
	unsigned int nrows, cap;
	char **cells;  /* (nrows + 1) * ncols: row 0 holds the heads */
	size_t width[NM_TABLE_MAX_COLS];
};

static int add_row(struct nm_table *t, const char *const *cells)
{
	char **row;

	if (t->nrows + 1 >= t->cap) {
		unsigned int ncap = t->cap ? t->cap * 2 : 16;
		char **p = realloc(t->cells, (size_t)ncap * t->ncols * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->cells = p;
		t->cap = ncap;
	}
	row = t->cells + (size_t)t->nrows * t->ncols;
	for (unsigned int c = 0; c < t->ncols; c++) {
		const char *s = cells[c] && cells[c][0] ? cells[c] : "-";
		size_t len = strlen(s);

		row[c] = strdup(s);
		if (!row[c]) {
			while (c--)
				free(row[c]);
			return -ENOMEM;
		}
		if (len > t->width[c])
			t->width[c] = len;
	}
	t->nrows++;
	return 0;
}

int nm_table_new(struct nm_table **out, unsigned int ncols,
		 const char *const *heads)
{
	struct nm_table *t;
	int ret;

	*out = NULL;
	if (!ncols || ncols > NM_TABLE_MAX_COLS || !heads)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ncols = ncols;
	ret = add_row(t, heads);
	if (ret) {
		free(t);
		return ret;
	}
	*out = t;
	return 0;
}

int nm_table_row(struct nm_table *t, const char *const *cells)
{
	return add_row(t, cells);
}

unsigned int nm_table_rows(const struct nm_table *t)
{
	return t->nrows - 1;
}

int nm_table_print(const struct nm_table *t, FILE *out)
{
	return nm_table_print_indent(t, out, 0);
}

int nm_table_print_indent(const struct nm_table *t, FILE *out, unsigned int indent)
{
	for (unsigned int r = 0; r < t->nrows; r++) {
		char **row = t->cells + (size_t)r * t->ncols;

		fprintf(out, "%*s", (int)indent, "");
		for (unsigned int c = 0; c < t->ncols; c++) {
			if (c + 1 < t->ncols)
				fprintf(out, "%-*s%*s", (int)t->width[c], row[c],
					NM_TABLE_GAP, "");
			else
				fprintf(out, "%s\n", row[c]);
		}
	}
	return ferror(out) ? -EIO : 0;
}

void nm_table_free(struct nm_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < (size_t)t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
