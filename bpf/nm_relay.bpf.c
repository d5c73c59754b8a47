// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_relay.bpf.c - sk_skb programs of the sockmap relay, attached to
 * nm_relay_src by agent/datapath/sockmap.c: the stream verdict (decision in
 * nm_relay.bpf.h) and, for kernels before 5.13 that need one, a stream
 * parser that takes each skb whole.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_relay.bpf.h"

SEC("sk_skb/stream_verdict")
int nm_relay_verdict(struct __sk_buff *skb)
{
	return nm_relay_decide(skb);
}

SEC("sk_skb/stream_parser")
int nm_relay_parser(struct __sk_buff *skb)
{
	return skb->len;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
