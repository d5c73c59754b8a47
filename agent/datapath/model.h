/* SPDX-License-Identifier: Apache-2.0 */
/*
 * model.h - map contents straight from a snapshot, for tests and tools that
 * have a cluster file but no agent: builds a throwaway state (fresh ID
 * registry, generation 1) for node index `node` with the cgroup lookup
 * passed in, then nm_model_build(). The agent itself keeps one registry and
 * calls nm_state_build() and nm_model_build() (datapath.h).
 */
#ifndef NM_DATAPATH_MODEL_H
#define NM_DATAPATH_MODEL_H

#include <stdint.h>

#include "datapath/datapath.h"
#include "state/state.h"

/* The default lookup: nm_cgroup_resolve() then nm_cgroup_id(); arg unused. */
int nm_model_cgroup_id(const char *cgroup, uint64_t *id, void *arg);

int nm_model_build_with(const struct nm_cluster *c, int node,
			nm_cgroup_id_fn cgroup_id, void *arg,
			struct nm_model *out, char *err, size_t errlen);

#endif
