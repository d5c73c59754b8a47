/* SPDX-License-Identifier: Apache-2.0 */
/*
 * common.h - what the commands that look at one agent instance share: the
 * --instance/--run-dir/--pin-dir options, the run state (agent.json, the
 * agent's name tables: core/runstate.c) and the pinned maps, and the joins
 * between them (IDs in maps -> names in the run state).
 */
#ifndef NM_TOOLS_COMMON_H
#define NM_TOOLS_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

#include "lib/pins.h"
#include "nodemesh.h"

/* agent.json may hold tens of thousands of workloads. */
#define NM_CLI_STATE_FILE_MAX (64u << 20)

struct nm_target {
	const char *instance; /* NULL until resolved */
	const char *run_dir;
	const char *pin_base;
	char buf[NM_INSTANCE_MAX + 1];
};

/*
 * Parses argv (from the command's name on) for --instance/-i, --run-dir,
 * --pin-dir, --help/-h and the command's own long options `extra` (short
 * letters in extra_short, getopt syntax), calling on_opt for those. The
 * positional arguments are left at argv[*first_arg..argc). Then picks the
 * instance (nm_target_resolve). 0, -1 after --help was printed, or
 * NM_EXIT_USAGE (reported).
 */
int nm_target_parse(const struct nm_cli *cli, int argc, char **argv,
		    const char *usage, struct nm_target *t,
		    const struct option *extra, const char *extra_short,
		    int (*on_opt)(int c, const char *arg, void *ctx), void *ctx,
		    int *first_arg);
/*
 * Without --instance: the one instance that has a run or pin directory;
 * "default" when there are none or several of them (named in the error a
 * command gives when "default" has nothing).
 */
void nm_target_resolve(struct nm_target *t);

/* The instance's state file (agent.json, features.json); NULL when absent,
 * with err set for failures other than absence. */
json_t *nm_state_load(const char *run_dir, const char *instance, const char *file,
		      char *err, size_t errlen);
/* "running", "stopped" or "stale" (pid reused); comm gets the pid's name. */
const char *nm_process_state(pid_t pid, char *comm, size_t len);
/* Seconds the process has run (from /proc); -1 when unknown. */
long long nm_process_uptime(pid_t pid);

/* The element of array arr whose integer field key equals id; NULL. */
json_t *nm_json_find_id(json_t *arr, const char *key, json_int_t id);
/*
 * Adds names next to the IDs of a decoded map record (lib/abidecode.h), from
 * agent.json's tables: "<x>workload_id" gets "<x>workload" ("ns/name"),
 * "<x>identity_id" "<x>identity" (SPIFFE ID), "service_id" "service",
 * "node_id" "node". Recurses into objects; agent NULL: nothing added.
 */
void nm_json_add_names(json_t *rec, json_t *agent);

/* The pinned map's fd (open read-only); -errno. */
int nm_pinned_map(const struct nm_target *t, const char *name, char *path,
		  size_t pathlen);
/* Entries of a map by walking its keys; -1 for maps where a count means
 * nothing (arrays, ring buffers, socket storage). */
long nm_map_count(int fd, unsigned int type, unsigned int key_size);

#endif
