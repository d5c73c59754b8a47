/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cluster.h - a source's snapshot of the cluster: nodes, workloads,
 * services, mesh settings and static forwards as plain records. Sources
 * (the cluster file today, the Kubernetes watch next) produce one; the state
 * model (state.h) indexes it and gives every object a stable ID. Positions
 * in these arrays mean nothing outside the snapshot.
 */
#ifndef NM_STATE_CLUSTER_H
#define NM_STATE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lib/addr.h"
#include "lib/spiffe.h"

#define NM_MAX_LABELS 16
#define NM_MAX_PORTS 16


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
	/* "labels": topology.kubernetes.io/zone gives the node's zone (LB). */
	struct nm_label labels[NM_MAX_LABELS];
	unsigned int n_labels;
};

/*
 * Inbound mode, as Istio's PeerAuthentication mode (docs/strict.md):
 * PERMISSIVE admits plaintext and mesh connections, STRICT only the mesh's.
 * A workload's UNSET takes mesh.defaultMode.
 */
enum nm_inbound_mode {
	NM_MODE_UNSET = 0,
	NM_MODE_PERMISSIVE = 1,
	NM_MODE_STRICT = 2,
};

/* mesh.probers: node-local addresses a STRICT workload admits (kubelet). */
#define NM_CFG_MAX_PROBERS 16

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
	enum nm_inbound_mode mode; /* "mode"; UNSET: mesh.defaultMode */
};

struct nm_port_map {
	uint16_t port;          /* host order */
	uint16_t target_port;   /* host order */
};

/*
 * Per-service resilience of the agent path ("services[].resilience",
 * docs/config.md). Every field has its default filled by the parser, so a
 * consumer never sees 0 meaning "unset" (0 retries and 0 breaker limits
 * are refused: a breaker of 0 would refuse every flow).
 */
struct nm_resilience_cfg {
	uint32_t connect_timeout_ms;   /* "connectTimeoutMs", default 5000 */
	uint32_t retries;              /* "retries", default 2 (0 = none) */
	uint32_t outlier_failures;     /* "outlier.consecutiveFailures", 5 */
	uint32_t outlier_base_ms;      /* "outlier.baseEjectionMs", 30000 */
	uint32_t outlier_max_percent;  /* "outlier.maxEjectionPercent", 50 */
	uint32_t max_connections;      /* "circuitBreaker.maxConnections", 1024 */
	uint32_t max_pending;          /* "circuitBreaker.maxPendingConnects", 256 */
	uint32_t idle_timeout_ms;      /* "idleTimeoutMs", 3600000; 0 = none */
	uint32_t keepalive_time_s;     /* "keepalive.timeS", 60; 0 = off */
	uint32_t keepalive_interval_s; /* "keepalive.intervalS", 10 */
	uint32_t keepalive_count;      /* "keepalive.count", 3 */
	bool present;                  /* the service has a "resilience" object:
					* it needs the agent, so no same-node
					* kernel path (docs/kernel-path.md) */
};

#define NM_RES_CONNECT_TIMEOUT_MS 5000
#define NM_RES_RETRIES 2
#define NM_RES_OUTLIER_FAILURES 5
#define NM_RES_OUTLIER_BASE_MS 30000
#define NM_RES_OUTLIER_MAX_PERCENT 50
#define NM_RES_MAX_CONNECTIONS 1024
#define NM_RES_MAX_PENDING 256
#define NM_RES_IDLE_TIMEOUT_MS 3600000
#define NM_RES_KEEPALIVE_TIME_S 60
#define NM_RES_KEEPALIVE_INTERVAL_S 10
#define NM_RES_KEEPALIVE_COUNT 3

/* The defaults; also what a service built without the parser (a zeroed
 * record, connect_timeout_ms 0) is treated as. */
static inline void nm_resilience_defaults(struct nm_resilience_cfg *r)
{
	*r = (struct nm_resilience_cfg){
		.connect_timeout_ms = NM_RES_CONNECT_TIMEOUT_MS,
		.retries = NM_RES_RETRIES,
		.outlier_failures = NM_RES_OUTLIER_FAILURES,
		.outlier_base_ms = NM_RES_OUTLIER_BASE_MS,
		.outlier_max_percent = NM_RES_OUTLIER_MAX_PERCENT,
		.max_connections = NM_RES_MAX_CONNECTIONS,
		.max_pending = NM_RES_MAX_PENDING,
		.idle_timeout_ms = NM_RES_IDLE_TIMEOUT_MS,
		.keepalive_time_s = NM_RES_KEEPALIVE_TIME_S,
		.keepalive_interval_s = NM_RES_KEEPALIVE_INTERVAL_S,
		.keepalive_count = NM_RES_KEEPALIVE_COUNT,
	};
}

/* "lb": {"algorithm", "locality"} of a service (docs/config.md). */
enum nm_lb_algo_cfg {
	NM_CFG_LB_RANDOM = 0,
	NM_CFG_LB_ROUND_ROBIN = 1,
	NM_CFG_LB_LEAST_REQUEST = 2,
	NM_CFG_LB_MAGLEV = 3,
};

enum nm_lb_locality_cfg {
	NM_CFG_LOC_FAILOVER = 0, /* same node, then same zone, then any */
	NM_CFG_LOC_STRICT = 1,   /* same node only */
	NM_CFG_LOC_NONE = 2,
};

struct nm_lb_cfg {
	enum nm_lb_algo_cfg algorithm;
	enum nm_lb_locality_cfg locality;
};

#define NM_MAX_SUBSETS 8

