/* SPDX-License-Identifier: Apache-2.0 */
/* nodemesh.h - the CLI's command table; each command gets argv from its
 * own name on and returns the process exit status. */
#ifndef NM_CLI_H
#define NM_CLI_H

#include "commands.h"
#include "status.h"

#define NM_VERSION "0.1.0"

struct nm_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

int nm_cmd_maps(int argc, char **argv);
int nm_cmd_cleanup(int argc, char **argv);
int nm_cmd_version(int argc, char **argv);

#endif
