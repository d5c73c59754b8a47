/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_redirect.bpf.h - the decisions behind cgroup/connect4|6 and sockops:
 * who is meshed, where a connection really goes, and how its original
 * destination reaches the agent (DESIGN §2 path 1), or, for a same-node
 * backend the compiled policy allows, that it goes straight there (the
 * kernel path, DESIGN §2 path 3, docs/kernel-path.md).
 *
 * Everything here is static __always_inline so the SEC() entry points stay
 * thin and the programs need no BPF-to-BPF calls. Only helpers and context
 * fields that exist in Linux 5.10 are used: bpf_get_current_cgroup_id() in
 * sock_addr programs (5.7), ctx->sk (5.3), socket cookies (5.0).
 *
 * Addresses are 16 bytes, IPv4-mapped for v4, and are copied as four u32
 * words. Every struct nm_addr in nm_abi.h sits at a 4-byte aligned offset of
 * its containing struct, and the locals holding them are declared aligned, so
 * these word accesses are aligned for the verifier.
 */
#ifndef NM_REDIRECT_BPF_H
#define NM_REDIRECT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nm_abi.h"
#include "nm_addr.bpf.h"
#include "nm_maps.bpf.h"
#include "nm_policy.bpf.h"
#include "nm_lb.bpf.h"
#include "nm_telemetry.bpf.h"

/* AF_* are macros in the UAPI headers, so vmlinux.h does not carry them. */
#define NM_AF_INET 2
#define NM_AF_INET6 10

/* Values a cgroup/connect program returns. */
#define NM_CONNECT_ALLOW 1
#define NM_CONNECT_REJECT 0 /* connect() fails with EPERM */

#define NM_ALIGNED __attribute__((aligned(8)))

/*
 * Reads a u32 context field whole. Before 5.18 the verifier rejects narrow
 * (u16) loads of bpf_sock_addr.user_port, and 5.10 accepts only whole-word
 * reads of these sock_ops fields, yet clang may narrow a load whose result
 * it sees truncated.
 */
static __always_inline __u32 nm_ctx_u32(const __u32 *field)
{
	return *(const volatile __u32 *)field;
}

