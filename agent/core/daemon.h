/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon.h - nodemeshd's own state around the proxy context: where its
 * configuration comes from and the timers and watches that reload it.
 * main.c starts it; reload.c applies snapshots and policy sets.
 */
#ifndef NM_CORE_DAEMON_H
#define NM_CORE_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mesh/proxy.h"
#include "policy/policy.h"
#include "telemetry/health.h"
#include "datapath/events.h"

struct nm_daemon {
	struct nm_agent agent;
	uint64_t agent_cgroup_id;
	char node_buf[NM_NAME_MAX]; /* node_name outlives any one snapshot */
	const char *config_path;
	const char *node_name;
	bool tls_resumption;
	struct timespec config_mtime;
	uint64_t flows_high;      /* most live flows since the last trim */
	int sigfd;
	uint64_t reload_timer;
	int policy_fd;                     /* inotify on policyDir, -1: none */
	char policy_watched[NM_PATH_MAX];  /* the folder policy_fd watches */
	uint64_t policy_timer;             /* debounce after a change */
	struct nm_health *health;          /* :15021/healthz/ready, or NULL */
	struct nm_certdir *certdir;        /* certDir watcher (certs.c), or NULL */
	/* BPF telemetry (datapath/events.h): sockops statistics asked for
	 * (telemetry.sockStats), the transport the probe chose, the reader. */
	bool sock_stats;
	enum nm_events_transport events_transport;
	struct nm_events *events;          /* NULL without a datapath */
	struct nm_ratelimit events_rl;
};

int nm_daemon_file_mtime(const char *path, struct timespec *ts);
/* The state of snapshot c for this agent as generation gen (logged on
 * failure). */
int nm_daemon_state_build(struct nm_daemon *d, const struct nm_cluster *c,
			  uint32_t gen, struct nm_state **out);
/* a->paths.kernel_path.flows from the kernel's counters (each second). */
void nm_daemon_kernel_path_poll(struct nm_agent *a);
/* Loads the BPF datapath, flushes stale records, writes the maps. */
int nm_daemon_datapath_start(struct nm_daemon *d);
/* c's policyDir as a set (*out NULL: none); -EINVAL logged. */
int nm_daemon_policies_load(const struct nm_cluster *c,
			    struct nm_policy_set **out);
/* Publishes the set in force for the CLI and watches its folder. */
void nm_daemon_policies_publish(struct nm_daemon *d);
/* Applies the cluster file again, whole or not at all. */
void nm_daemon_reload(struct nm_daemon *d);
/*
 * Applies snapshot c (taken over: kept, or freed when refused) whole or
 * not at all, from any source (the cluster file, the Kubernetes watch).
 * 0, or -EINVAL when refused (logged, the last good state stays).
 */
int nm_daemon_apply(struct nm_daemon *d, struct nm_cluster *c);
/* Watches the snapshot's certDir (again when it or the trust domain
 * moved) and swaps rotated credentials in for new handshakes (certs.c). */
void nm_daemon_certs_watch(struct nm_daemon *d);
void nm_daemon_certs_stop(struct nm_daemon *d);

#endif
