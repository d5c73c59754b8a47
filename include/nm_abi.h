/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_abi.h - the contract between nodemesh's BPF programs and user space.
 *
 * Every key and value stored in a pinned map is declared here with fixed-width
 * fields and explicit padding, and its size is asserted, so that the BPF side,
 * the agent, the CLI and `bpftool map dump` all agree on the layout. Ports are
 * kept in network byte order (as the kernel hands them to the hooks), addresses
 * as 16 bytes with IPv4 stored IPv4-mapped (::ffff:a.b.c.d).
 *
 * Changing a struct here changes the ABI of maps pinned by a running agent:
 * bump NM_ABI_VERSION so a new agent refuses to reuse old pins.
 */
#ifndef NM_ABI_H
#define NM_ABI_H

#ifdef __bpf__
/* BPF side: types come from vmlinux.h, included before this header. */
#else
#include <linux/types.h>
#endif

#define NM_ABI_VERSION 6

/*
 * The agent's own sockets are not recognised by anything on the socket (a
 * pod with CAP_NET_ADMIN can set any mark): connect4/6 steer only callers
 * whose cgroup is a meshed workload's, and the agent refuses a state that
 * puts a workload in its own cgroup.
 */

/* A redirect record older than this (agent clock, ns) is refused. */
#define NM_ORIG_MAX_AGE_NS (10ull * 1000 * 1000 * 1000)

#define NM_MAX_WORKLOADS 16384
/*
 * How deep below the cgroup v2 root connect4/6 look for a workload's cgroup
 * among the caller's ancestors (container cgroups sit below pod cgroups;
 * kubelet's systemd layout puts pods at level 3, nested set-ups deeper).
 */
#define NM_MAX_CGROUP_DEPTH 12
#define NM_MAX_SERVICES 4096
#define NM_MAX_BACKENDS 65536
#define NM_MAX_ENDPOINTS 16384
#define NM_MAX_ORIG 65536
/* Upper bound of backend slots per service that connect4/6 will pick from. */
#define NM_MAX_BACKENDS_PER_SVC 1024

struct nm_addr {
	__u8 a[16]; /* IPv6, or IPv4-mapped ::ffff:a.b.c.d */
};

/* nm_workloads: cgroup id (u64) -> nm_workload */
enum nm_workload_flags {
	NM_WL_MESHED = 1u << 0, /* redirect this workload's connections */
	NM_WL_STRICT = 1u << 1, /* inbound: only mesh traffic (nm_ingress) */
};

struct nm_workload {
	__u32 workload_id;
	__u32 identity_id;
	__u32 namespace_id;
	__u32 flags; /* enum nm_workload_flags */
	struct nm_addr addr; /* the pod's IPv4-mapped address: what maglev
			      * hashes (the socket has no source yet) */
};

/* nm_services: nm_svc_key -> nm_service */
struct nm_svc_key {
	struct nm_addr vip;
	__be16 port;
	__u8 proto; /* IPPROTO_TCP */
	__u8 pad;
};

enum nm_lb_algo {
	NM_LB_RANDOM = 0,
	NM_LB_ROUND_ROBIN = 1,
	NM_LB_LEAST_REQUEST = 2,
	NM_LB_MAGLEV = 3,
};

enum nm_service_flags {
	/*
	 * The service needs the agent (its resilience settings: retries,
	 * connect timeout, circuit breaker, outlier detection, idle timeout and
	 * keepalive are agent-only), so connect4/6 never take the same-node
	 * kernel path to it (docs/kernel-path.md, ABI 6).
	 */
	NM_SVC_AGENT_PATH = 1u << 0,
};

struct nm_service {
	__u32 service_id;
	__u32 backend_count; /* NM_BACKEND_SLOT(port, v6, 0..backend_count-1)
			      * exist in nm_backends */
	__u32 lb_algo;       /* enum nm_lb_algo */
	__u32 flags;         /* enum nm_service_flags */
};

/* nm_backends: nm_backend_key -> nm_backend */
struct nm_backend_key {
	__u32 service_id;
	__u32 slot; /* NM_BACKEND_SLOT() */
};

/*
 * A service has one backend set per VIP port and VIP family: each port of a
 * multi-port service has its own targetPort, and a v6 VIP is served by the
 * endpoints' v6 addresses. Slot k (k < backend_count of the matching
 * nm_services entry) of the set for VIP port `port_host` (host order) lives at
 * NM_BACKEND_SLOT(port_host, vip_is_v6, k). k stays below 0x8000 because
 * NM_MAX_BACKENDS_PER_SVC does.
 */