static __always_inline void nm_addr_copy(struct nm_addr *dst,
					 const struct nm_addr *src)
{
	const __u32 *s = (const __u32 *)src->a;
	__u32 *d = (__u32 *)dst->a;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

static __always_inline bool nm_addr_is_zero(const struct nm_addr *a)
{
	const __u32 *w = (const __u32 *)a->a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline bool nm_addr_is_v4(const struct nm_addr *a)
{
	const __u32 *w = (const __u32 *)a->a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* The workload's counters, created on first use; NULL if the map is full. */
static __always_inline struct nm_wl_stats *nm_stats_get(__u32 workload_id)
{
	struct nm_wl_stats *st;

	st = bpf_map_lookup_elem(&nm_wl_stats, &workload_id);
	if (st)
		return st;
	struct nm_wl_stats zero = {};

	/* BPF_NOEXIST: another CPU may have created it meanwhile; either way
	 * the lookup below finds this CPU's copy. */
	nm_map_update(&nm_wl_stats, NM_MAP_WL_STATS, &workload_id, &zero,
		      BPF_NOEXIST);
	return bpf_map_lookup_elem(&nm_wl_stats, &workload_id);
}

/*
 * Picks the backend of a service VIP:port into orig (nm_lb.bpf.h). Returns
 * 0 when orig is filled, -1 when the service has nothing to choose from
 * (the connect is refused) and -2 when a slot the service announces is
 * missing (a sync in progress). wl is the caller: maglev hashes its address.
 */
static __always_inline int nm_pick_service_backend(const struct nm_service *svc,
						   struct nm_orig *orig,
						   bool vip_v6,
						   const struct nm_workload *wl)
{
	struct nm_backend *be;
	__u32 count = svc->backend_count;
	int err;

	if (count == 0)
		return -1;
	if (count > NM_MAX_BACKENDS_PER_SVC)
		count = NM_MAX_BACKENDS_PER_SVC;
	be = nm_lb_pick(svc, NM_BACKEND_SLOT(bpf_ntohs(orig->orig_port), vip_v6, 0),
			count, &wl->addr, &err);
	if (!be)
		return err;
	nm_addr_copy(&orig->backend, &be->addr);
	orig->backend_port = be->port;
	orig->service_id = svc->service_id;
	orig->dst_workload_id = be->workload_id;
	orig->dst_identity_id = be->identity_id;
	orig->flags |= NM_ORIG_SERVICE;
	if (svc->lb_algo == NM_LB_LEAST_REQUEST)
		orig->flags |= NM_ORIG_LB_COUNT;
	if (be->flags & NM_EP_LOCAL)
		orig->flags |= NM_ORIG_LOCAL;
	if (be->flags & NM_EP_STRICT)
		orig->flags |= NM_ORIG_DST_STRICT;
	return 0;
}

/*
 * The caller's workload: its own cgroup's, or the nearest ancestor's that
 * is one. The agent maps pod cgroups, and container runtimes run a pod's
 * processes in per-container cgroups below the pod's (kubepods/.../pod<uid>/
 * <container>), so the caller's own cgroup is usually not the pod's. Pod
 * cgroups never nest, so any ancestor that matches is the pod. Bounded by
 * NM_MAX_CGROUP_DEPTH levels below the cgroup v2 root (level 0).
 */
static __always_inline const struct nm_workload *nm_current_workload(void)
{
	const struct nm_workload *wl;
	__u64 id = bpf_get_current_cgroup_id();
	int level;

	wl = bpf_map_lookup_elem(&nm_workloads, &id);
	if (wl)
		return wl;
	for (level = NM_MAX_CGROUP_DEPTH; level >= 1; level--) {
		/* 0 past the caller's own depth. */
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			continue;
		wl = bpf_map_lookup_elem(&nm_workloads, &id);
		if (wl)
			return wl;
	}
	return NULL;
}

/*
 * A datapath error (a backend slot the service announces is missing, no
 * agent state, a record that cannot be written): counted, then refused in
 * fail-closed mode (the default) and let through only in fail-open mode.
 * Never silently to the original destination when the mesh is required.
 */
static __always_inline int nm_connect_error(struct bpf_sock_addr *ctx,
					    const struct nm_orig *orig,
					    struct nm_wl_stats *st,
					    bool fail_open, __u8 reason)
{
	if (st)
		st->errors++;
	if (fail_open) {
		if (st)
			st->passthrough++;
		nm_tel_connect_event(ctx, orig, NM_CV_PASSTHROUGH, reason, 0);
		return NM_CONNECT_ALLOW;
	}
	if (st)
		st->denies++;
	nm_tel_connect_event(ctx, orig, NM_CV_REFUSED, reason, 0);
	return NM_CONNECT_REJECT;
}

/*
 * The same-node kernel path (DESIGN §2 path 3): the backend runs on this
 * node, the agent turned the path on (mesh.kernelPath), the service needs
 * nothing only the agent does, and the compiled policy holds an ALLOW for
 * exactly this (source, destination, backend port). An ALLOW record is the
 * destination agent's own verdict (docs/policy-maps.md), so the agent would
 * only have connected the two pods in plaintext on this node: the kernel
 * does it without the hop. No record (the agent must decide: address
 * matches, dry-run, AUDIT) keeps the agent path.
 */
static __always_inline bool nm_kernel_path_ok(const struct nm_agent_state *state,
					      const struct nm_service *svc,
					      const struct nm_policy_val *pv,
					      const struct nm_orig *orig)
{
	if (!state || !(state->flags & NM_AGENT_F_KERNEL_PATH))
		return false;
	if (!(orig->flags & NM_ORIG_LOCAL) || orig->backend_port == 0)
		return false;
	if (!pv || pv->verdict != NM_PV_ALLOW)
		return false;
	if (svc && (svc->flags & NM_SVC_AGENT_PATH))
		return false;
	/* The backend of the family the application asked for: connect4
	 * can only be rewritten to IPv4, and a v6 socket that asked for a v6
	 * address may be V6ONLY (a v6 VIP may pick a v4-only endpoint, which
	 * the agent dials for it). */
	if (nm_addr_is_v4(&orig->backend) != nm_addr_is_v4(&orig->orig_dst))
		return false;
	return true;
}

/*
 * The connect4/6 decision. dst/port are the destination the application
 * asked for (IPv4-mapped for connect4); on redirect agent and agent_port are set
 * to the address to rewrite to: the agent's listener, or on the kernel path
 * the backend itself. Returns NM_CONNECT_ALLOW or NM_CONNECT_REJECT;
 * *redirect tells whether to rewrite.
 *
 * Only callers whose cgroup is a meshed workload's are steered; everything
 * else (host processes, the agent itself, unmeshed pods) passes untouched.
 * Nothing a process can set on its socket exempts it.
 */
static __always_inline int nm_connect_decide(struct bpf_sock_addr *ctx,
					     const struct nm_addr *dst,
					     __be16 port, bool hook_v6,
					     struct nm_addr *agent,
					     __be16 *agent_port, bool *redirect)
{
	struct nm_orig orig NM_ALIGNED = {};
	struct nm_svc_key skey NM_ALIGNED = {};
	const struct nm_agent_state *state;
	const struct nm_policy_val *pv;
	const struct nm_workload *wl;
	const struct nm_service *svc;
	struct nm_wl_stats *st;
	__u64 cookie;
	__u32 zero = 0;
	bool dst_v6, fail_open;

	*redirect = false;
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return NM_CONNECT_ALLOW;
	wl = nm_current_workload();
	if (!wl || !(wl->flags & NM_WL_MESHED))
		return NM_CONNECT_ALLOW;

	st = nm_stats_get(wl->workload_id);
	if (st)
		st->connects++;
	/* No agent state at all is an error like any other: an agent that
	 * wrote workloads but no state is broken, not absent. */
	state = bpf_map_lookup_elem(&nm_agent_state, &zero);
	fail_open = state && state->fail_mode == NM_FAIL_OPEN;

	nm_addr_copy(&orig.orig_dst, dst);
	orig.orig_port = port;
	orig.src_workload_id = wl->workload_id;
	orig.src_identity_id = wl->identity_id;
	if (hook_v6)
		orig.flags |= NM_ORIG_V6;
	dst_v6 = !nm_addr_is_v4(dst);

	nm_addr_copy(&skey.vip, dst);
	skey.port = port;
	skey.proto = IPPROTO_TCP;
	svc = bpf_map_lookup_elem(&nm_services, &skey);
	if (svc) {
		int ret = nm_pick_service_backend(svc, &orig, dst_v6, wl);

		if (ret == -1) {
			/* No endpoints: fail at once, as kube-proxy rejects,
			 * rather than let a SYN to a VIP wander off. */
			if (st)
				st->denies++;
			nm_tel_connect_event(ctx, &orig, NM_CV_REFUSED,
					     NM_CR_NO_ENDPOINTS, 0);
			return NM_CONNECT_REJECT;
		}
		if (ret < 0)
			return nm_connect_error(ctx, &orig, st, fail_open,
						NM_CR_MISSING_SLOT);
	} else {
		const struct nm_endpoint *ep;

		/* A direct connect to a known pod address is meshed too;
		 * anything else is outside the mesh and passes. */
		ep = bpf_map_lookup_elem(&nm_endpoints, &orig.orig_dst);
		if (!ep) {
			if (st)
				st->passthrough++;
			return NM_CONNECT_ALLOW;
		}
		nm_addr_copy(&orig.backend, dst);
		orig.backend_port = port;
		orig.dst_workload_id = ep->workload_id;
		orig.dst_identity_id = ep->identity_id;
		orig.flags |= NM_ORIG_ENDPOINT;
		if (ep->flags & NM_EP_LOCAL)
			orig.flags |= NM_ORIG_LOCAL;
		if (ep->flags & NM_EP_STRICT)
			orig.flags |= NM_ORIG_DST_STRICT;
	}

	/* The destination workload and the port it will see are known now:
	 * a compiled DENY refuses here (EPERM, no SYN), in fail-open mode too,
	 * since it is the destination's verdict, not a datapath error. */
	pv = nm_policy_lookup(orig.src_workload_id, orig.dst_workload_id,
			      orig.backend_port);
	/* Any other value (ALLOW, or one a newer agent defines) admits: the
	 * kernel may refuse only what the agent said it would refuse. */
	if (pv && pv->verdict == NM_PV_DENY) {
		if (st)
			st->denies++;
		nm_tel_connect_event(ctx, &orig, NM_CV_REFUSED, NM_CR_POLICY,
				     pv->policy_id);
		return NM_CONNECT_REJECT;
	}

	if (nm_kernel_path_ok(state, svc, pv, &orig)) {
		/* The record is telemetry only (sockops counts the flow and
		 * keeps its statistics, then deletes it at TCP_CONNECT_CB):
		 * the connection works without it, so a failed write costs one
		 * flow's telemetry (counted in nm_map_errors), not the connect. */
		cookie = bpf_get_socket_cookie(ctx);
		orig.flags |= NM_ORIG_KERNEL;
		orig.cookie = cookie;
		orig.generation = state->config_generation;
		orig.stamp_ns = bpf_ktime_get_ns();
		nm_map_update(&nm_orig_cookie, NM_MAP_ORIG_COOKIE, &cookie, &orig,
			      BPF_ANY);
		nm_addr_copy(agent, &orig.backend);
		*agent_port = orig.backend_port;
		*redirect = true;
		return NM_CONNECT_ALLOW;
	}
	/* Only kernel-path connections are admitted into STRICT pods by
	 * sockops; the agent admits its own. */
	orig.flags &= ~NM_ORIG_DST_STRICT;

	if (!state || !ctx->sk)
		return nm_connect_error(ctx, &orig, st, fail_open,
					NM_CR_NO_AGENT_STATE);
	/* A v4 destination reached through an AF_INET6 socket (::ffff:a.b.c.d)
	 * goes to the v4 listener, written back IPv4-mapped. */
	if (dst_v6)
		nm_addr_copy(agent, &state->agent_v6);
	else
		nm_addr_copy(agent, &state->agent_v4);
	*agent_port = state->outbound_port;
	if (nm_addr_is_zero(agent) || *agent_port == 0)
		return nm_connect_error(ctx, &orig, st, fail_open,
					NM_CR_NO_LISTENER);

	cookie = bpf_get_socket_cookie(ctx);
	orig.cookie = cookie;
	orig.generation = state->config_generation;
	orig.stamp_ns = bpf_ktime_get_ns();
	/* Without its record the agent resets the connection, so a failed
	 * update (map full beyond LRU eviction, out of memory) is an error. */
	if (nm_map_update(&nm_orig_cookie, NM_MAP_ORIG_COOKIE, &cookie, &orig,
			  BPF_ANY))
		return nm_connect_error(ctx, &orig, st, fail_open,
					NM_CR_RECORD_WRITE);
	if (st)
		st->redirects++;
	*redirect = true;
	return NM_CONNECT_ALLOW;
}

static __always_inline int nm_handle_connect4(struct bpf_sock_addr *ctx)
{
	struct nm_addr dst NM_ALIGNED, agent NM_ALIGNED;
	__be16 port = (__be16)nm_ctx_u32(&ctx->user_port);
	__be16 agent_port = 0;
	bool redirect;
	int ret;

	nm_addr_set_v4(&dst, ctx->user_ip4);
	ret = nm_connect_decide(ctx, &dst, port, false, &agent, &agent_port,
				&redirect);
	if (redirect) {
		ctx->user_ip4 = ((const __u32 *)agent.a)[3];
		ctx->user_port = (__u32)agent_port;
	}
	return ret;
}

static __always_inline int nm_handle_connect6(struct bpf_sock_addr *ctx)
{
	struct nm_addr dst NM_ALIGNED, agent NM_ALIGNED;
	__u32 *d = (__u32 *)dst.a;
	const __u32 *a = (const __u32 *)agent.a;
	__be16 port = (__be16)nm_ctx_u32(&ctx->user_port);
	__be16 agent_port = 0;
	bool redirect;
	int ret;

	d[0] = ctx->user_ip6[0];
	d[1] = ctx->user_ip6[1];
	d[2] = ctx->user_ip6[2];
	d[3] = ctx->user_ip6[3];
	ret = nm_connect_decide(ctx, &dst, port, true, &agent, &agent_port,
				&redirect);
	if (redirect) {
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
		ctx->user_port = (__u32)agent_port;
	}
	return ret;
}

/*
 * ACTIVE_ESTABLISHED_CB runs on the client before its final ACK leaves, so
 * the record is keyed by the client's (address, port) before the agent can
 * accept() the connection.
 */
static __always_inline void nm_sockops_move_orig(struct bpf_sock_ops *skops)
{
	struct nm_tuple_key key NM_ALIGNED = {};
	struct nm_orig *orig;
	__u64 cookie;

	cookie = bpf_get_socket_cookie(skops);
	orig = bpf_map_lookup_elem(&nm_orig_cookie, &cookie);
	if (!orig)
		return;
	if (skops->family == NM_AF_INET) {
		nm_addr_set_v4(&key.addr, skops->local_ip4);
	} else {
		/* An AF_INET6 socket talking v4 has ::ffff:a.b.c.d here,
		 * which is the key the agent builds from its v4 peer. */
		__u32 *w = (__u32 *)key.addr.a;

		w[0] = skops->local_ip6[0];
		w[1] = skops->local_ip6[1];
		w[2] = skops->local_ip6[2];
		w[3] = skops->local_ip6[3];
	}
	/* local_port is in host order, unlike remote_port. */
	key.port = bpf_htons((__u16)nm_ctx_u32(&skops->local_port));
	/* The agent's freshness bound counts from here: connect() to
	 * established may take SYN retries, established to accept() may not. */
	orig->stamp_ns = bpf_ktime_get_ns();
	if (nm_map_update(&nm_orig_tuple, NM_MAP_ORIG_TUPLE, &key, orig,
			  BPF_ANY)) {
		struct nm_wl_stats *st = nm_stats_get(orig->src_workload_id);

		/* Left in nm_orig_cookie for the LRU to age out; the agent
		 * will close the connection it cannot place. */
		if (st)
			st->errors++;
		return;
	}
	bpf_map_delete_elem(&nm_orig_cookie, &cookie);
}

/*
 * The 4-tuple of a kernel-path socket as nm_ingress.bpf.h builds it from the
 * SYN the destination pod receives: saddr the client, daddr the backend.
 * An AF_INET6 socket talking to a v4-mapped backend is read through its v4
 * fields: at TCP_CONNECT_CB tcp_v6_connect() has not yet written the mapped
 * source address back into the v6 one.
 */
static __always_inline void nm_kp_conn_key(struct bpf_sock_ops *skops,
					   struct nm_conn_key *key)
{
	bool v4 = skops->family == NM_AF_INET;

	if (!v4) {
		__u32 *d = (__u32 *)key->daddr.a;

		d[0] = skops->remote_ip6[0];
		d[1] = skops->remote_ip6[1];
		d[2] = skops->remote_ip6[2];
		d[3] = skops->remote_ip6[3];
		v4 = nm_addr_is_v4(&key->daddr);
	}
	if (v4) {
		nm_addr_set_v4(&key->saddr, skops->local_ip4);
		nm_addr_set_v4(&key->daddr, skops->remote_ip4);
	} else {
		__u32 *w = (__u32 *)key->saddr.a;

		w[0] = skops->local_ip6[0];
		w[1] = skops->local_ip6[1];
		w[2] = skops->local_ip6[2];
		w[3] = skops->local_ip6[3];
	}
	key->sport = nm_tel_local_port(skops);
	key->dport = nm_tel_remote_port(skops);
}

/*
 * TCP_CONNECT_CB of a kernel-path socket, after telemetry and the LB have
 * read its record: a STRICT destination gets the 4-tuple admitted before the
 * SYN leaves (removed at TCP_CLOSE, nm_sockops_kernel_close()), and the
 * record is deleted, so nothing of the kernel path stays in nm_orig_cookie
 * and nothing ever reaches nm_orig_tuple, which is the agent's.
 */
static __always_inline void nm_sockops_kernel_connect(struct bpf_sock_ops *skops)
{
	struct nm_conn_key key NM_ALIGNED = {};
	struct nm_mesh_conn mc = {};
	struct nm_orig *orig;
	__u64 cookie;

	cookie = bpf_get_socket_cookie(skops);
	orig = bpf_map_lookup_elem(&nm_orig_cookie, &cookie);
	if (!orig || !(orig->flags & NM_ORIG_KERNEL))
		return;
	if (orig->flags & NM_ORIG_DST_STRICT) {
		nm_kp_conn_key(skops, &key);
		mc.workload_id = orig->dst_workload_id;
		mc.flags = NM_MESH_CONN_KERNEL;
		/* A failed write is counted; the destination then drops the
		 * SYN, as for any connection strict mode cannot place. */
		if (!nm_map_update(&nm_mesh_conns, NM_MAP_MESH_CONNS, &key, &mc,
				   BPF_ANY))
			bpf_sock_ops_cb_flags_set(skops,
						  skops->bpf_sock_ops_cb_flags |
						  BPF_SOCK_OPS_STATE_CB_FLAG);
	}
	bpf_map_delete_elem(&nm_orig_cookie, &cookie);
}

/* TCP_CLOSE: a kernel-path connection's admission goes with it; entries the
 * agent wrote (no NM_MESH_CONN_KERNEL) are the agent's to delete. */
static __always_inline void nm_sockops_kernel_close(struct bpf_sock_ops *skops)
{
	struct nm_conn_key key NM_ALIGNED = {};
	const struct nm_mesh_conn *mc;

	if (skops->args[1] != BPF_TCP_CLOSE)
		return;
	nm_kp_conn_key(skops, &key);
	mc = bpf_map_lookup_elem(&nm_mesh_conns, &key);
	if (mc && (mc->flags & NM_MESH_CONN_KERNEL))
		bpf_map_delete_elem(&nm_mesh_conns, &key);
}

#endif /* NM_REDIRECT_BPF_H */
