/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.h - the standalone cluster file (DESIGN §8), parsed into the snapshot
 * the state model is built from (state/cluster.h). Parsing is pure: no sockets, no maps, no TLS. Every agent reads the
 * same file and then keeps its own node's part (nodemeshd picks it by --node or local address).
 *
 * File format (JSON; unknown keys are rejected so typos are caught):
 * {
 *   "trustDomain": "cluster.local",            required, DNS-like name
 *   "certDir": "certs",                         required; relative paths are
 *                                               relative to the file's folder
 *   "mesh": {                                   optional
 *     "outboundPort": 15001, "inboundPort": 15008,
 *     "adminPort": 15000, "failMode": "closed"|"open",
 *     "limits": { "maxFlows": N, "maxHandshakes": N, "maxFlowsPerPod": N,
 *                 "maxFlowsPerPeer": N }   each optional, 0..10000000;
 *                                          0 = derived from RLIMIT_NOFILE
 *     "defaultMode": "PERMISSIVE"|"STRICT", "probers": ["198.18.0.1", ...]
 *                                          (docs/strict.md)
 *   },
 *   "nodes": [ { "name": "node-1", "address": "198.18.0.1",
 *                "address6": "2001:2::1" (optional),
 *                "cgroupRoot": "/sys/fs/cgroup/unified/nm/node-1" (optional;
 *                   absolute, or relative to the cgroup v2 mount) } ],
 *   "workloads": [ { "name": "client", "namespace": "default",
 *                    "serviceAccount": "client", "labels": {"app":"client"},
 *                    "ip": "198.18.1.2", "ip6": "..." (optional),
 *                    "node": "node-1",
 *                    "cgroup": "nm/node-1/client" (absolute or relative to
 *                       the cgroup v2 mount),
 *                    "mode": "STRICT"|"PERMISSIVE" (optional) } ],
 *   "services": [ { "name": "echo", "namespace": "default",
 *                   "vip": "198.19.0.10", "vip6": "..." (optional),
 *                   "ports": [ { "port": 80, "targetPort": 8080 } ],
 *                   "selector": { "app": "echo" } } ],
 *   "forwards": [ static forwarding listeners, see struct nm_forward ],
 *   "telemetry": { "metricsPort": 15020, "metricsAddress": "0.0.0.0",
 *                  "adminPort": 15000, "adminAddress": "127.0.0.1",
 *                  "sockStats": true, "clusterId": "Kubernetes",
 *                  "maxSeriesPerMetric": 2000,
 *                  "flowLog": { "mode": "off"|"sampled"|"full",
 *                               "sampleRate": 0.01, "file": "-",
 *                               "maxBytes": 104857600, "keep": 3 } }
 *                                          all optional (docs/config.md)
 * }
 *
 * Errors name the file and the JSON path of the field, e.g.
 *   cluster.json: workloads[1].ip: "198.18.1.300" is not an IPv4 address
 *
 * Inside agent/config: json.c walks JSON (typed fields, paths, key checks,
 * complexity caps), fields.c holds the file's value types, list.c the
 * top-level arrays and their duplicate checks, mesh.c nodes.c workloads.c
 * services.c forwards.c one section each, and this API in config.c.
 */
#ifndef NM_CONFIG_H
#define NM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "state/cluster.h"

#define NM_ERRMSG_MAX 512

/*
 * Parse a cluster file. On success returns 0 and *out owns heap memory (free
 * with nm_cluster_free). On failure returns -EINVAL (or -errno for I/O) and
 * writes "FILE: json.path: what is wrong" into err. Never blocks: the file
 * is opened O_NONBLOCK and must be a regular file of at most 16 MiB (a
 * FIFO, device or directory gives -EINVAL, "FILE: not a regular file").
 */
int nm_cluster_load_file(const char *path, struct nm_cluster **out,
			 char *err, size_t errlen);
/* Same, from a buffer; name is used in error messages in place of the path. */
int nm_cluster_load_buf(const char *buf, size_t len, const char *name,
			struct nm_cluster **out, char *err, size_t errlen);
void nm_cluster_free(struct nm_cluster *c);

/* Index of the node with this name, or -ENOENT. */
int nm_cluster_find_node(const struct nm_cluster *c, const char *name);
/* Index of the workload whose ip (or ip6) equals addr, or -ENOENT. */
int nm_cluster_find_workload_by_ip(const struct nm_cluster *c,
				   const struct nm_addr *addr);
/* Index of the workload with this namespace and name, or -ENOENT. */
int nm_cluster_find_workload(const struct nm_cluster *c, const char *ns,
			     const char *name);
#endif