#define NM_BACKEND_SLOT(port_host, v6, k)                           \
	(((__u32)(port_host) << 16) | ((v6) ? 0x8000u : 0u) |       \
	 ((__u32)(k) & 0x7fffu))

enum nm_endpoint_flags {
	NM_EP_LOCAL = 1u << 0, /* endpoint runs on this node */
	/*
	 * Outlier detection (agent/mesh, issue 12) took the endpoint out of the
	 * kernel's choice: connect4/6 skip a backend slot with this flag and
	 * probe the next ones of the same tier (nm_lb.bpf.h). Set it through
	 * nm_datapath_set_backend_flags(); nm_datapath_sync() keeps it across
	 * syncs. When every candidate is ejected the pick falls back to the
	 * next tier and finally to an ejected slot rather than refusing.
	 */
	NM_EP_EJECTED = 1u << 1,
	/*
	 * The endpoint's workload is STRICT (nm_ingress.bpf.h): a kernel-path
	 * connection to it gets its 4-tuple into nm_mesh_conns (ABI 6).
	 */
	NM_EP_STRICT = 1u << 2,
};

struct nm_backend {
	struct nm_addr addr;
	__be16 port;
	__u16 weight;
	__u32 flags; /* enum nm_endpoint_flags */
	__u32 workload_id;
	__u32 identity_id;
};

/*
 * Load balancing (DESIGN §7, docs/load-balancing.md). The backend set of one
 * VIP port and family (NM_BACKEND_SLOT(port, v6, k)) is laid out by the agent
 * as subsets one after another, and within a subset as locality tiers: same
 * node, then same zone, then the rest. nm_lb_sets describes that layout:
 *
 *   nm_lb_sets: nm_backend_key {service_id, NM_BACKEND_SLOT(port, v6, 0)}
 *               -> nm_lb_set
 *
 * A service without an nm_lb_sets entry is picked uniformly at random over
 * all backend_count slots (the behaviour before ABI 3).
 */
#define NM_LB_MAX_SUBSETS 8
#define NM_LB_TIERS 3           /* same node, same zone, other */
#define NM_MAGLEV_MAX 65537     /* largest lookup table (a prime) */
#define NM_MAX_MAGLEV_ENTRIES (1u << 20)
#define NM_MAX_LB_ACTIVE 16384  /* least_request: endpoints counted */
/* Ejected slots probed after the first choice, per tier. */
#define NM_LB_PROBES 4

enum nm_lb_locality {
	NM_LB_LOC_FAILOVER = 0, /* first non-empty tier (node, zone, any) */
	NM_LB_LOC_STRICT = 1,   /* tier 0 (same node) only; none: refused */
	NM_LB_LOC_NONE = 2,     /* all tiers alike */
};

struct nm_lb_subset {
	__u32 weight_end; /* cumulative weight of subsets 0..this one */
	__u16 start;      /* first k of the subset */
	__u16 n[NM_LB_TIERS]; /* tier sizes, laid out in tier order */
	__u32 maglev_size; /* lookup table entries (prime), 0 = no table */
};

struct nm_lb_set {
	__u32 n_subsets;    /* 1..NM_LB_MAX_SUBSETS */
	__u32 total_weight; /* = subsets[n_subsets - 1].weight_end, > 0 */
	__u32 locality;     /* enum nm_lb_locality */
	__u32 pad;
	struct nm_lb_subset subsets[NM_LB_MAX_SUBSETS];
};

/*
 * nm_maglev: nm_maglev_key -> __u32 k, the backend (relative to the first
 * slot of the subset's primary range: the tier failover would use with
 * nothing ejected, tier 0 for strict, the whole subset for none). set is
 * NM_BACKEND_SLOT(port, v6, subset index); idx < maglev_size.
 */
struct nm_maglev_key {
	__u32 service_id;
	__u32 set;
	__u32 idx;
};

/*
 * least_request: nm_lb_active counts a node's open connections per endpoint
 * (workload id -> __u64), raised by sockops at TCP_CONNECT_CB for a
 * connection connect4/6 sent to a least_request service (NM_ORIG_LB_COUNT)
 * and lowered when that socket reaches TCP_CLOSE; nm_lb_conn remembers
 * which endpoint a socket was counted on (cookie -> workload id).
 *
 * round_robin: nm_lb_rr, per CPU, nm_backend_key {service_id,
 * NM_BACKEND_SLOT(port, v6, subset)} -> __u32 next position.
 */

