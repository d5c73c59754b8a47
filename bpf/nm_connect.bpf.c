// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nm_connect.bpf.c - cgroup/connect4 and cgroup/connect6: steer a meshed
 * workload's TCP connect() to the node agent's outbound listener and record
 * where it was really going (DESIGN §2 path 1). The decisions live in
 * nm_redirect.bpf.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nm_redirect.bpf.h"

SEC("cgroup/connect4")
int nm_connect4(struct bpf_sock_addr *ctx)
{
	return nm_handle_connect4(ctx);
}

SEC("cgroup/connect6")
int nm_connect6(struct bpf_sock_addr *ctx)
{
	return nm_handle_connect6(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
