#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_00_harness - the simulated cluster itself, without any agent: pods on
# two nodes reach each other over plain TCP through the node link, service
# VIPs are unrouted, pod processes land in their pod's netns and cgroup, and
# cleanup leaves nothing behind. When this fails, no other integration
# result means anything.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

NM_SCENARIO=harness
if [[ ! -x $NM_PEER ]]; then
	nm_fail harness "missing $NM_PEER (run make)"
	exit 1
fi
nm_cluster_init
envcopy=$(mktemp)
trap 'nm_cluster_cleanup; rm -f "$envcopy"' EXIT

nm_cluster_up --no-agents || { nm_fail harness "cluster setup failed"; exit 1; }

# 1. cross-node pod to pod, no NAT on the way.
out=$(nm_pod_exec client "$NM_PEER" send --to "$(nm_pod_ip echo):8080" --bytes 256K --timeout-ms 5000)
local_addr=$(nm_json "$out" local)
if [[ $(nm_json "$out" match) == true ]] &&
	nm_wait_file_match "$NM_STATE/echo-echo.out" "^accept peer=$local_addr " 2; then
	nm_pass harness-cross-node-tcp
else
	nm_fail harness-cross-node-tcp "send: $out"
fi

# 2. same-node pod to pod.
out=$(nm_pod_exec client "$NM_PEER" send --to "$(nm_pod_ip local-echo):8080" --bytes 256K --timeout-ms 5000)
nm_check harness-same-node-tcp "send: $out" test "$(nm_json "$out" match)" == true

# 3. the VIP is not routed anywhere.
out=$(nm_pod_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 2000)
nm_check harness-vip-unrouted "connect: $out" test "$(nm_json "$out" result)" != connected

# 4. pod processes run in the pod's cgroup and netns.
nm_pod_spawn client probe sleep 30
pid=$NM_LAST_PID
sleep 0.2
nm_pod_info client
want_cg="0::${NM_P_CG#"$NM_CGROUP2"}"
got_cg=$(grep '^0::' "/proc/$pid/cgroup" 2>/dev/null)
want_ns=$(stat -L -c %i "/run/netns/$NM_P_NS")
got_ns=$(readlink "/proc/$pid/ns/net")
if [[ $got_cg == "$want_cg" && $got_ns == "net:[$want_ns]" ]]; then
	nm_pass harness-pod-placement
else
	nm_fail harness-pod-placement "cgroup '$got_cg' (want '$want_cg'), netns '$got_ns' (want net:[$want_ns])"
fi

# 5. cleanup removes everything.
cp "$NM_STATE/cluster.env" "$envcopy"
nm_cluster_cleanup
if left=$(nm_cluster_leftovers "$envcopy"); then
	nm_pass harness-cleanup
else
	nm_fail harness-cleanup "left behind: $(echo "$left" | tr '\n' ';')"
fi
exit $((NM_FAILS > 0))