/* nm_endpoints: nm_addr (pod address) -> nm_endpoint */
struct nm_endpoint {
	__u32 workload_id;
	__u32 identity_id;
	__u32 node_id;
	__u32 flags; /* enum nm_endpoint_flags */
};

/*
 * nm_orig_cookie: socket cookie (u64) -> nm_orig, written by connect4/6.
 * nm_orig_tuple:  nm_tuple_key -> nm_orig, moved there by sockops when the
 * redirected connection is established; the agent looks it up by the peer
 * address of the accepted socket and deletes it.
 */
enum nm_orig_flags {
	NM_ORIG_SERVICE = 1u << 0,  /* original destination was a service VIP */
	NM_ORIG_ENDPOINT = 1u << 1, /* original destination was a pod address */
	NM_ORIG_LOCAL = 1u << 2,    /* chosen backend is on this node */
	NM_ORIG_V6 = 1u << 3,       /* connect6 made it */
	NM_ORIG_LB_COUNT = 1u << 4, /* least_request: sockops counts it */
	NM_ORIG_KERNEL = 1u << 5,   /* sent straight to a same-node backend, not
				     * to the agent (kernel path, DESIGN §2 path
				     * 3): sockops counts it in kernel_flows and
				     * reports it with NM_FLOW_PATH_KERNEL */
	NM_ORIG_DST_STRICT = 1u << 6, /* kernel path to a STRICT workload:
				       * sockops admits its 4-tuple in
				       * nm_mesh_conns (ABI 6) */
};

struct nm_orig {
	struct nm_addr orig_dst;
	struct nm_addr backend;
	__be16 orig_port;
	__be16 backend_port;
	__u32 src_workload_id;
	__u32 src_identity_id;
	__u32 service_id; /* 0 when not a service */
	__u32 dst_workload_id;
	__u32 dst_identity_id;
	__u32 flags; /* enum nm_orig_flags */
	__u32 generation; /* nm_agent_state.config_generation at connect() */
	__u64 cookie;
	__u64 stamp_ns;   /* bpf_ktime_get_ns() at connect, refreshed when
			   * sockops moves it; the agent refuses stale ones */
};

struct nm_tuple_key {
	struct nm_addr addr; /* client address as the agent sees it */
	__be16 port;
	__u16 pad0;
	__u32 pad1;
};

/*
 * nm_policy: nm_policy_key -> nm_policy_val, compiled by the agent from the
 * AuthorizationPolicy set (agent/policy/compile.h). Looked up by connect4/6
 * with the chosen backend's port, then with port 0 (every other port). No
 * record: the destination agent decides.
 */
#define NM_MAX_POLICY_RECS 65536

struct nm_policy_key {
	__u32 src_workload_id;
	__u32 dst_workload_id;
	__be16 port; /* destination (backend) port; 0 = any port not listed */
	__u16 pad0;
	__u32 pad1;
};

enum nm_policy_verdict_kind {
	NM_PV_ALLOW = 1, /* the destination would admit it */
	NM_PV_DENY = 2,  /* connect() fails with EPERM, no packet sent */
};

struct nm_policy_val {
	__u32 verdict;   /* enum nm_policy_verdict_kind */
	__u32 policy_id; /* 1 + index of the deciding policy, 0 = none */
};

/* nm_agent_state: array, one entry at key 0. */
enum nm_fail_mode {
	NM_FAIL_CLOSED = 0,
	NM_FAIL_OPEN = 1,
};

enum nm_agent_state_flags {
	/* mesh.kernelPath: connect4/6 may send a same-node connection the
	 * compiled policy allows straight to its backend (DESIGN §2 path 3,
	 * docs/kernel-path.md). Clear: every meshed connection goes to the
	 * agent, as before ABI 6. */
	NM_AGENT_F_KERNEL_PATH = 1u << 0,
};

struct nm_agent_state {
	__u64 heartbeat_ns;       /* bpf_ktime_get_ns() clock, stamped by the agent */
	__u32 config_generation;
	__u32 fail_mode;          /* enum nm_fail_mode */
	struct nm_addr agent_v4;  /* outbound listener, IPv4-mapped; zero = none */
	struct nm_addr agent_v6;  /* outbound listener for connect6; zero = none */
	__be16 outbound_port;
	__u16 flags;              /* enum nm_agent_state_flags (ABI 6) */
	__u32 abi_version;
};

