/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_events.h - records the BPF programs send to the agent through nm_events
 * (a BPF ring buffer, or a perf event array on kernels without one; the
 * probe chooses, agent/datapath/events.h reads either), and the per-socket
 * statistics sockops keeps in nm_sock_stats (sk_storage).
 *
 * Every record starts with the same 8-byte header so a reader can tell them
 * apart and skip the ones it does not know (a newer datapath may add types).
 * Fixed-width fields, explicit padding, asserted sizes, addresses as 16 bytes
 * IPv4-mapped, ports in network order: as in nm_abi.h. Changing a layout
 * here is an ABI change: bump NM_ABI_VERSION there.
 */
#ifndef NM_EVENTS_H
#define NM_EVENTS_H

#include "nm_abi.h"

/* Ring buffer size: a power of two, a multiple of the page size. At 168
 * bytes a record (plus the ring's 8-byte header) it holds about 1500
 * closes between two agent reads. */
#define NM_EVENTS_RINGBUF_BYTES (256 * 1024)

enum nm_event_type {
	NM_EVT_FLOW_CLOSE = 1,   /* struct nm_flow_event */
	NM_EVT_CONNECT = 2,      /* struct nm_connect_event: refused or failed */
};

struct nm_event_hdr {
	__u16 type; /* enum nm_event_type */
	__u16 size; /* sizeof the whole record */
	__u32 pad;
};

/* Which path the flow took (nm_flow_event.path). */
enum nm_flow_path {
	NM_FLOW_PATH_AGENT = 1,  /* connect4/6 redirected it to the agent */
	NM_FLOW_PATH_KERNEL = 2, /* connect4/6 sent it straight to a same-node
				  * backend (NM_ORIG_KERNEL; DESIGN §2 path 3) */
	NM_FLOW_PATH_INBOUND = 3, /* a meshed pod accepted it (the server side:
				   * from the agent or a kernel-path client) */
};

/* Which end of the connection the tracked socket is. */
enum nm_flow_role {
	NM_FLOW_ROLE_CLIENT = 1, /* the pod's connect()ed socket */
	NM_FLOW_ROLE_SERVER = 2, /* the pod's accept()ed socket */
};

enum nm_flow_flags {
	NM_FLOW_ESTABLISHED = 1u << 0, /* reached ESTABLISHED; without it the
					* connect failed (refused, timed out) */
	NM_FLOW_V6 = 1u << 1,          /* an AF_INET6 socket */
	NM_FLOW_FIN_SENT = 1u << 2,    /* this end closed first or too: it
					* went to FIN_WAIT1 or LAST_ACK */
	NM_FLOW_FIN_RCVD = 1u << 3,    /* the peer's FIN arrived */
	NM_FLOW_TCP_INFO = 1u << 4,    /* user space only: the socket had no
					* storage and nm_datapath_sock_stats()
					* read getsockopt(TCP_INFO) instead */
};

/*
 * Byte counts are the application's: the kernel's bytes_acked counts a
 * client's SYN and an acked FIN, bytes_received the peer's FIN, and
 * sockops takes those sequence numbers out, so a flow that sent N bytes
 * reads N. (A close() with unread data sends RST instead of FIN: then
 * nothing is taken out for a FIN and the count stays exact too.)
 */

/*
 * nm_sock_stats (sk_storage): what sockops keeps per tracked socket, created
 * at TCP_CONNECT_CB (client) or PASSIVE_ESTABLISHED_CB (server) and updated
 * by the RTT, RETRANS and STATE callbacks. The identity fields are copied
 * from the redirect record (nm_orig) or the endpoint of the pod address, so
 * the close record needs no other map. Counters are the kernel's tcp_sock
 * ones at the last callback.
 */
