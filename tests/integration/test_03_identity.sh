#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_03_identity - scenario 3: for one cross-node flow (client on node-1 to
# the echo service), the destination agent (node-2) logged the client's exact
# SPIFFE ID as the verified peer, and the client agent (node-1) logged the
# echo pod's exact SPIFFE ID as the verified server. The two log lines are
# tied together by the flow id both agents share (NMTP FLOW TLV).
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up identity
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
client_id=spiffe://cluster.local/ns/default/sa/client
echo_id=spiffe://cluster.local/ns/default/sa/echo

out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000)
src=$(nm_json "$out" local)
if [[ $(nm_json "$out" match) != true ]]; then
	nm_fail identity "client -> 198.19.0.10:80 failed: $out"
	nm_dump_logs
	exit 1
fi

out_line=$(nm_flow_line "$log1" outbound src "$src") || out_line=""
flow=$(nm_kv "$out_line" flow) || flow=""
in_line=""
[[ -n $flow ]] && { in_line=$(nm_flow_line "$log2" inbound flow "$flow") || in_line=""; }

got=$(nm_kv "$in_line" peer_id) || got=""
if [[ -n $in_line && $got == "$client_id" ]]; then
	nm_pass identity-server-verified-client
else
	nm_fail identity-server-verified-client "node-2 inbound line for flow ${flow:-?}: peer_id='$got' want '$client_id' (${in_line:-no line})"
fi
got=$(nm_kv "$out_line" peer_id) || got=""
if [[ -n $out_line && $got == "$echo_id" ]]; then
	nm_pass identity-client-verified-server
else
	nm_fail identity-client-verified-server "node-1 outbound line for src=$src: peer_id='$got' want '$echo_id' (${out_line:-no line})"
fi
# Each side also names the identity it presented.
if [[ $(nm_kv "$out_line" src_id) == "$client_id" && $(nm_kv "$in_line" local_id) == "$echo_id" ]]; then
	nm_pass identity-presented
else
	nm_fail identity-presented "src_id='$(nm_kv "$out_line" src_id)' local_id='$(nm_kv "$in_line" local_id)'"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
