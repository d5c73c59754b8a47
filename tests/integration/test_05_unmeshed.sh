#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_05_unmeshed - scenario 5: a process in the client pod's network
# namespace but in the `outside` cgroup (not under any node's cgroupRoot) is
# not redirected: its connect to the service VIP fails (the VIP is routed
# nowhere), its connection to the echo pod IP goes direct (the echo server
# sees its exact source address and port) and neither agent logs a flow or a
# listener connection for it. Control: the same VIP connect from the pod's
# own cgroup succeeds.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up unmeshed
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)

out=$(nm_outside_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 2000)
res=$(nm_json "$out" result)
nm_check unmeshed-vip-not-redirected "outside-cgroup connect to the VIP: $out" test "$res" != connected

out=$(nm_outside_exec client "$NM_PEER" send --to "$(nm_pod_ip echo):8080" --bytes 64K --timeout-ms 10000)
src=$(nm_json "$out" local)
sleep 0.2
if [[ $(nm_json "$out" match) == true ]] &&
	grep -q "^accept peer=$src " "$NM_STATE/echo-echo.out" &&
	! grep -F "=$src" "$log1" "$log2" >/dev/null; then
	nm_pass unmeshed-direct-no-agent
else
	nm_fail unmeshed-direct-no-agent "send: $out; echo saw: $(grep '^accept' "$NM_STATE/echo-echo.out" | tail -n 1); agent lines: $(grep -hF "=$src" "$log1" "$log2" | head -n 2)"
fi

out=$(nm_pod_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 2000)
nm_check unmeshed-control-meshed-redirected "in-cgroup connect to the VIP: $out" \
	test "$(nm_json "$out" result)" == connected
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
