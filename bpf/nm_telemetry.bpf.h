/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_telemetry.bpf.h - what the programs tell the agent (DESIGN §9, kernel
 * side): per-socket TCP statistics in nm_sock_stats (sk_storage) kept by
 * sockops for meshed sockets, one close record per tracked socket and the
 * connect4/6 refusals through nm_events, and the per-map update failures in
 * nm_map_errors. Record layouts: include/nm_events.h.
 *
 * A socket is tracked when it is
 *   - a pod's connect()ed socket with a redirect record (nm_orig_cookie) at
 *     TCP_CONNECT_CB: redirected to the agent, or a kernel-path flow;
 *   - a pod's accept()ed socket whose local address is a workload of this
 *     node (nm_endpoints, NM_EP_LOCAL) at PASSIVE_ESTABLISHED_CB.
 * For those sockops asks for the RTT, STATE and RETRANS callbacks and keeps
 * the kernel's tcp_sock counters in the socket's storage (kernel-path
 * sockets: STATE only, sampled at close); at TCP_CLOSE the storage becomes
 * one NM_EVT_FLOW_CLOSE record. Nothing else is looked at:
 * host sockets and unmeshed destinations never get storage.
 *
 * Tunables (const volatile rodata, set by the loader before load so the
 * verifier prunes the branches they switch off):
 *   nm_cfg_sock_stats  false: no storage, no callbacks, no close records
 *   nm_cfg_perfbuf     true: nm_events is a perf event array (kernels
 *                      without BPF_MAP_TYPE_RINGBUF, or forced by a test)
 */
#ifndef NM_TELEMETRY_BPF_H
#define NM_TELEMETRY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nm_abi.h"
#include "nm_events.h"
#include "nm_addr.bpf.h"
#include "nm_maps.bpf.h"

const volatile bool nm_cfg_sock_stats = true;
const volatile bool nm_cfg_perfbuf = false;

/* Sends one record to the agent; a full ring (or no reader on a perf
 * array) is a failed write to nm_events and counted as one. */
static __always_inline void nm_event_output(void *ctx, void *rec, __u64 size)
{
	long ret;

	if (nm_cfg_perfbuf)
		ret = bpf_perf_event_output(ctx, &nm_events, BPF_F_CURRENT_CPU,
					    rec, size);
	else
		ret = bpf_ringbuf_output(&nm_events, rec, size, 0);
	if (ret)
		nm_map_error(NM_MAP_EVENTS);
}

/* The socket's local and remote address, IPv4-mapped for AF_INET. */
static __always_inline void nm_tel_sock_addrs(struct bpf_sock_ops *skops,
					      struct nm_addr *local,
					      struct nm_addr *remote)
{
	if (skops->family == 2 /* AF_INET */) {
		nm_addr_set_v4(local, skops->local_ip4);
		nm_addr_set_v4(remote, skops->remote_ip4);
	} else {
		__u32 *l = (__u32 *)local->a, *r = (__u32 *)remote->a;

		l[0] = skops->local_ip6[0];
		l[1] = skops->local_ip6[1];
		l[2] = skops->local_ip6[2];
		l[3] = skops->local_ip6[3];
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
	}
}

/* local_port is in host order; remote_port carries the network-order port
 * in its upper half on little-endian (as a __be32). Whole-word reads: 5.10
 * rejects narrower ones of these fields. */
static __always_inline __be16 nm_tel_local_port(struct bpf_sock_ops *skops)
{
	return bpf_htons((__u16)*(const volatile __u32 *)&skops->local_port);
}

static __always_inline __be16 nm_tel_remote_port(struct bpf_sock_ops *skops)
{
	__u32 p = *(const volatile __u32 *)&skops->remote_port;

	return bpf_htons((__u16)bpf_ntohl(p));
}

/* The peer's FIN was processed (tcp_fin() sets SOCK_DONE). */
static __always_inline bool nm_tel_peer_fin(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp;

	if (!sk)
		return false;
	tp = bpf_skc_to_tcp_sock(sk);
	return tp && (tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags & (1ul << SOCK_DONE));
}

