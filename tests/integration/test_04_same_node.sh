#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_04_same_node - scenario 4 (agent path: the harness turns the kernel
# path off; test_33 covers it): the client pod on node-1 dials the
# `echo-local` service (198.19.0.11:80, backend local-echo on node-1); 1 MiB
# comes back unchanged, the local-echo pod (not the node-2 echo pod) served
# it, and the agent reports a local path when it carried the flow.
# On this layout (pods of a node on one bridge subnet) the pod would answer
# the client on-link, so source preservation steps aside for such flows:
# same-node-onlink-agent-address checks the pod saw the agent's address, and
# that the agent said so (warn line, agent.json "onlink" count).
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up same-node
log1=$(nm_agent_log 1)
n=1048576
before_remote=$(grep -c '^accept' "$NM_STATE/echo-echo.out")

out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.11:80 --bytes "$n" --timeout-ms 20000)
src=$(nm_json "$out" local)
nm_check same-node-1mib-echo "client -> 198.19.0.11:80: $out" test "$(nm_json "$out" match)" == true

after_remote=$(grep -c '^accept' "$NM_STATE/echo-echo.out")
if grep -q '^accept' "$NM_STATE/echo-local-echo.out" && [[ $before_remote == "$after_remote" ]]; then
	nm_pass same-node-local-backend
else
	nm_fail same-node-local-backend "local-echo accepts: $(grep -c '^accept' "$NM_STATE/echo-local-echo.out"), node-2 echo accepts $before_remote -> $after_remote"
fi

# With mesh.kernelPath off (the harness default) same-node flows take the
# agent path (plaintext relay, path=local), so a missing flow line is a
# failure, not a pass.
if line=$(nm_flow_line "$log1" outbound src "$src" 1) &&
	[[ $(nm_kv "$line" path) == local && $(nm_kv "$line" backend) == "$(nm_pod_ip local-echo):8080" ]]; then
	nm_pass same-node-path-local
else
	nm_fail same-node-path-local "node-1 flow line for $src: ${line:-none}"
fi
seen=$(nm_kv "$(grep '^accept' "$NM_STATE/echo-local-echo.out" | tail -n 1)" peer)
onlink=$(jq -r '.features.source_address_counts.onlink // 0' \
	"/run/nodemesh/$(nm_instance 1)/agent.json" 2>/dev/null)
for ((i = 0; i < 100 && ${onlink:-0} < 1; i++)); do
	sleep 0.05
	onlink=$(jq -r '.features.source_address_counts.onlink // 0' \
		"/run/nodemesh/$(nm_instance 1)/agent.json" 2>/dev/null)
done
if [[ ${seen%:*} == "${NM_BRIDGE_ADDR[1]}" ]] && ((${onlink:-0} >= 1)) &&
	grep -q 'msg="client and pod share a link' "$log1"; then
	nm_pass "same-node-onlink-agent-address (pod saw $seen)"
else
	nm_fail same-node-onlink-agent-address "pod saw ${seen:-nothing}, onlink count ${onlink:-?}"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
