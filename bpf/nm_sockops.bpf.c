// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_sockops.bpf.c - sockops: when a redirected connection is established,
 * re-key its original-destination record by the client's address and port,
 * which is all the agent knows after accept(); for a same-node kernel-path
 * connection admit its 4-tuple into a STRICT destination instead and drop
 * the record once read; keep per-socket TCP
 * statistics of meshed sockets and send one record when they close. Logic
 * in nm_redirect.bpf.h, nm_lb.bpf.h and nm_telemetry.bpf.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_redirect.bpf.h"

SEC("sockops")
int nm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* Before the record moves: both read it by cookie. */
		nm_tel_connect(skops);
		nm_lb_sockops_connect(skops); /* least_request counts */
		nm_sockops_kernel_connect(skops); /* deletes a kernel-path record */
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		nm_sockops_move_orig(skops);
		nm_tel_active_established(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		nm_tel_passive_established(skops);
		break;
	case BPF_SOCK_OPS_RTT_CB:
	case BPF_SOCK_OPS_RETRANS_CB:
		nm_tel_update(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		nm_tel_state(skops);
		nm_lb_sockops_state(skops);
		nm_sockops_kernel_close(skops);
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
