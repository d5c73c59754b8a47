/* SPDX-License-Identifier: Apache-2.0 */
/*
 * model.h - nm_model_build() with the cgroup lookup passed in, so the model
 * (pure apart from turning cgroup paths into ids) can be unit-tested without
 * creating cgroups. nm_model_build() is this with nm_model_cgroup_id().
 */
#ifndef NM_MODEL_H
#define NM_MODEL_H

#include <stdint.h>

#include "datapath/datapath.h"

/* Maps a workload's configured cgroup path to its cgroup id; 0 or -errno. */
typedef int (*nm_cgroup_id_fn)(const char *cgroup, uint64_t *id, void *arg);

/* The default: nm_cgroup_resolve() then nm_cgroup_id(); arg is unused. */
int nm_model_cgroup_id(const char *cgroup, uint64_t *id, void *arg);

int nm_model_build_with(const struct nm_cluster *c, int node,
			nm_cgroup_id_fn cgroup_id, void *arg,
			struct nm_model *out, char *err, size_t errlen);

#endif
