/* SPDX-License-Identifier: Apache-2.0 */
/*
 * commands.h - the nodemesh commands, dispatched by tools/nodemesh.c. Each
 * gets argv from its own name on (argv[0] is "status") with the global
 * options (--json, --pretty) already taken out, and returns NM_EXIT_*.
 * Every one of them only reads unless its name says otherwise (ca, cleanup).
 */
#ifndef NM_TOOLS_COMMANDS_H
#define NM_TOOLS_COMMANDS_H

#include "nodemesh.h"

/*
 * nodemesh status [--instance NAME] [--run-dir DIR] [--pin-dir DIR]
 * What each agent instance recorded (run state, kernel features it probed
 * at start, its choices) and what is pinned (maps, links, agent state map).
 * Reads files and pinned objects only: no probe, no cgroup, no module.
 */
int nm_cmd_status(const struct nm_cli *cli, int argc, char **argv);

/* nodemesh maps [--instance NAME] [--pin-dir DIR]: pinned maps, fill. */
int nm_cmd_maps(const struct nm_cli *cli, int argc, char **argv);

/* nodemesh cleanup [--instance NAME] [--pin-dir DIR]: detach, unpin. */
int nm_cmd_cleanup(const struct nm_cli *cli, int argc, char **argv);

/*
 * nodemesh ca init  --dir DIR [--trust-domain TD] [--days N] [--force]
 * nodemesh ca issue --dir DIR --out CERTDIR --ns NS --sa SA [--days N]
 */
int nm_cmd_ca(const struct nm_cli *cli, int argc, char **argv);

/*
 * nodemesh policy check --to NS/WORKLOAD --port PORT [--from SPIFFE_ID] ...
 * nodemesh policy list: AuthorizationPolicy, offline or from an instance.
 */
int nm_cmd_policy(const struct nm_cli *cli, int argc, char **argv);

/*
 * nodemesh workloads | services [--instance NAME] [--run-dir DIR] [--pin-dir DIR]
 * The run state's names joined with the pinned maps' IDs (workloads.c).
 */
int nm_cmd_workloads(const struct nm_cli *cli, int argc, char **argv);
int nm_cmd_services(const struct nm_cli *cli, int argc, char **argv);

/* nodemesh flows [--follow] [--workload W] [--admin ADDR:PORT]: admin API. */
int nm_cmd_flows(const struct nm_cli *cli, int argc, char **argv);

/* nodemesh certs: the agent's certificates and their validity. */
int nm_cmd_certs(const struct nm_cli *cli, int argc, char **argv);

/* nodemesh version: the CLI's, the map ABI's and the running agents' */
int nm_cmd_version(const struct nm_cli *cli, int argc, char **argv);

#endif
