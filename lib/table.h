/* SPDX-License-Identifier: Apache-2.0 */
/*
 * table.h - the CLI's human output: columns aligned like `kubectl get`
 * (upper-case heads, left-aligned cells, three spaces between columns, no
 * trailing blanks). Cells are copied; a NULL or empty cell prints "-", so a
 * column never looks shifted. Pure, so tests/unit/check_cli.c pins it down.
 */
#ifndef NM_LIB_TABLE_H
#define NM_LIB_TABLE_H

#include <stdio.h>

struct nm_table;

/* A table of ncols columns (1..32) with these heads; 0 or -EINVAL/-ENOMEM. */
int nm_table_new(struct nm_table **out, unsigned int ncols,
		 const char *const *heads);
/* Appends a row of ncols cells; 0 or -ENOMEM. */
int nm_table_row(struct nm_table *t, const char *const *cells);
unsigned int nm_table_rows(const struct nm_table *t);
/* Prints heads and rows; 0 or -EIO. */
int nm_table_print(const struct nm_table *t, FILE *out);
/* The same, each line after indent spaces (tables inside a section). */
int nm_table_print_indent(const struct nm_table *t, FILE *out, unsigned int indent);
void nm_table_free(struct nm_table *t);

#endif