/*
 * The kernel's counters at this callback, as application bytes: a
 * client's SYN once established and our FIN once acked occupy a sequence
 * number each in bytes_acked, the peer's FIN one in bytes_received.
 */
static __always_inline void nm_tel_sample(struct bpf_sock_ops *skops,
					  struct nm_sock_stats *ss)
{
	__u64 acked = skops->bytes_acked, rcvd = skops->bytes_received;

	/* A child socket starts with snd_una past its SYN-ACK already. */
	if (ss->role == NM_FLOW_ROLE_CLIENT && (ss->flags & NM_FLOW_ESTABLISHED) &&
	    acked)
		acked--;
	if ((ss->flags & NM_FLOW_FIN_SENT) && skops->snd_una == skops->snd_nxt &&
	    acked)
		acked--;
	/* The peer's FIN takes the socket out of ESTABLISHED: only then is
	 * the helper call worth it (RTT callbacks come with every ACK). */
	if (!(ss->flags & NM_FLOW_FIN_RCVD) &&
	    skops->state != BPF_TCP_ESTABLISHED && nm_tel_peer_fin(skops))
		ss->flags |= NM_FLOW_FIN_RCVD;
	if ((ss->flags & NM_FLOW_FIN_RCVD) && rcvd)
		rcvd--;
	ss->bytes_acked = acked;
	ss->bytes_received = rcvd;
	ss->segs_in = skops->segs_in;
	ss->segs_out = skops->segs_out;
	/* tcp_sock keeps srtt << 3 */
	ss->srtt_us = skops->srtt_us >> 3;
	ss->total_retrans = skops->total_retrans;
}

static __always_inline void nm_tel_want_callbacks(struct bpf_sock_ops *skops)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					 BPF_SOCK_OPS_RTT_CB_FLAG |
					 BPF_SOCK_OPS_STATE_CB_FLAG |
					 BPF_SOCK_OPS_RETRANS_CB_FLAG);
}

static __always_inline struct nm_sock_stats *
nm_tel_storage_new(struct bpf_sock_ops *skops)
{
	struct nm_sock_stats *ss;
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return NULL;
	ss = bpf_sk_storage_get(&nm_sock_stats, sk, NULL,
				BPF_SK_STORAGE_GET_F_CREATE);
	if (!ss) {
		nm_map_error(NM_MAP_SOCK_STATS);
		return NULL;
	}
	/* A socket may connect() again after a failed attempt: start over. */
	__builtin_memset(ss, 0, sizeof(*ss));
	return ss;
}

static __always_inline struct nm_sock_stats *
nm_tel_storage(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return NULL;
	return bpf_sk_storage_get(&nm_sock_stats, sk, NULL, 0);
}

/* Counts a kernel-path connection on its source workload. */
static __always_inline void nm_tel_count_kernel_flow(__u32 workload_id)
{
	struct nm_wl_stats *st = bpf_map_lookup_elem(&nm_wl_stats, &workload_id);

	if (!st) {
		struct nm_wl_stats zero = {};

		nm_map_update(&nm_wl_stats, NM_MAP_WL_STATS, &workload_id, &zero,
			      BPF_NOEXIST);
		st = bpf_map_lookup_elem(&nm_wl_stats, &workload_id);
	}
	if (st)
		st->kernel_flows++;
}

