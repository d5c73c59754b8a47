// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_ingress.bpf.c - cgroup_skb/ingress on the node's cgroup root: a STRICT
 * workload accepts TCP connections only through the mesh (DESIGN §2 path 5,
 * docs/strict.md). The decision lives in nm_ingress.bpf.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_ingress.bpf.h"

SEC("cgroup_skb/ingress")
int nm_ingress(struct __sk_buff *skb)
{
	return nm_ingress_decide(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
