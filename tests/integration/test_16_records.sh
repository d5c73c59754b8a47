#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_16_records - redirect records cannot be forged, left over or dodged
# (foundation faults 4 and 5):
#   mark-still-meshed       a pod process that sets the agent's old socket
#                           mark (0x6e6d0001) is still steered into the mesh
#   mark-control-unmeshed   the same connect from outside the mesh cgroups
#                           does not reach the VIP (proves the VIP is only
#                           reachable through the mesh)
#   records-left-behind     connections queued on a stopped agent that is
#                           then SIGKILLed leave records in nm_orig_tuple
#   records-flushed         a new agent flushes them at start (and says so)
#   stale-tuple-refused     an unmeshed process that binds the same
#                           (address, port) and connects to 15001 is reset
#   meshed-after-restart    the client pod is meshed again afterwards
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up records
NM_CONNECT=${NM_CONNECT:-$NM_BUILD/tests/tools/nm_connect}
[[ -x $NM_CONNECT ]] || { nm_fail records "$NM_CONNECT missing (run make)"; exit 1; }
log1=$(nm_agent_log 1)
tuple_map=$NM_PIN_BASE/$(nm_instance 1)/nm_orig_tuple
client_ip=$(nm_pod_ip client)
node1=${NM_NODE_ADDR[1]}

out=$(nm_pod_exec client "$NM_CONNECT" --to 198.19.0.10:80 --mark 0x6e6d0001 --send marked)
nm_check mark-still-meshed "marked connect: $out" test "$out" == "ok marked"
out=$(nm_outside_exec client "$NM_CONNECT" --to 198.19.0.10:80 --mark 0x6e6d0001 --send marked --timeout-ms 1000)
nm_check mark-control-unmeshed "unmeshed connect: $out" test "${out%% *}" == error

records() { bpftool -j map dump pinned "$tuple_map" 2>/dev/null | jq length 2>/dev/null || echo 0; }

# Connections complete into the stopped agent's accept queue: sockops has
# moved their records to nm_orig_tuple, nobody takes them.
kill -STOP "$NM_AGENT_PID_1"
pids=()
for i in 1 2 3; do
	nm_pod_exec client "$NM_CONNECT" --to 198.19.0.10:80 --send "q$i" --timeout-ms 20000 \
		>"$NM_STATE/queued-$i.out" 2>&1 &
	pids+=($!)
done
for ((i = 0; i < 100; i++)); do
	(($(records) >= 3)) && break
	sleep 0.05
done
# One queued client's port, from its record's key (__be16, as raw bytes).
port=$(bpftool -j map dump pinned "$tuple_map" 2>/dev/null | jq -r '.[0].formatted.key.port // empty')
[[ -n $port ]] && port=$((((port & 0xff) << 8) | (port >> 8)))
kill -KILL "$NM_AGENT_PID_1"
kill -CONT "$NM_AGENT_PID_1" 2>/dev/null
wait "$NM_AGENT_PID_1" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
left=$(records)
if ((left >= 3)) && [[ -n $port ]]; then
	nm_pass "records-left-behind ($left records, one from port $port)"
else
	nm_fail records-left-behind "records after SIGKILL: $left, queued port '${port:-none}'"
fi

nm_agent_start 1 || { nm_fail records-flushed "agent did not restart"; nm_dump_logs; exit 1; }
flushed=$(grep -o 'msg="datapath attached".*records_flushed=[0-9]*' "$log1" | tail -n 1 | sed 's/.*records_flushed=//')
after=$(records)
if [[ -n $flushed ]] && ((flushed >= left && after == 0)); then
	nm_pass "records-flushed ($flushed flushed, $after left)"
else
	nm_fail records-flushed "flushed='$flushed' left before=$left after=$after"
fi

# The queued client's (address, port), reused by a process the mesh does
# not know, straight to the outbound listener: no record, reset at once.
before=$(grep -c 'no redirect record\|redirect record refused' "$log1")
out=$(nm_outside_exec client "$NM_CONNECT" --bind "$client_ip:${port:-40999}" --to "$node1:15001" \
	--send stale --timeout-ms 3000)
case $out in
"error ECONNRESET"*) nm_pass "stale-tuple-refused ($out)" ;;
*) nm_fail stale-tuple-refused "reused $client_ip:$port -> 15001: $out" ;;
esac

out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000)
nm_check meshed-after-restart "client -> VIP after restart: $out" test "$(nm_json "$out" match)" == true
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
