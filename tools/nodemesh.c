// SPDX-License-Identifier: Apache-2.0
/*
 * nodemesh - the command-line tool. Reads pinned maps and the agent's run
 * state; never agent internals. Shaped like bpftool: a command table, one
 * function per command, --json on every command.
 */
#include <stdio.h>
#include <string.h>

#include "nodemesh.h"

static const struct nm_cmd commands[] = {
	{ "status",  nm_cmd_status,  "kernel features and running agents" },
	{ "maps",    nm_cmd_maps,    "pinned maps of an instance and their fill" },
	{ "ca",      nm_cmd_ca,      "development CA: ca init | ca issue" },
	{ "cleanup", nm_cmd_cleanup, "remove an instance's pinned maps and links" },
	{ "version", nm_cmd_version, "print the version" },
	{ 0 },
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: nodemesh COMMAND [ARGS] [--json]\n\nCommands:\n");
	for (const struct nm_cmd *c = commands; c->name; c++)
		fprintf(out, "  %-9s %s\n", c->name, c->help);
	fprintf(out, "\nRun 'nodemesh COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	for (const struct nm_cmd *c = commands; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->fn(argc - 1, argv + 1);
	fprintf(stderr, "nodemesh: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
