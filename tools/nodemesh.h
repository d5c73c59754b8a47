/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nodemesh.h - what every nodemesh command shares: the global options, the
 * command table entry, exit statuses, and output that follows --json (as
 * bpftool does: with --json, results and errors are JSON on stdout).
 */
#ifndef NM_CLI_H
#define NM_CLI_H

#include <stdbool.h>
#include <jansson.h>

#include "lib/version.h"

/* Exit statuses of every command. */
#define NM_EXIT_OK 0
#define NM_EXIT_FAIL 1  /* the command could not do its job */
#define NM_EXIT_USAGE 2 /* the command line is wrong */

/* Global options, taken from anywhere on the command line. */
struct nm_cli {
	bool json;   /* --json, -j */
	bool pretty; /* --pretty, -p: indented JSON (implies --json) */
};

/* argv starts at the command's own name; returns an exit status. */
struct nm_cmd {
	const char *name;
	int (*fn)(const struct nm_cli *cli, int argc, char **argv);
	const char *help;
};

/*
 * Reports a failure: "nodemesh: <message>" on stderr, or {"error": message}
 * on stdout with --json. Returns status, for `return nm_cli_fail(...)`.
 */
int nm_cli_fail(const struct nm_cli *cli, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A usage error: the message, then usage on stderr; returns NM_EXIT_USAGE. */
int nm_cli_usage_error(const struct nm_cli *cli, const char *usage,
		       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * The usage error for getopt_long's return c ('?' or ':', with optstring
 * starting with ':' and opterr = 0) after it stopped at argv[optind - 1].
 */
int nm_cli_getopt_error(const struct nm_cli *cli, const char *usage, int c,
			char **argv);
/* Prints doc (released) per --json/--pretty; NM_EXIT_OK or NM_EXIT_FAIL. */
int nm_cli_print_json(const struct nm_cli *cli, json_t *doc);

#endif