/* nm_wl_stats: percpu hash workload id (u32) -> nm_wl_stats */
struct nm_wl_stats {
	__u64 connects;
	__u64 redirects;
	__u64 denies;
	__u64 passthrough;
	__u64 bytes;
	__u64 errors; /* datapath errors: missing slot, no agent state,
		       * failed record write (refused when fail-closed) */
	__u64 kernel_flows; /* sockops: connections of the kernel path
			     * (NM_ORIG_KERNEL) that began (TCP_CONNECT_CB) */
};

/*
 * Strict inbound (nm_ingress.bpf.c, docs/strict.md). cgroup_skb/ingress on
 * the node's cgroup root drops a TCP SYN (without ACK) entering a workload
 * whose nm_workloads flags carry NM_WL_STRICT unless it came through the
 * mesh:
 *
 *   nm_mesh_conns:   nm_conn_key -> nm_mesh_conn, the 4-tuples of the local
 *                    agent's connections to its pods, written before the
 *                    agent's connect() and deleted when it closes (LRU for
 *                    an agent that died), and of same-node kernel-path
 *                    connections to STRICT pods, written and deleted by
 *                    sockops (NM_MESH_CONN_KERNEL);
 *   nm_probers:      nm_addr -> __u32 (1), node-local prober addresses
 *                    (mesh.probers, default the node's own addresses);
 *   nm_strict_drops: per CPU, workload id (u32) -> nm_strict_stats.
 */
#define NM_MAX_MESH_CONNS 65536
#define NM_MAX_PROBERS 16

struct nm_conn_key {
	struct nm_addr saddr; /* as the pod sees the SYN: the agent's end */
	struct nm_addr daddr; /* the pod's address */
	__be16 sport;
	__be16 dport;
	__u32 pad;
};

enum nm_mesh_conn_flags {
	/* Written by sockops for a same-node kernel-path connection (at
	 * TCP_CONNECT_CB, before its SYN) and deleted by sockops when it
	 * closes; entries without it are the agent's. */
	NM_MESH_CONN_KERNEL = 1u << 0,
};

struct nm_mesh_conn {
	__u32 workload_id; /* destination workload (for bpftool readers) */
	__u32 flags;       /* enum nm_mesh_conn_flags (ABI 6; was padding) */
};

struct nm_strict_stats {
	__u64 drops;         /* SYNs dropped: not through the mesh */
	__u64 mesh_admits;   /* SYNs whose 4-tuple was in nm_mesh_conns */
	__u64 prober_admits; /* SYNs from a nm_probers address */
	__u64 unparsed;      /* TCP packets whose header could not be found
			      * (dropped too: fail closed) */
};

/*
 * nm_map_errors: per-CPU array, index enum nm_map_id -> __u64, the failed
 * bpf_map_update_elem() calls of the BPF programs on that map (an EEXIST of
 * a BPF_NOEXIST insert racing another CPU is not a failure). The agent adds
 * its own failed writes (agent/datapath/datapath.h nm_datapath_map_info()).
 * New maps append ids; NM_MAP_ID_MAX leaves room so the array's size, part
 * of the pinned ABI, stays put.
 */
#define NM_MAP_IDS(X)                 \
	X(NM_MAP_WORKLOADS, nm_workloads)     \
	X(NM_MAP_SERVICES, nm_services)       \
	X(NM_MAP_BACKENDS, nm_backends)       \
	X(NM_MAP_ENDPOINTS, nm_endpoints)     \
	X(NM_MAP_ORIG_COOKIE, nm_orig_cookie) \
	X(NM_MAP_ORIG_TUPLE, nm_orig_tuple)   \
	X(NM_MAP_POLICY, nm_policy)           \
	X(NM_MAP_LB_SETS, nm_lb_sets)         \
	X(NM_MAP_MAGLEV, nm_maglev)           \
	X(NM_MAP_LB_RR, nm_lb_rr)             \
	X(NM_MAP_LB_ACTIVE, nm_lb_active)     \
	X(NM_MAP_LB_CONN, nm_lb_conn)         \
	X(NM_MAP_AGENT_STATE, nm_agent_state) \
	X(NM_MAP_WL_STATS, nm_wl_stats)       \
	X(NM_MAP_SOCK_STATS, nm_sock_stats)   \
	X(NM_MAP_EVENTS, nm_events)           \
	X(NM_MAP_MAP_ERRORS, nm_map_errors)   \
	X(NM_MAP_MESH_CONNS, nm_mesh_conns)   \
	X(NM_MAP_PROBERS, nm_probers)         \
	X(NM_MAP_STRICT_DROPS, nm_strict_drops)