/* TCP_CONNECT_CB: the SYN is about to leave a pod's socket. */
static __always_inline void nm_tel_connect(struct bpf_sock_ops *skops)
{
	struct nm_sock_stats *ss;
	struct nm_orig *orig;
	__u64 cookie;

	cookie = bpf_get_socket_cookie(skops);
	orig = bpf_map_lookup_elem(&nm_orig_cookie, &cookie);
	if (!orig)
		return;
	if (orig->flags & NM_ORIG_KERNEL)
		nm_tel_count_kernel_flow(orig->src_workload_id);
	if (!nm_cfg_sock_stats)
		return;
	ss = nm_tel_storage_new(skops);
	if (!ss)
		return;
	ss->start_ns = bpf_ktime_get_ns();
	ss->cookie = cookie;
	__builtin_memcpy(&ss->dst, &orig->orig_dst, sizeof(ss->dst));
	__builtin_memcpy(&ss->backend, &orig->backend, sizeof(ss->backend));
	ss->dst_port = orig->orig_port;
	ss->backend_port = orig->backend_port;
	ss->path = (orig->flags & NM_ORIG_KERNEL) ? NM_FLOW_PATH_KERNEL :
						    NM_FLOW_PATH_AGENT;
	ss->role = NM_FLOW_ROLE_CLIENT;
	ss->flags = skops->family == 2 ? 0 : NM_FLOW_V6;
	ss->src_workload_id = orig->src_workload_id;
	ss->src_identity_id = orig->src_identity_id;
	ss->dst_workload_id = orig->dst_workload_id;
	ss->dst_identity_id = orig->dst_identity_id;
	ss->service_id = orig->service_id;
	ss->generation = orig->generation;
	/* A kernel-path socket is the application's own, at full speed, and
	 * nobody reads its statistics before it closes: the close record
	 * samples the same counters at TCP_CLOSE, so it asks for no per-ACK
	 * (RTT) callback, only for the state changes. */
	if (orig->flags & NM_ORIG_KERNEL)
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
	else
		nm_tel_want_callbacks(skops);
}

/* ACTIVE_ESTABLISHED_CB: the connect succeeded. */
static __always_inline void nm_tel_active_established(struct bpf_sock_ops *skops)
{
	struct nm_sock_stats *ss;

	if (!nm_cfg_sock_stats)
		return;
	ss = nm_tel_storage(skops);
	if (!ss)
		return;
	ss->flags |= NM_FLOW_ESTABLISHED;
	nm_tel_sample(skops, ss);
}

/* PASSIVE_ESTABLISHED_CB: a pod accepted a connection; tracked when the
 * local address is one of this node's workloads. */
static __always_inline void nm_tel_passive_established(struct bpf_sock_ops *skops)
{
	struct nm_addr local __attribute__((aligned(8)));
	struct nm_addr remote __attribute__((aligned(8)));
	const struct nm_endpoint *ep, *src;
	struct nm_sock_stats *ss;

	if (!nm_cfg_sock_stats)
		return;
	nm_tel_sock_addrs(skops, &local, &remote);
	ep = bpf_map_lookup_elem(&nm_endpoints, &local);
	if (!ep || !(ep->flags & NM_EP_LOCAL))
		return;
	ss = nm_tel_storage_new(skops);
	if (!ss)
		return;
	ss->start_ns = bpf_ktime_get_ns();
	ss->cookie = bpf_get_socket_cookie(skops);
	__builtin_memcpy(&ss->dst, &local, sizeof(ss->dst));
	ss->dst_port = nm_tel_local_port(skops);
	ss->path = NM_FLOW_PATH_INBOUND;
	ss->role = NM_FLOW_ROLE_SERVER;
	ss->flags = NM_FLOW_ESTABLISHED | (skops->family == 2 ? 0 : NM_FLOW_V6);
	ss->dst_workload_id = ep->workload_id;
	ss->dst_identity_id = ep->identity_id;
	/* A peer that is a workload address (a kernel-path client, or the
	 * agent preserving the client's source) names the source. */
	src = bpf_map_lookup_elem(&nm_endpoints, &remote);
	if (src) {
		ss->src_workload_id = src->workload_id;
		ss->src_identity_id = src->identity_id;
	}
	nm_tel_sample(skops, ss);
	nm_tel_want_callbacks(skops);
}

