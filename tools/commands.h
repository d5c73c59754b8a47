/* SPDX-License-Identifier: Apache-2.0 */
/*
 * commands.h - the nodemesh CLI's command entry points, dispatched by
 * tools/nodemesh.c. Each gets argv from its own name on (argv[0] is "ca") and
 * returns the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef NM_TOOLS_COMMANDS_H
#define NM_TOOLS_COMMANDS_H

/*
 * nodemesh ca init  --dir DIR [--trust-domain TD] [--days N] [--force] [--json]
 * nodemesh ca issue --dir DIR --out CERTDIR --ns NS --sa SA [--days N] [--json]
 * nodemesh ca help
 * argv may also start at the subcommand ("init"), without "ca".
 */
int nm_cmd_ca(int argc, char **argv);

#endif
