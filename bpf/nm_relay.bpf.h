/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nm_relay.bpf.h - the sockmap relay's decision (DESIGN §2 path 4,
 * agent/mesh/zerocopy.c): an skb that arrived on one leg of a flow goes out
 * on the other leg's socket (egress redirect), without user space.
 *
 * Maps (the agent's own, not pinned: not shared with the datapath objects,
 * so this header does not include nm_maps.bpf.h):
 *   nm_relay_src   sockets whose incoming skbs are redirected; the verdict
 *                  program is attached to this map. A socket stays in it
 *                  until its flow ends (see nm_relay_ctl's `parked`).
 *   nm_relay_dst   the sockets skbs are redirected to, by cookie; no
 *                  program, so leaving nm_relay_src never loses what waits
 *                  in a socket's psock queue.
 *   nm_relay_dirs  per source socket: the peer and the bytes redirected.
 *   nm_relay_ctl   per source socket, the agent's: bytes that reached the
 *                  peer socket, the signal threshold and its latch, and
 *                  `parked`: the source's skbs are no longer redirected
 *                  but pass to its own socket (psock ingress, charged to
 *                  its receive buffer, so its window closes), where the
 *                  agent reads them in order. This is how a slow
 *                  receiver holds its sender: taking the source out of
 *                  nm_relay_src instead can drop an skb the kernel was
 *                  handing to the verdict at that instant.
 *   nm_relay_sig   ring buffer: a source whose skbs waiting on the peer
 *                  (redirected - sent) passed `high`; the agent then looks
 *                  at the peer's socket and parks the source if the peer
 *                  is really that far behind (a slow receiver). The kernel
 *                  has no bound of its own on that queue.
 */
#ifndef NM_RELAY_BPF_H
#define NM_RELAY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_abi.h"

#define NM_RELAY_MAX_SOCKS 65536

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, NM_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} nm_relay_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, NM_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} nm_relay_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct nm_relay_dir);
} nm_relay_dirs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct nm_relay_ctl);
} nm_relay_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} nm_relay_sig SEC(".maps");

/*
 * The verdict for one skb of a source socket. A socket without a record
 * (not the relay's: cannot happen, the map holds only the agent's) passes
 * to its own receive queue. A redirect to a missing peer would drop the
 * bytes: the agent removes a peer from nm_relay_dst only after its source
 * left nm_relay_src.
 */
static __always_inline int nm_relay_decide(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct nm_relay_dir *d = bpf_map_lookup_elem(&nm_relay_dirs, &cookie);
	struct nm_relay_ctl *c = bpf_map_lookup_elem(&nm_relay_ctl, &cookie);
	__u32 len = skb->len;
	int verdict;

	if (!d || !c)
		return SK_PASS;
	/* The FIN's skb carries no byte. Redirected, the peer's psock would
	 * send nothing, take it for a broken pipe and set EPIPE on the
	 * peer; passed, it would queue behind the other direction's bytes
	 * with the same end. Dropping it loses nothing: the socket already
	 * has RCV_SHUTDOWN, which is what the agent reads. */
	if (!len)
		return SK_DROP;
	if (c->parked)
		return SK_PASS;
	verdict = bpf_sk_redirect_hash(skb, &nm_relay_dst, &d->peer, 0);
	if (verdict != SK_PASS)
		return verdict;
	/* One source's skbs run one at a time (its socket lock), so the
	 * add is only against the agent's reads. */
	__sync_fetch_and_add(&d->redirected, len);
	if (d->redirected - c->sent > c->high && !c->signaled) {
		c->signaled = 1;
		bpf_ringbuf_output(&nm_relay_sig, &cookie, sizeof(cookie), 0);
	}
	return SK_PASS;
}

#endif
