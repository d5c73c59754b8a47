/* SPDX-License-Identifier: Apache-2.0 */
/*
 * datapath.h - loads nodemesh's BPF programs, pins its maps and links under
 * /sys/fs/bpf/nodemesh/<instance>/, attaches connect4/connect6/sockops/ingress to the
 * node's cgroup root through bpf_link, and writes the map model.
 *
 * Links are pinned too (<pin>/link_connect4 ...) so that redirection stays in
 * place while the agent restarts: a meshed connect() to a stopped agent then
 * fails fast with ECONNREFUSED (fail-closed) instead of leaking to the
 * original destination. A restarting agent swaps its new programs into the
 * pinned links atomically (bpf_link_update). nm_datapath_remove_pins() tears
 * everything down.
 *
 * IDs in maps are the state's stable IDs (state/state.h): keyed by kind,
 * namespace and name, never by position in a file.
 */
#ifndef NM_DATAPATH_H
#define NM_DATAPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nm_abi.h"
#include "nm_events.h"
#include "lib/addr.h"
#include "state/cluster.h"

#include "lib/pins.h"

struct nm_datapath;

/* How nm_events reaches the agent (include/nm_events.h). */
enum nm_events_transport {
	NM_EVENTS_AUTO = 0,    /* ring buffer where the kernel has one */
	NM_EVENTS_RINGBUF = 1, /* BPF_MAP_TYPE_RINGBUF (5.8) */
	NM_EVENTS_PERFBUF = 2, /* BPF_MAP_TYPE_PERF_EVENT_ARRAY, per CPU */
};

struct nm_datapath_opts {
	const char *instance;    /* "default" when NULL */
	const char *cgroup_root; /* absolute path of a cgroup v2 directory */
	/* sockops keeps per-socket TCP statistics (nm_sock_stats) of meshed
	 * sockets and sends a close record per flow; false: neither (the
	 * const volatile nm_cfg_sock_stats, telemetry.sockStats). A zeroed
	 * struct turns them off: the agent sets it from its config. */
	bool sock_stats;
	enum nm_events_transport events; /* AUTO: probed at open */
};

/* Map contents computed from the cluster for one node (pure). */
struct nm_model_workload { uint64_t cgroup_id; struct nm_workload val; };
struct nm_model_service  { struct nm_svc_key key; struct nm_service val; };
struct nm_model_backend  { struct nm_backend_key key; struct nm_backend val; };
struct nm_model_endpoint { struct nm_addr key; struct nm_endpoint val; };
struct nm_policy_rec; /* policy/compile.h: nm_policy key and value */
/* Load balancing (nm_abi.h): one per VIP port and family, and the Maglev
 * tables. be_first: index in nm_model.backends of the set's slot 0;
 * mg_first[i]: index in nm_model.maglev of subset i's table. */
struct nm_model_lb_set {
	struct nm_backend_key key;
	struct nm_lb_set val;
	uint32_t lb_algo;
	uint32_t be_first;
	uint32_t mg_first[NM_LB_MAX_SUBSETS];
};
struct nm_model_maglev   { struct nm_maglev_key key; uint32_t val; };
/* Strict inbound: an address whose SYNs a STRICT workload admits. */
struct nm_model_prober   { struct nm_addr key; uint32_t val; };

struct nm_model {
	struct nm_model_workload *workloads; unsigned int n_workloads;
	struct nm_model_service *services;   unsigned int n_services;
	struct nm_model_backend *backends;   unsigned int n_backends;
	struct nm_model_endpoint *endpoints; unsigned int n_endpoints;
	struct nm_policy_rec *policies;      unsigned int n_policies;
	struct nm_model_lb_set *lb_sets;     unsigned int n_lb_sets;
	struct nm_model_maglev *maglev;      unsigned int n_maglev;
	struct nm_model_prober *probers;     unsigned int n_probers;
};

struct nm_state;

/*
 * Builds the map model of a state: its node's local workloads that have a
 * cgroup (by cgroup id), every service VIP:port (v4 and v6) with its
 * endpoints from the whole cluster, every workload address as an
 * endpoint, and the policy records compiled from s->policies (none when it
 * is NULL, or when they would not fit in nm_policy: then a warning, and the
 * destination agents decide alone). 0 or -errno with a message in err.
 */
int nm_model_build(const struct nm_state *s, struct nm_model *out, char *err,
		   size_t errlen);
void nm_model_free(struct nm_model *m);

/* cgroup v2 mount point found from /proc/self/mountinfo; 0 or -ENOENT. */
int nm_cgroup2_mount(char *buf, size_t len);
/* Absolute cgroup path (relative ones are joined to the v2 mount). */
int nm_cgroup_resolve(const char *path, char *buf, size_t len);
/* The cgroup id (as bpf_get_current_cgroup_id() returns) of a v2 directory. */
int nm_cgroup_id(const char *abs_path, uint64_t *id);
/* The calling process's cgroup v2 id; 0 or -errno. */
int nm_cgroup_self_id(uint64_t *id);

int nm_datapath_open(const struct nm_datapath_opts *opts,
		     struct nm_datapath **out, char *err, size_t errlen);
