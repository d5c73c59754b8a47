/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runstate.h - the running agent's self-description for the CLI, written to
 * /run/nodemesh/<instance>/agent.json (pid, node, listeners, datapath,
 * identities) at start and removed at exit. `nodemesh status` reads it, so
 * the CLI never needs agent internals.
 */
#ifndef NM_RUNSTATE_H
#define NM_RUNSTATE_H

#include "mesh/proxy.h"

#include "datapath/probe.h" /* NM_RUN_DIR: one run directory for all agent state */

#define NM_RUN_BASE NM_RUN_DIR

int nm_runstate_path(const char *instance, char *buf, size_t len);
int nm_runstate_write(const struct nm_agent *a);
void nm_runstate_remove(const struct nm_agent *a);

#endif