enum nm_map_id {
#define NM_MAP_ID_ENUM(id, name) id,
	NM_MAP_IDS(NM_MAP_ID_ENUM)
#undef NM_MAP_ID_ENUM
	NM_MAP__COUNT,
};

/*
 * The sockmap relay's records (bpf/nm_relay.bpf.h), keyed by the source
 * socket's cookie. Not pinned: the agent's own maps, gone with it (its
 * sockets close with it), so they are not part of NM_ABI_VERSION.
 * nm_relay_dirs is written by the agent once, then only the program adds;
 * nm_relay_ctl is the agent's, so neither side overwrites the other's
 * count.
 */
struct nm_relay_dir {
	__u64 peer;       /* cookie of the socket its skbs go out on */
	__u64 redirected; /* bytes redirected so far */
	__u64 trimmed;    /* bytes cut off skbs that repeated earlier ones */
	__u32 next_seq;   /* TCP sequence of the next new byte, once known */
	__u32 seq_known;  /* 1 once next_seq is set (the first verdict) */
	__u32 fault;      /* 1: an skb could not be trimmed: reset the flow */
	__u32 pad;
};

struct nm_relay_ctl {
	__u64 sent;       /* of those, bytes the agent saw in the peer socket */
	__u64 high;       /* redirected - sent above this: signal the agent */
	__u32 signaled;   /* 1 once signalled; the agent clears it */
	__u32 parked;     /* 1: the source's skbs pass to its own socket */
};

#ifndef __bpf__
_Static_assert(sizeof(struct nm_relay_dir) == 40, "nm_relay_dir");
_Static_assert(sizeof(struct nm_relay_ctl) == 24, "nm_relay_ctl");
#endif

#define NM_MAP_ID_MAX 64 /* nm_map_errors entries */

#ifndef __bpf__
_Static_assert(sizeof(struct nm_addr) == 16, "nm_addr");
_Static_assert(sizeof(struct nm_workload) == 32, "nm_workload");
_Static_assert(sizeof(struct nm_svc_key) == 20, "nm_svc_key");
_Static_assert(sizeof(struct nm_service) == 16, "nm_service");
_Static_assert(sizeof(struct nm_backend_key) == 8, "nm_backend_key");
_Static_assert(sizeof(struct nm_backend) == 32, "nm_backend");
_Static_assert(sizeof(struct nm_endpoint) == 16, "nm_endpoint");
_Static_assert(sizeof(struct nm_orig) == 80, "nm_orig");
_Static_assert(sizeof(struct nm_tuple_key) == 24, "nm_tuple_key");
_Static_assert(sizeof(struct nm_agent_state) == 56, "nm_agent_state");
_Static_assert(sizeof(struct nm_wl_stats) == 56, "nm_wl_stats");
_Static_assert(NM_MAP__COUNT <= NM_MAP_ID_MAX, "nm_map_errors size");
_Static_assert(sizeof(struct nm_policy_key) == 16, "nm_policy_key");
_Static_assert(sizeof(struct nm_policy_val) == 8, "nm_policy_val");
_Static_assert(NM_MAX_BACKENDS_PER_SVC <= 0x8000, "backend slot bits");
_Static_assert(sizeof(struct nm_lb_subset) == 16, "nm_lb_subset");
_Static_assert(sizeof(struct nm_lb_set) == 16 + 16 * NM_LB_MAX_SUBSETS, "nm_lb_set");
_Static_assert(sizeof(struct nm_maglev_key) == 12, "nm_maglev_key");
_Static_assert(NM_LB_MAX_SUBSETS <= 0x8000, "subset in a slot");
_Static_assert(sizeof(struct nm_conn_key) == 40, "nm_conn_key");
_Static_assert(sizeof(struct nm_mesh_conn) == 8, "nm_mesh_conn");
_Static_assert(sizeof(struct nm_strict_stats) == 32, "nm_strict_stats");
#endif

#endif /* NM_ABI_H */