struct nm_sock_stats {
	__u64 bytes_acked;    /* bytes this socket sent that were acked */
	__u64 bytes_received; /* bytes this socket received */
	__u32 segs_in;
	__u32 segs_out;
	__u32 srtt_us;        /* smoothed RTT, microseconds (0: no sample) */
	__u32 total_retrans;  /* retransmitted segments over the lifetime */
	__u64 start_ns;       /* bpf_ktime_get_ns() when tracking began */
	__u64 cookie;         /* socket cookie */
	struct nm_addr dst;     /* what the application asked for (client) or
				 * the local pod address (server) */
	struct nm_addr backend; /* chosen backend (client; zero when not known) */
	__be16 dst_port;
	__be16 backend_port;
	__u8 path;            /* enum nm_flow_path */
	__u8 role;            /* enum nm_flow_role */
	__u8 flags;           /* enum nm_flow_flags */
	__u8 pad0;
	__u32 src_workload_id;  /* 0: not known (server side, agent peer) */
	__u32 src_identity_id;
	__u32 dst_workload_id;
	__u32 dst_identity_id;
	__u32 service_id;       /* 0: not a service */
	__u32 generation;       /* of the redirect record; 0 server side */
};

/*
 * NM_EVT_FLOW_CLOSE: one per tracked socket, when it reaches TCP_CLOSE
 * (after FIN/RST handling; also a connect that never established). src is
 * the socket's local address, peer its remote one (for a redirected client
 * that is the agent's listener); dst/backend as in nm_sock_stats.
 */
struct nm_flow_event {
	struct nm_event_hdr hdr;
	__u64 cookie;
	struct nm_addr src;
	struct nm_addr peer;
	struct nm_addr dst;
	struct nm_addr backend;
	__be16 src_port;
	__be16 peer_port;
	__be16 dst_port;
	__be16 backend_port;
	__u8 path;  /* enum nm_flow_path */
	__u8 role;  /* enum nm_flow_role */
	__u8 flags; /* enum nm_flow_flags */
	__u8 pad0;
	__u32 src_workload_id;
	__u32 src_identity_id;
	__u32 dst_workload_id;
	__u32 dst_identity_id;
	__u32 service_id;
	__u32 generation;
	__u32 pad1;
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 segs_in;
	__u32 segs_out;
	__u32 srtt_us;
	__u32 total_retrans;
	__u64 start_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 end_ns;
};

/* nm_connect_event.verdict: what connect4/6 did. */
enum nm_connect_verdict {
	NM_CV_REFUSED = 1,     /* connect() failed with EPERM */
	NM_CV_PASSTHROUGH = 2, /* fail-open: let through to the original
				* destination in spite of the error */
};

/* nm_connect_event.reason */
enum nm_connect_reason {
	NM_CR_POLICY = 1,        /* compiled DENY record (policy_id set) */
	NM_CR_NO_ENDPOINTS = 2,  /* service with no backend */
	NM_CR_MISSING_SLOT = 3,  /* backend slot the service announces is gone */
	NM_CR_NO_AGENT_STATE = 4, /* nm_agent_state empty, or no socket */
	NM_CR_NO_LISTENER = 5,   /* agent state has no listener for the family */
	NM_CR_RECORD_WRITE = 6,  /* nm_orig_cookie update failed */
};

/*
 * NM_EVT_CONNECT: a meshed workload's connect() that connect4/6 refused, or
 * let through in fail-open mode because of a datapath error.
 */
struct nm_connect_event {
	struct nm_event_hdr hdr;
	__u64 cookie;
	__u64 ts_ns;
	struct nm_addr dst; /* what the application asked for */
	__be16 dst_port;
	__u8 verdict;       /* enum nm_connect_verdict */
	__u8 reason;        /* enum nm_connect_reason */
	__u32 src_workload_id;
	__u32 src_identity_id;
	__u32 dst_workload_id; /* 0 when not known */
	__u32 service_id;
	__u32 policy_id;       /* NM_CR_POLICY: nm_policy_val.policy_id */
};

#ifndef __bpf__
_Static_assert(sizeof(struct nm_event_hdr) == 8, "nm_event_hdr");
_Static_assert(sizeof(struct nm_sock_stats) == 112, "nm_sock_stats");
_Static_assert(sizeof(struct nm_flow_event) == 168, "nm_flow_event");
_Static_assert(sizeof(struct nm_connect_event) == 64, "nm_connect_event");
#endif

#endif /* NM_EVENTS_H */
