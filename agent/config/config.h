/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.h - the standalone cluster file (DESIGN §8) and the state model it
 * produces. Parsing is pure: no sockets, no maps, no TLS. Every agent reads the
 * same file and then keeps its own node's part (nodemeshd picks it by --node or local address).
 *
 * File format (JSON; unknown keys are rejected so typos are caught):
 * {
 *   "trustDomain": "cluster.local",            required, DNS-like name
 *   "certDir": "certs",                         required; relative paths are
 *                                               relative to the file's folder
 *   "mesh": {                                   optional
 *     "outboundPort": 15001, "inboundPort": 15008,
 *     "adminPort": 15000, "failMode": "closed"|"open"
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
 *                       the cgroup v2 mount) } ],
 *   "services": [ { "name": "echo", "namespace": "default",
 *                   "vip": "198.19.0.10", "vip6": "..." (optional),
 *                   "ports": [ { "port": 80, "targetPort": 8080 } ],
 *                   "selector": { "app": "echo" } } ],
 *   "forwards": [ static forwarding listeners, see struct nm_forward ]
 * }
 *
 * Errors name the file and the JSON path of the field, e.g.
 *   cluster.json: workloads[1].ip: "198.18.1.300" is not an IPv4 address
 */
#ifndef NM_CONFIG_H
#define NM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "lib/addr.h"
#include "lib/spiffe.h"

#define NM_MAX_LABELS 16
#define NM_MAX_PORTS 16
#define NM_ERRMSG_MAX 512


struct nm_label {
	char key[NM_NAME_MAX];
	char value[NM_NAME_MAX];
};

struct nm_node {
	char name[NM_NAME_MAX];
	struct nm_addr addr;      /* IPv4-mapped */
	bool has_addr6;
	struct nm_addr addr6;
	char cgroup_root[NM_PATH_MAX]; /* "" when this node has no datapath */
};

struct nm_workload_cfg {
	char name[NM_NAME_MAX];
	char ns[NM_NAME_MAX];
	char sa[NM_NAME_MAX];
	struct nm_label labels[NM_MAX_LABELS];
	unsigned int n_labels;
	struct nm_addr ip;        /* IPv4-mapped */
	bool has_ip6;
	struct nm_addr ip6;
	int node;               /* index into nm_cluster.nodes */
	char cgroup[NM_PATH_MAX];
};

struct nm_port_map {
	uint16_t port;          /* host order */
	uint16_t target_port;   /* host order */
};

struct nm_service_cfg {
	char name[NM_NAME_MAX];
	char ns[NM_NAME_MAX];
	struct nm_addr vip;       /* IPv4-mapped */
	bool has_vip6;
	struct nm_addr vip6;
	struct nm_port_map ports[NM_MAX_PORTS];
	unsigned int n_ports;
	struct nm_label selector[NM_MAX_LABELS];
	unsigned int n_selector;
};

/*
 * Static forwarding listener: a port on this agent that carries every
 * connection to one fixed destination through a peer agent's mTLS tunnel
 * (outbound), or an NMTP listener that delivers to one fixed destination
 * (inbound). Serves non-Kubernetes hosts, gateways and the benchmark hop.
 *
 *   { "name": "db", "mode": "outbound", "listen": "127.0.0.1:31041",
 *     "peer": "127.0.0.1:31046", "destination": "127.0.0.1:31001",
 *     "identity": "default/client",                (ns/sa whose cert we present)
 *     "peerIdentity": "spiffe://cluster.local/ns/default/sa/server" }
 *   { "name": "db-in", "mode": "inbound", "listen": "127.0.0.1:31046",
 *     "destination": "127.0.0.1:31001",
 *     "identity": "default/server",                (cert presented to clients)
 *     "allowedPeers": ["spiffe://cluster.local/ns/default/sa/client"] (optional;
 *        empty = any identity in the trust domain) }
 */
enum nm_forward_mode {
	NM_FWD_OUTBOUND = 0,
	NM_FWD_INBOUND = 1,
};

#define NM_MAX_FORWARDS 64
#define NM_MAX_ALLOWED_PEERS 8

struct nm_forward_cfg {
	char name[NM_NAME_MAX];
	enum nm_forward_mode mode;
	struct sockaddr_storage listen;
	struct sockaddr_storage peer;        /* outbound only */
	struct sockaddr_storage destination;
	char id_ns[NM_NAME_MAX];             /* identity presented */
	char id_sa[NM_NAME_MAX];
	char peer_identity[NM_SPIFFE_MAX];   /* outbound: expected server ID */
	char allowed_peers[NM_MAX_ALLOWED_PEERS][NM_SPIFFE_MAX];
	unsigned int n_allowed_peers;
};

enum nm_fail_mode_cfg {
	NM_CFG_FAIL_CLOSED = 0,
	NM_CFG_FAIL_OPEN = 1,
};

/*
 * Overload limits ("mesh": {"limits": {...}}). 0 = derive the default from
 * RLIMIT_NOFILE at start (docs/config.md, "Limits"); beyond a limit a new
 * connection is refused at once and counted.
 */
struct nm_limits_cfg {
	uint32_t max_flows;          /* "maxFlows": live flows on this agent */
	uint32_t max_handshakes;     /* "maxHandshakes": TLS handshakes in progress */
	uint32_t max_flows_per_pod;  /* "maxFlowsPerPod": per source workload */
	uint32_t max_flows_per_peer; /* "maxFlowsPerPeer": per peer address (inbound) */
};

struct nm_mesh_cfg {
	uint16_t outbound_port;  /* default 15001 */
	uint16_t inbound_port;   /* default 15008 */
	uint16_t admin_port;     /* default 15000 */
	enum nm_fail_mode_cfg fail_mode;
	struct nm_limits_cfg limits;
};

struct nm_cluster {
	char path[NM_PATH_MAX];          /* the file it came from */
	char trust_domain[NM_NAME_MAX];
	char cert_dir[NM_PATH_MAX];      /* resolved against the file's folder */
	struct nm_mesh_cfg mesh;
	struct nm_node *nodes;
	unsigned int n_nodes;
	struct nm_workload_cfg *workloads;
	unsigned int n_workloads;
	struct nm_service_cfg *services;
	unsigned int n_services;
	struct nm_forward_cfg *forwards;
	unsigned int n_forwards;
};

/*
 * Parse a cluster file. On success returns 0 and *out owns heap memory (free
 * with nm_cluster_free). On failure returns -EINVAL (or -errno for I/O) and
 * writes "FILE: json.path: what is wrong" into err.
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
/* True when every selector label of svc is among wl's labels, same namespace. */
bool nm_service_selects(const struct nm_service_cfg *svc,
			const struct nm_workload_cfg *wl);

#endif
