#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_14_truncation - issue 8 fault 9: when an agent dies mid-stream the
# pods must see a reset, never a clean FIN that passes a truncated stream
# off as complete. A cross-node stream (client on node-1 -> echo on node-2)
# is cut by SIGKILL of:
#   client-agent-killed-*  the node-1 agent: the client pod's read fails
#                          with ECONNRESET (kernel RST from the armed
#                          socket), and the server pod sees ECONNRESET too
#                          (node-2 saw the tunnel end without close_notify)
#   server-agent-killed-*  the node-2 agent: the server pod sees ECONNRESET,
#                          and node-1, whose tunnel ended without
#                          close_notify, resets the client pod
#   clean-end-still-clean  after both restarts a half-close through the mesh
#                          still ends cleanly (arming is undone on a clean end)
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
HOLD=$NM_BUILD/tests/tools/nm_hold
for b in "$CLOSER" "$HOLD"; do
	[[ -x $b ]] || { nm_fail truncation "$b missing (run make)"; exit 1; }
done
nm_scenario_up truncation

nm_pod_spawn echo closer "$CLOSER" serve --port 9000
nm_pod_info echo
nm_wait_listen "$NM_P_NS" 9000 5 || { nm_fail truncation "closer did not listen"; exit 1; }
to="$(nm_pod_ip echo):9000"

# kill_mid_stream NODE TAG: stream through the mesh, SIGKILL node NODE's
# agent once bytes flow, then check both pods' view of the end.
kill_mid_stream() {
	local node=$1 tag=$2 var pid spid i seen
	seen=$(grep -c '^wait: ' "$NM_STATE/closer.out" 2>/dev/null)
	nm_pod_spawn client "stream-$tag" "$HOLD" stream --to "$to"
	spid=$NM_LAST_PID
	if ! nm_wait_file_match "$NM_STATE/stream-$tag.out" '^stream: started' 10; then
		nm_fail "$tag-stream" "stream never started: $(cat "$NM_STATE/stream-$tag.out")"
		nm_dump_logs
		return
	fi
	var="NM_AGENT_PID_$node"
	pid=${!var}
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.05
	done
	out=$(grep '^stream: ' "$NM_STATE/stream-$tag.out" | tail -n 1)
	if [[ $out == "stream: ECONNRESET" ]]; then
		nm_pass "$tag-client-pod-reset"
	else
		nm_fail "$tag-client-pod-reset" "client pod saw '${out:-nothing}' (want ECONNRESET, not a clean EOF)"
	fi
	for ((i = 0; i < 100; i++)); do
		(($(grep -c '^wait: ' "$NM_STATE/closer.out") > seen)) && break
		sleep 0.05
	done
	out=$(grep '^wait: ' "$NM_STATE/closer.out" | tail -n 1)
	if (($(grep -c '^wait: ' "$NM_STATE/closer.out") > seen)) && [[ $out == "wait: ECONNRESET" ]]; then
		nm_pass "$tag-server-pod-reset"
	else
		nm_fail "$tag-server-pod-reset" "server pod saw '${out:-nothing}' (want ECONNRESET)"
	fi
	nm_agent_start "$node" || { nm_fail "$tag-restart" "agent node-$node did not restart"; nm_dump_logs; exit 1; }
	# Ready is logged before the first heartbeat stamp: wait until the
	# restarted mesh serves a control connection.
	for ((i = 0; i < 50; i++)); do
		out=$(nm_pod_exec client "$NM_PEER" connect --to 198.19.0.10:80 --timeout-ms 1000)
		[[ $(nm_json "$out" result) == connected ]] && return
		sleep 0.1
	done
	nm_fail "$tag-restart" "mesh not serving after the restart: $out"
}

kill_mid_stream 1 client-agent-killed
kill_mid_stream 2 server-agent-killed

out=$(nm_pod_exec client "$CLOSER" halfclose --to "$to" --bytes 100000 2>&1)
if [[ $out == *'answer "got 100000"'* ]]; then
	nm_pass clean-end-still-clean
else
	nm_fail clean-end-still-clean "$out"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
