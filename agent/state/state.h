/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.h - the agent's one model of the cluster (DESIGN §3-4): nodes,
 * workloads, services, identities and namespaces with stable IDs, indexed by
 * address, cgroup and ID. Built from a source's snapshot (cluster.h);
 * consumed by the datapath writer, the proxy and later policy, LB and
 * telemetry. A built state is immutable: a reload builds a new one and swaps
 * it in whole, or keeps the old one.
 *
 * IDs come from a registry (struct nm_ids) that outlives every state: an
 * object keeps its ID for as long as the agent runs, keyed by kind,
 * namespace and name, never by position in a file. An ID is never handed out
 * twice in one agent's life, so a redirect record of an older generation can
 * never name a different object than the one it was written for. Records are
 * flushed when an agent starts, so IDs of an earlier run never reach it.
 */
#ifndef NM_STATE_H
#define NM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nm_abi.h"
#include "state/cluster.h"

enum nm_kind {
	NM_KIND_NODE,
	NM_KIND_WORKLOAD,
	NM_KIND_SERVICE,
	NM_KIND_IDENTITY,  /* namespace + service account */
	NM_KIND_NAMESPACE,
	NM_KIND_MAX,
};

struct nm_ids;

int nm_ids_create(struct nm_ids **out);
void nm_ids_free(struct nm_ids *ids);
/* The ID of (kind, ns, name), allocated on first use; 0 or -ENOMEM/-ERANGE. */
int nm_ids_get(struct nm_ids *ids, enum nm_kind kind, const char *ns,
	       const char *name, uint32_t *id);

struct nm_st_node {
	uint32_t id;
	const struct nm_node *cfg;
};

struct nm_st_identity {
	uint32_t id;
	char ns[NM_NAME_MAX];
	char sa[NM_NAME_MAX];
};

struct nm_st_workload {
	uint32_t id;
	uint32_t identity_id;
	uint32_t namespace_id;
	const struct nm_st_node *node;
	const struct nm_workload_cfg *cfg;
	uint64_t cgroup_id; /* local workloads with a cgroup; 0: not meshed here */
	bool local;         /* runs on this agent's node */
	bool strict;        /* inbound mode STRICT (its own, else mesh.defaultMode) */
};

struct nm_st_service {
	uint32_t id;
	uint32_t namespace_id;
	const struct nm_service_cfg *cfg;
};

struct nm_st_index; /* state/index.h */
struct nm_policy_set; /* policy/policy.h */

struct nm_state {
	uint32_t generation;
	const struct nm_cluster *cluster; /* the snapshot; outlives the state */
	const struct nm_st_node *self;   /* NULL: forwards only */
	struct nm_st_node *nodes;
	unsigned int n_nodes;
	struct nm_st_workload *workloads;
	unsigned int n_workloads;
	struct nm_st_service *services;
	unsigned int n_services;
	struct nm_st_identity *identities;
	unsigned int n_identities;
	struct nm_st_index *by_addr;      /* workload ip/ip6 -> workload */
	struct nm_st_index *by_cgroup;    /* cgroup id -> local workload */
	struct nm_st_index *wl_by_id;     /* workload id -> workload */
	struct nm_st_index *id_by_id;     /* identity id -> identity */
	/* AuthorizationPolicy set in force (policy/policy.h), set by the agent
	 * after building the state; NULL: none. Not owned by the state. */
	const struct nm_policy_set *policies;
};

/* Maps a workload's configured cgroup path to its cgroup id; 0 or -errno. */
typedef int (*nm_cgroup_id_fn)(const char *cgroup, uint64_t *id, void *arg);

struct nm_state_opts {
	const char *self_node;     /* this agent's node name; NULL: none */
	uint32_t generation;
	nm_cgroup_id_fn cgroup_id; /* resolves local workloads' cgroups */
	void *cgroup_arg;
	uint64_t agent_cgroup_id;  /* the agent's own cgroup: never meshed */
};

/*
 * Builds a state from the snapshot c, which must outlive it (the state
 * points into it; whoever owns the snapshot frees it after the state).
 * 0 or -errno with "FILE: what" in err.
 * A local workload without a cgroup is known (address, identity) but not
 * meshed on this node.
 */
int nm_state_build(const struct nm_cluster *c, struct nm_ids *ids,
		   const struct nm_state_opts *opts, struct nm_state **out,
		   char *err, size_t errlen);
void nm_state_free(struct nm_state *s);

const struct nm_st_workload *nm_state_workload_by_addr(const struct nm_state *s,
						       const struct nm_addr *a);
const struct nm_st_workload *nm_state_workload_by_cgroup(const struct nm_state *s,
							 uint64_t cgroup_id);
const struct nm_st_workload *nm_state_workload_by_id(const struct nm_state *s,
						     uint32_t id);
const struct nm_st_identity *nm_state_identity_by_id(const struct nm_state *s,
						     uint32_t id);
const struct nm_st_node *nm_state_node_by_name(const struct nm_state *s,
					       const char *name);

static inline const char *nm_state_trust_domain(const struct nm_state *s)
{
	return s->cluster->trust_domain;
}

#endif