/* Closes fds; pinned maps and links stay. NULL is fine. */
void nm_datapath_close(struct nm_datapath *dp);
/* Removes the instance's pin directory and everything in it. */
int nm_datapath_remove_pins(const char *instance);

/*
 * Replaces workloads/services/backends/endpoints/policy records and the load
 * balancing layout and Maglev tables with the model's, without touching
 * established connections. NM_EP_EJECTED set by
 * nm_datapath_set_backend_flags() stays on the endpoint (service, address,
 * port) across syncs; a Maglev table keeps the size in force while it still
 * fits (lb/lb.h nm_lb_maglev_size()).
 */
int nm_datapath_sync(struct nm_datapath *dp, const struct nm_model *m);
/* least_request: this node's open connections counted on an endpoint. */
int nm_datapath_lb_active(struct nm_datapath *dp, uint32_t workload_id,
			  uint64_t *count);
int nm_datapath_set_state(struct nm_datapath *dp, const struct nm_agent_state *st);
int nm_datapath_get_state(struct nm_datapath *dp, struct nm_agent_state *out);
/*
 * Deletes every redirect record (both nm_orig maps) and every nm_mesh_conns
 * tuple: an agent that starts must not trust records an earlier run left
 * behind. 0 or -errno.
 */
int nm_datapath_flush_records(struct nm_datapath *dp, unsigned int *flushed);
/*
 * Strict inbound (docs/strict.md): the 4-tuple of an agent connection to a
 * local pod, as the pod will see its SYN (saddr/sport: the agent's bound
 * end; daddr/dport: the pod), goes into nm_mesh_conns before connect() and
 * out when the socket closes. workload_id is the destination's (shown by
 * bpftool). NULL dp: nothing, 0. 0 or -errno.
 */
int nm_datapath_mesh_conn_add(struct nm_datapath *dp,
			      const struct nm_conn_key *key, uint32_t workload_id);
int nm_datapath_mesh_conn_del(struct nm_datapath *dp,
			      const struct nm_conn_key *key);
/* Stamps heartbeat_ns with the BPF clock (CLOCK_MONOTONIC). */
int nm_datapath_heartbeat(struct nm_datapath *dp);
/*
 * Looks up the record sockops stored for the accepted connection whose peer
 * (client) address is `peer`, deletes it and returns it. 0 or -ENOENT.
 */
int nm_datapath_take_orig(struct nm_datapath *dp,
			  const struct sockaddr_storage *peer,
			  struct nm_orig *out);

/*
 * Sets and clears enum nm_endpoint_flags bits on every nm_backends slot of
 * service_id whose endpoint is addr:port (port in network order); *updated
 * (may be NULL) gets how many slots changed. NULL dp: nothing, 0. For the
 * agent's outlier ejection (mesh/outlier.h). 0 or -errno.
 */
int nm_datapath_set_backend_flags(struct nm_datapath *dp, uint32_t service_id,
				  const struct nm_addr *addr, __be16 port,
				  uint32_t set, uint32_t clear,
				  unsigned int *updated);

/* --- telemetry (include/nm_events.h, docs/telemetry.md) ---------------- */

/* The transport nm_events got at open (never AUTO), and its map fd. */
enum nm_events_transport nm_datapath_events_transport(const struct nm_datapath *dp);
const char *nm_events_transport_name(enum nm_events_transport t);
int nm_datapath_events_fd(const struct nm_datapath *dp);
/* Whether sockops keeps statistics (opts.sock_stats). */
bool nm_datapath_sock_stats_on(const struct nm_datapath *dp);

/*
 * The statistics sockops keeps for the socket `fd` (one of the caller's:
 * the kernel looks the socket up by fd in nm_sock_stats). A TCP socket
 * sockops does not track (the agent's own sockets live outside the cgroup
 * root the programs are attached to) is read with getsockopt(TCP_INFO)
 * instead: the counters, srtt and retransmits as the kernel has them (bytes
 * may include a FIN), identities zero, flags NM_FLOW_TCP_INFO. 0, -ENOENT
 * for neither, -errno.
 */
int nm_datapath_sock_stats(struct nm_datapath *dp, int fd,
			   struct nm_sock_stats *out);

/* A workload's counters summed over CPUs; all zero when it has none. */
int nm_datapath_wl_stats(struct nm_datapath *dp, uint32_t workload_id,
			 struct nm_wl_stats *out);

/* nm_wl_stats.kernel_flows summed over every workload and CPU: the
 * same-node kernel-path connections begun since the map was created. */
int nm_datapath_kernel_flows(struct nm_datapath *dp, uint64_t *out);

/*
 * Every pinned map of enum nm_map_id (lib/mapinfo.h): entries counted by
 * walking the keys, max_entries, the BPF programs' failed updates summed
 * over CPUs, and the failed writes of this agent. out has NM_MAP__COUNT
 * slots. 0 or -errno.
 */
#include "lib/mapinfo.h"
int nm_datapath_map_info(struct nm_datapath *dp, struct nm_map_info *out);
/* This agent's failed writes to map id (counted in nm_map_info too). */
uint64_t nm_datapath_agent_map_errors(const struct nm_datapath *dp,
				      enum nm_map_id id);

#endif
