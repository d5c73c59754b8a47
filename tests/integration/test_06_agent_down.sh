#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_06_agent_down - scenario 6: SIGTERM stops the node-1 agent (exit 0,
# a flow held open through it is closed, pinned objects stay, so the
# datapath keeps redirecting), and then a meshed
# connect from the client pod to the service VIP fails within 1 s with
# ECONNREFUSED instead of hanging.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up agent-down

out=$(nm_pod_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 2000)
[[ $(nm_json "$out" result) == connected ]] ||
	{ nm_fail agent-down "control connect with the agent running failed: $out"; nm_dump_logs; exit 1; }

# A flow held open across the stop: SIGTERM must close it, not hang on it.
# Wait for this flow's own open line: the control connection above logged
# one already.
opened=$(grep -c 'msg="flow open" dir=outbound' "$(nm_agent_log 1)")
nm_pod_spawn client hold "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 2000 --wait-close-ms 8000
hold_pid=$NM_LAST_PID
for ((i = 0; i < 60; i++)); do
	(($(grep -c 'msg="flow open" dir=outbound' "$(nm_agent_log 1)") > opened)) && break
	sleep 0.05
done
(($(grep -c 'msg="flow open" dir=outbound' "$(nm_agent_log 1)") > opened)) ||
	{ nm_fail agent-down "the held flow never opened: $(cat "$NM_STATE/hold.out")"; nm_dump_logs; exit 1; }

t0=$(date +%s%N)
nm_agent_stop 1 5
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
if [[ $NM_AGENT_RC == 0 ]] && ((ms < 2000)); then
	nm_pass "agent-sigterm-exit-0 (${ms} ms)"
else
	nm_fail agent-sigterm-exit-0 "exit status $NM_AGENT_RC after ${ms} ms"
fi
for ((i = 0; i < 60; i++)); do
	kill -0 "$hold_pid" 2>/dev/null || break
	sleep 0.05
done
hold=$(cat "$NM_STATE/hold.out")
if [[ $(nm_json "$hold" result) == connected && $(nm_json "$hold" closed_by_peer) != no ]]; then
	nm_pass "agent-stop-closes-flows (held flow ended: $(nm_json "$hold" closed_by_peer))"
else
	nm_fail agent-stop-closes-flows "held flow after SIGTERM: ${hold:-still open}"
fi
pins=$NM_PIN_BASE/$(nm_instance 1)
if [[ -d $pins && -n $(ls -A "$pins" 2>/dev/null) ]]; then
	nm_pass agent-stop-keeps-pins
else
	nm_fail agent-stop-keeps-pins "$pins is missing or empty after SIGTERM"
fi

out=$(nm_pod_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 5000)
res=$(nm_json "$out" result) ms=$(nm_json "$out" elapsed_ms)
if [[ $res == refused ]] && ((ms < 1000)); then
	nm_pass "agent-down-fails-fast (${ms} ms, $(nm_json "$out" errno))"
else
	nm_fail agent-down-fails-fast "meshed connect with the agent stopped: $out"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
