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
#include <bpf/bpf_core_read.h>
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
 * TCP can queue an skb that starts before bytes it already queued: a
 * retransmission that the sender built bigger than what was lost (it
 * merged segments, or re-cut them) overlaps the bytes that did arrive.
 * recv() skips the overlap (it reads from copied_seq); what feeds a
 * verdict without a parser (tcp_read_skb since 6.0, tcp_read_sock's actor
 * before, which ignores its offset) passes the whole skb, so without this
 * the peer would get the overlap twice. Seen on 6.18
 * in about one 16 MiB echo in 100 under a slow receiver, always with a
 * D-SACK for a partly old segment (TcpExt TCPDSACKOldSent above
 * DelayedACKLost).
 *
 * So the verdict keeps the sequence of the next new byte per source and
 * cuts what an skb repeats off its front. The skb's sequence is in the
 * kernel's control block (tcp_skb_cb, at the start of skb->cb); the first
 * verdict starts from copied_seq, what the agent read before the switch.
 * bpf_skb_adjust_room pops at most 0xfff bytes a call.
 */
#define NM_RELAY_TRIM_STEP 0xfff
/* 655200 bytes: above the largest skb TCP queues (coalesced from 17 frags
 * of 32 KiB, 544 KiB). 32 calls (128 KiB) were too few: test_36 met an
 * overlap above that. */
#define NM_RELAY_TRIM_CALLS 160

/* Calls the verdict may make, up to NM_RELAY_TRIM_CALLS. Set lower only by
 * tests, so that an overlap cannot be cut and the flow must be reset
 * (tests/bpf/test_relay, test_fault). */
const volatile __u32 nm_relay_trim_calls = NM_RELAY_TRIM_CALLS;

/* How the verdict reads an skb's sequence. */
enum nm_relay_seq_src {
	NM_RELAY_SEQ_KFUNC, /* bpf_cast_to_kern_ctx (6.2+) */
	NM_RELAY_SEQ_PROBE, /* bpf_probe_read_kernel (5.13-6.1) */
};

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/*
 * An sk_skb program's context is the kernel's sk_buff itself (the
 * verifier rewrites __sk_buff fields into sk_buff offsets), so where the
 * kfunc is missing the sequence is read through that address. The
 * verifier lets a context address reach a helper only for a program
 * allowed to leak pointers (CAP_PERFMON at load, which the agent has
 * during set-up); the offsets are CO-RE relocated for the running kernel.
 */
static __always_inline int nm_relay_skb_seq(struct __sk_buff *skb,
					    enum nm_relay_seq_src src, __u32 *seq)
{
	if (src == NM_RELAY_SEQ_KFUNC) {
		struct sk_buff *k = bpf_cast_to_kern_ctx(skb);

		*seq = ((struct tcp_skb_cb *)k->cb)->seq;
		return 0;
	}
	return bpf_probe_read_kernel(seq, sizeof(*seq),
				     (void *)skb + bpf_core_field_offset(struct sk_buff, cb) +
				     bpf_core_field_offset(struct tcp_skb_cb, seq));
}

static __always_inline int nm_relay_trim(struct __sk_buff *skb,
					 enum nm_relay_seq_src src,
					 struct nm_relay_dir *d, __u32 *len)
{
	__u32 seq, over;

	if (nm_relay_skb_seq(skb, src, &seq))
		return -1;
	if (!d->seq_known) {
		struct bpf_sock *sk = skb->sk;
		struct tcp_sock *tp;

		if (!sk)
			return -1;
		tp = bpf_skc_to_tcp_sock(sk);
		if (!tp)
			return -1;
		d->next_seq = tp->copied_seq;
		d->seq_known = 1;
	}
	over = d->next_seq - seq;
	if ((__s32)over <= 0) {
		/* New bytes only (a gap cannot be: TCP queues in order). */
		d->next_seq = seq + *len;
		return 0;
	}
	if (over >= *len)
		return -1; /* all old: TCP drops such segments before here */
	d->next_seq = seq + *len;
	for (__u32 i = 0; i < NM_RELAY_TRIM_CALLS && i < nm_relay_trim_calls && over; i++) {
		__u32 step = over < NM_RELAY_TRIM_STEP ? over : NM_RELAY_TRIM_STEP;

		if (bpf_skb_adjust_room(skb, -(__s32)step, 0, 0))
			return -1;
		over -= step;
		*len -= step;
		__sync_fetch_and_add(&d->trimmed, step);
	}
	return over ? -1 : 0;
}

/*
 * The verdict for one skb of a source socket. A socket without a record
 * (not the relay's: cannot happen, the map holds only the agent's) passes
 * to its own receive queue. A redirect to a missing peer would drop the
 * bytes: the agent removes a peer from nm_relay_dst only after its source
 * left nm_relay_src. src: how to read an skb's sequence to cut repeated
 * bytes (nm_relay_trim).
 */
static __always_inline int nm_relay_decide(struct __sk_buff *skb,
					   enum nm_relay_seq_src src)
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
	if (nm_relay_trim(skb, src, d, &len)) {
		/* Neither sent whole nor cut: the stream is broken here. The
		 * agent resets the flow (a reset, never repeated bytes). */
		d->fault = 1;
		bpf_ringbuf_output(&nm_relay_sig, &cookie, sizeof(cookie), 0);
		return SK_DROP;
	}
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
