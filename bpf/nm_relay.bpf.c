// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_relay.bpf.c - sk_skb programs of the sockmap relay, attached to
 * nm_relay_src by agent/datapath/sockmap.c: the stream verdict, without a
 * stream parser (decision in nm_relay.bpf.h), in the one of its two forms
 * that reads an skb's sequence the way the running kernel allows.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_relay.bpf.h"

/* 6.2+: cuts repeated bytes, reading their sequence through
 * bpf_cast_to_kern_ctx. */
SEC("sk_skb/stream_verdict")
int nm_relay_verdict(struct __sk_buff *skb)
{
	return nm_relay_decide(skb, NM_RELAY_SEQ_KFUNC);
}

/* The same on 5.13-6.1, which have no such kfunc: reads the sequence with
 * bpf_probe_read_kernel. */
SEC("sk_skb/stream_verdict")
int nm_relay_verdict_probe(struct __sk_buff *skb)
{
	return nm_relay_decide(skb, NM_RELAY_SEQ_PROBE);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