/* "subsets": endpoints selected by selector + the subset's labels, weighted. */
struct nm_subset_cfg {
	char name[NM_NAME_MAX];
	struct nm_label selector[NM_MAX_LABELS];
	unsigned int n_selector;
	uint32_t weight; /* 0..10000; the sum over subsets is > 0 */
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
	struct nm_lb_cfg lb;
	struct nm_subset_cfg subsets[NM_MAX_SUBSETS];
	unsigned int n_subsets; /* 0: one implicit subset of every endpoint */
	struct nm_resilience_cfg resilience;
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

/* "mesh.tunnelPool" (mesh/pool.h): pre-established tunnels to peer agents. */
struct nm_pool_cfg {
	uint32_t size;       /* "size": connections kept per key, default 2; 0 = off */
	uint32_t idle_ms;    /* "idleTimeoutMs": retired this long after connect, default 8000 */
	uint32_t max_total;  /* "maxConnections": in the whole pool, default 256 */
};

/* "relay": how flows with two plain legs move bytes (mesh/zerocopy.h). */
enum nm_relay_mode {
	NM_RELAY_AUTO = 0, /* splice: the fastest correct relay (nm_zc_setup) */
	NM_RELAY_SOCKMAP,
	NM_RELAY_SPLICE,
	NM_RELAY_COPY,
};

struct nm_mesh_cfg {
	uint16_t outbound_port;  /* default 15001 */
	uint16_t inbound_port;   /* default 15008 */
	uint16_t admin_port;     /* default 15000 */
	enum nm_fail_mode_cfg fail_mode;
	struct nm_limits_cfg limits;
	char root_ns[NM_NAME_MAX]; /* "rootNamespace", default istio-system */
	uint16_t health_port;      /* "healthPort": /healthz/ready, default 15021, 0 = off */
	bool preserve_src;         /* "preserveSourceAddress", default true */
	bool kernel_path;          /* "kernelPath": same-node connect4/6 rewrite
				    * straight to the backend, default true */
	bool ktls_off;             /* "ktls": "auto" (default) or "off" */
	bool tls_records_openssl;  /* "tlsRecords": "auto" (default) or "openssl" */
	bool tls_ec_provider;      /* "tlsEcMethods": "auto" (default) or "provider" */
	uint32_t busy_poll_us;     /* "busyPoll": loop spin and SO_BUSY_POLL us, 0 = off */
	int64_t cert_expiry_warning; /* "certExpiryWarning" s; -1 default, 0 off */
	enum nm_inbound_mode default_mode; /* "defaultMode", default PERMISSIVE */
	enum nm_relay_mode relay;  /* "relay", default auto; read at start */
	/* "probers": absent (probers_set false) = this node's own addresses. */
	bool probers_set;
	struct nm_addr probers[NM_CFG_MAX_PROBERS];
	unsigned int n_probers;
	struct nm_pool_cfg tunnel_pool;
};

/*
 * "telemetry" (docs/config.md, docs/telemetry.md): the metrics and admin
 * HTTP servers, BPF socket statistics and the flow log.
 */
enum nm_flowlog_mode {
	NM_FLOWLOG_OFF = 0,
	NM_FLOWLOG_SAMPLED = 1,
	NM_FLOWLOG_FULL = 2,
};

struct nm_flowlog_cfg {
	enum nm_flowlog_mode mode;  /* "mode", default off */
	double sample_rate;         /* "sampleRate" 0..1, default 0.01 (sampled) */
	char file[NM_PATH_MAX];     /* "file": "" = stdout ("-" too) */
	uint64_t max_bytes;         /* "maxBytes": rotate past this, default 100 MiB */
	uint32_t keep;              /* "keep": rotated files kept, default 3 */
};

struct nm_telemetry_cfg {
	uint16_t metrics_port;         /* "metricsPort", 15020; 0 = off */
	struct nm_addr metrics_addr;   /* "metricsAddress", 0.0.0.0 */
	uint16_t admin_port;           /* "adminPort", mesh.adminPort (15000); 0 = off */
	struct nm_addr admin_addr;     /* "adminAddress", 127.0.0.1 */
	bool sock_stats;               /* "sockStats": BPF per-socket stats, default true */
	char cluster_id[NM_NAME_MAX];  /* "clusterId": *_cluster labels, "Kubernetes" */
	uint32_t max_series;           /* "maxSeriesPerMetric", default 2000 */
	struct nm_flowlog_cfg flow_log;
};

#define NM_TEL_METRICS_PORT 15020
#define NM_TEL_MAX_SERIES 2000
#define NM_TEL_FLOWLOG_MAX_BYTES (100ull << 20)
#define NM_TEL_FLOWLOG_KEEP 3
#define NM_TEL_FLOWLOG_SAMPLE 0.01

struct nm_cluster {
	char path[NM_PATH_MAX];          /* where it came from (messages) */
	char trust_domain[NM_NAME_MAX];
	char cert_dir[NM_PATH_MAX];      /* resolved against the file's folder */
	char policy_dir[NM_PATH_MAX];    /* "policyDir", likewise; "" = none */
	bool policy_apply_to_existing;   /* "policy": {"applyToExisting"} */
	struct nm_mesh_cfg mesh;
	struct nm_telemetry_cfg telemetry;
	struct nm_node *nodes;
	unsigned int n_nodes;
	struct nm_workload_cfg *workloads;
	unsigned int n_workloads;
	struct nm_service_cfg *services;
	unsigned int n_services;
	struct nm_forward_cfg *forwards;
	unsigned int n_forwards;
};

/* True when every selector label of svc is among wl's labels, same namespace. */
bool nm_service_selects(const struct nm_service_cfg *svc,
			const struct nm_workload_cfg *wl);

#endif
