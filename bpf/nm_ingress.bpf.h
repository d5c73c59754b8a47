/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_ingress.bpf.h - the strict inbound decision behind cgroup_skb/ingress
 * (DESIGN §2 path 5, docs/strict.md) and the maps only it reads.
 *
 * The program sees every packet entering a socket below the node's cgroup
 * root. It looks at TCP connection attempts only (SYN without ACK): replies
 * to a pod's own outbound connections (SYN+ACK) and every segment of an
 * established connection pass without a map lookup, so the per-packet cost
 * is a few bytes loaded from the header. For a SYN it finds the receiving
 * socket's workload (its cgroup or the nearest ancestor that is one, as
 * nm_current_workload() does for connect4/6) and, when that workload is
 * STRICT, lets the SYN in only if
 *   - its 4-tuple is in nm_mesh_conns: the local agent wrote it before its
 *     connect() to the pod (inbound tunnels, same-node relays), or sockops
 *     did before the SYN of a same-node kernel-path connection, or
 *   - its source address is in nm_probers (the kubelet's, node-local).
 * Anything else is dropped and counted in nm_strict_drops; the client sees
 * its SYNs unanswered (a connect timeout), as with a firewall DROP.
 *
 * A TCP packet whose header cannot be found (an IPv6 extension header chain
 * longer than NM_V6_MAX_EXT) is dropped for a STRICT workload too: fail
 * closed. Only helpers of Linux 5.10 are used: bpf_skb_load_bytes,
 * bpf_skb_cgroup_id and bpf_skb_ancestor_cgroup_id in cgroup_skb (4.19+).
 */
#ifndef NM_INGRESS_BPF_H
#define NM_INGRESS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nm_abi.h"
#include "nm_addr.bpf.h"
#include "nm_maps.bpf.h"

/* Values a cgroup_skb program returns. */
#define NM_SKB_PASS 1
#define NM_SKB_DROP 0

#define NM_ETH_P_IP 0x0800
#define NM_ETH_P_IPV6 0x86DD
#define NM_TCP_FLAG_SYN 0x02
#define NM_TCP_FLAG_ACK 0x10
/* IPv6 extension headers walked before giving up (fail closed). */
#define NM_V6_MAX_EXT 6

/* nm_mesh_conns is in nm_maps.bpf.h: sockops writes kernel-path entries. */

/* Node-local prober addresses (mesh.probers); agent writes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_PROBERS);
	__type(key, struct nm_addr);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_probers SEC(".maps");

/* workload id -> strict counters, per CPU: no atomics on the data path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NM_MAX_WORKLOADS);
	__type(key, __u32);
	__type(value, struct nm_strict_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_strict_drops SEC(".maps");

/* What the header parse found. */
enum nm_ingress_pkt {
	NM_PKT_OTHER = 0,  /* not TCP, or TCP but not a connection attempt */
	NM_PKT_SYN = 1,    /* TCP SYN without ACK: key filled */
	NM_PKT_BROKEN = 2, /* TCP (as far as we can tell) with no header found */
};

/* Ports and flags of the TCP header at off; fills the key's ports. */
static __always_inline enum nm_ingress_pkt
nm_ingress_tcp(struct __sk_buff *skb, __u32 off, struct nm_conn_key *key)
{
	__u8 hdr[14];

	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return NM_PKT_BROKEN;
	if ((hdr[13] & (NM_TCP_FLAG_SYN | NM_TCP_FLAG_ACK)) != NM_TCP_FLAG_SYN)
		return NM_PKT_OTHER;
	__builtin_memcpy(&key->sport, &hdr[0], 2);
	__builtin_memcpy(&key->dport, &hdr[2], 2);
	return NM_PKT_SYN;
}

static __always_inline enum nm_ingress_pkt
nm_ingress_parse_v4(struct __sk_buff *skb, struct nm_conn_key *key)
{
	__u8 ip[20];
	__u32 a;

	if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
		return NM_PKT_OTHER;
	if (ip[9] != IPPROTO_TCP)
		return NM_PKT_OTHER;
	/* Not the first fragment: no TCP header here (sockets get
	 * reassembled packets; this is belt and braces). */
	if (((ip[6] & 0x1f) | ip[7]) != 0)
		return NM_PKT_OTHER;
	__builtin_memcpy(&a, &ip[12], 4);
	nm_addr_set_v4(&key->saddr, a);
	__builtin_memcpy(&a, &ip[16], 4);
	nm_addr_set_v4(&key->daddr, a);
	return nm_ingress_tcp(skb, (ip[0] & 0x0f) * 4, key);
}

static __always_inline enum nm_ingress_pkt
nm_ingress_parse_v6(struct __sk_buff *skb, struct nm_conn_key *key)
{
	__u8 ip[40], ext[2];
	__u32 off = 40;
	__u8 next;
	int i;

	if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
		return NM_PKT_OTHER;
	__builtin_memcpy(key->saddr.a, &ip[8], 16);
	__builtin_memcpy(key->daddr.a, &ip[24], 16);
	next = ip[6];
#pragma unroll
	for (i = 0; i < NM_V6_MAX_EXT; i++) {
		if (next == IPPROTO_TCP)
			return nm_ingress_tcp(skb, off, key);
		if (next != 0 /* hop-by-hop */ && next != 43 /* routing */ &&
		    next != 60 /* destination options */ && next != 44 /* fragment */ &&
		    next != 51 /* AH */)
			return NM_PKT_OTHER;
		if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
			return NM_PKT_BROKEN;
		if (next == 44)
			off += 8;
		else if (next == 51)
			off += ((__u32)ext[1] + 2) * 4;
		else
			off += ((__u32)ext[1] + 1) * 8;
		next = ext[0];
	}
	if (next == IPPROTO_TCP)
		return nm_ingress_tcp(skb, off, key);
	/* Still walking headers: it may be TCP we cannot see. */
	return NM_PKT_BROKEN;
}

/* The receiving socket's workload: its cgroup, or the nearest ancestor. */
static __always_inline const struct nm_workload *
nm_ingress_workload(struct __sk_buff *skb)
{
	const struct nm_workload *wl;
	__u64 id = bpf_skb_cgroup_id(skb);
	int level;

	if (!id)
		return NULL;
	wl = bpf_map_lookup_elem(&nm_workloads, &id);
	if (wl)
		return wl;
	for (level = NM_MAX_CGROUP_DEPTH; level >= 1; level--) {
		id = bpf_skb_ancestor_cgroup_id(skb, level);
		if (!id)
			continue;
		wl = bpf_map_lookup_elem(&nm_workloads, &id);
		if (wl)
			return wl;
	}
	return NULL;
}

static __always_inline struct nm_strict_stats *nm_strict_stats_get(__u32 wl_id)
{
	struct nm_strict_stats *st, zero = {};

	st = bpf_map_lookup_elem(&nm_strict_drops, &wl_id);
	if (st)
		return st;
	nm_map_update(&nm_strict_drops, NM_MAP_STRICT_DROPS, &wl_id, &zero,
		      BPF_NOEXIST);
	return bpf_map_lookup_elem(&nm_strict_drops, &wl_id);
}

static __always_inline int nm_ingress_decide(struct __sk_buff *skb)
{
	struct nm_conn_key key __attribute__((aligned(8))) = {};
	const struct nm_workload *wl;
	struct nm_strict_stats *st;
	enum nm_ingress_pkt kind;

	if (skb->protocol == bpf_htons(NM_ETH_P_IP))
		kind = nm_ingress_parse_v4(skb, &key);
	else if (skb->protocol == bpf_htons(NM_ETH_P_IPV6))
		kind = nm_ingress_parse_v6(skb, &key);
	else
		return NM_SKB_PASS;
	if (kind == NM_PKT_OTHER)
		return NM_SKB_PASS;

	wl = nm_ingress_workload(skb);
	if (!wl || !(wl->flags & NM_WL_STRICT))
		return NM_SKB_PASS;
	st = nm_strict_stats_get(wl->workload_id);
	if (kind == NM_PKT_BROKEN) {
		if (st)
			st->unparsed++;
		return NM_SKB_DROP;
	}
	if (bpf_map_lookup_elem(&nm_mesh_conns, &key)) {
		if (st)
			st->mesh_admits++;
		return NM_SKB_PASS;
	}
	if (bpf_map_lookup_elem(&nm_probers, &key.saddr)) {
		if (st)
			st->prober_admits++;
		return NM_SKB_PASS;
	}
	if (st)
		st->drops++;
	return NM_SKB_DROP;
}

#endif /* NM_INGRESS_BPF_H */
