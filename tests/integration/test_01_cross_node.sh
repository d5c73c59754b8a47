#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_01_cross_node - scenario 1: the client pod on node-1 dials the `echo`
# service VIP (198.19.0.10:80, unrouted) and reaches the echo pod on node-2
# through both agents; 1 MiB of random bytes comes back unchanged. Also: the
# node-1 agent logged the flow as remote to the echo pod, both agents count
# 1 MiB each way, the reverse node direction works (client-2 on node-2 to
# the node-1 `echo-local` service), and 8 concurrent flows all match.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up cross-node
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
echo_ip=$(nm_pod_ip echo)
n=1048576

out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes "$n" --timeout-ms 20000)
src=$(nm_json "$out" local)
if [[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == "$n" ]]; then
	nm_pass cross-node-1mib-echo
else
	nm_fail cross-node-1mib-echo "client -> 198.19.0.10:80: $out"
fi

# The connection really went through the mesh, to the remote echo pod.
if line=$(nm_flow_line "$log1" outbound src "$src"); then
	path=$(nm_kv "$line" path) backend=$(nm_kv "$line" backend) dst=$(nm_kv "$line" dst)
	if [[ $path == remote && $backend == "$echo_ip:8080" && $dst == 198.19.0.10:80 ]]; then
		nm_pass cross-node-via-mesh
	else
		nm_fail cross-node-via-mesh "node-1 flow line has path=$path backend=$backend dst=$dst: $line"
	fi
	flow=$(nm_kv "$line" flow)
	# Byte accounting on both agents (the same flow id on both sides).
	c1=$(nm_close_line "$log1" "$flow") || c1=""
	c2=$(nm_close_line "$log2" "$flow") || c2=""
	if [[ -n $c1 && -n $c2 &&
		$(nm_kv "$c1" bytes_up) == "$n" && $(nm_kv "$c1" bytes_down) == "$n" &&
		$(nm_kv "$c2" bytes_up) == "$n" && $(nm_kv "$c2" bytes_down) == "$n" ]]; then
		nm_pass cross-node-byte-accounting
	else
		nm_fail cross-node-byte-accounting "flow $flow close lines: node-1 '${c1:-none}' node-2 '${c2:-none}'"
	fi
else
	nm_fail cross-node-via-mesh "no outbound flow line with src=$src in node-1 log"
	nm_fail cross-node-byte-accounting "no flow to account"
fi

# The other direction across the link: node-2 client to node-1 service.
out=$(nm_pod_exec client-2 "$NM_PEER" send --to 198.19.0.11:80 --bytes "$n" --timeout-ms 20000)
src=$(nm_json "$out" local)
line=$(nm_flow_line "$log2" outbound src "$src") || line=""
if [[ $(nm_json "$out" match) == true && $(nm_kv "$line" path) == remote ]]; then
	nm_pass cross-node-reverse
else
	nm_fail cross-node-reverse "client-2 -> 198.19.0.11:80: $out; node-2 flow: ${line:-none}"
fi

# Concurrent flows share the agents' event loops without mixing bytes.
tmp=$NM_STATE/concurrent
mkdir -p "$tmp"
pids=()
for i in 1 2 3 4 5 6 7 8; do
	nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 256K --timeout-ms 20000 >"$tmp/$i" &
	pids+=($!)
done
bad=0
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || bad=$((bad + 1))
done
if ((bad == 0)); then
	nm_pass cross-node-concurrent
else
	nm_fail cross-node-concurrent "$bad of 8 concurrent 256 KiB flows failed: $(grep -h -v '"match":true' "$tmp"/* | head -n 2 | tr '\n' ' ')"
fi

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