/* RTT_CB (every ACK with an RTT sample) and RETRANS_CB. */
static __always_inline void nm_tel_update(struct bpf_sock_ops *skops)
{
	struct nm_sock_stats *ss;

	if (!nm_cfg_sock_stats)
		return;
	ss = nm_tel_storage(skops);
	if (ss)
		nm_tel_sample(skops, ss);
}

/* STATE_CB: notes our FIN; at TCP_CLOSE the storage becomes the flow's
 * close record. The storage stays until the socket is freed, so it can
 * still be read. */
static __always_inline void nm_tel_state(struct bpf_sock_ops *skops)
{
	struct nm_flow_event ev __attribute__((aligned(8)));
	struct nm_sock_stats *ss;

	__u32 new_state = skops->args[1];

	if (!nm_cfg_sock_stats)
		return;
	ss = nm_tel_storage(skops);
	if (!ss)
		return;
	/* tcp_close_state() moves to these just before tcp_send_fin(). */
	if (new_state == BPF_TCP_FIN_WAIT1 || new_state == BPF_TCP_LAST_ACK)
		ss->flags |= NM_FLOW_FIN_SENT;
	if (new_state != BPF_TCP_CLOSE)
		return;
	nm_tel_sample(skops, ss);
	__builtin_memset(&ev, 0, sizeof(ev));
	ev.hdr.type = NM_EVT_FLOW_CLOSE;
	ev.hdr.size = sizeof(ev);
	ev.cookie = ss->cookie;
	nm_tel_sock_addrs(skops, &ev.src, &ev.peer);
	ev.src_port = nm_tel_local_port(skops);
	ev.peer_port = nm_tel_remote_port(skops);
	__builtin_memcpy(&ev.dst, &ss->dst, sizeof(ev.dst));
	__builtin_memcpy(&ev.backend, &ss->backend, sizeof(ev.backend));
	ev.dst_port = ss->dst_port;
	ev.backend_port = ss->backend_port;
	ev.path = ss->path;
	ev.role = ss->role;
	ev.flags = ss->flags;
	ev.src_workload_id = ss->src_workload_id;
	ev.src_identity_id = ss->src_identity_id;
	ev.dst_workload_id = ss->dst_workload_id;
	ev.dst_identity_id = ss->dst_identity_id;
	ev.service_id = ss->service_id;
	ev.generation = ss->generation;
	ev.bytes_acked = ss->bytes_acked;
	ev.bytes_received = ss->bytes_received;
	ev.segs_in = ss->segs_in;
	ev.segs_out = ss->segs_out;
	ev.srtt_us = ss->srtt_us;
	ev.total_retrans = ss->total_retrans;
	ev.start_ns = ss->start_ns;
	ev.end_ns = bpf_ktime_get_ns();
	nm_event_output(skops, &ev, sizeof(ev));
}

/* connect4/6 refused a meshed workload's connect(), or let it through in
 * fail-open mode because of a datapath error. */
static __always_inline void nm_tel_connect_event(struct bpf_sock_addr *ctx,
						 const struct nm_orig *orig,
						 __u8 verdict, __u8 reason,
						 __u32 policy_id)
{
	struct nm_connect_event ev __attribute__((aligned(8)));

	__builtin_memset(&ev, 0, sizeof(ev));
	ev.hdr.type = NM_EVT_CONNECT;
	ev.hdr.size = sizeof(ev);
	ev.cookie = bpf_get_socket_cookie(ctx);
	ev.ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(&ev.dst, &orig->orig_dst, sizeof(ev.dst));
	ev.dst_port = orig->orig_port;
	ev.verdict = verdict;
	ev.reason = reason;
	ev.src_workload_id = orig->src_workload_id;
	ev.src_identity_id = orig->src_identity_id;
	ev.dst_workload_id = orig->dst_workload_id;
	ev.service_id = orig->service_id;
	ev.policy_id = policy_id;
	nm_event_output(ctx, &ev, sizeof(ev));
}

#endif /* NM_TELEMETRY_BPF_H */
