// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_sockops.bpf.c - sockops: when a redirected connection is established,
 * re-key its original-destination record by the client's address and port,
 * which is all the agent knows after accept(). Logic in nm_redirect.bpf.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_redirect.bpf.h"

SEC("sockops")
int nm_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		nm_sockops_move_orig(skops);
	else if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		nm_lb_sockops_connect(skops); /* least_request counts */
	else if (skops->op == BPF_SOCK_OPS_STATE_CB)
		nm_lb_sockops_state(skops);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
