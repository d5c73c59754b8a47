#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_36_zero_copy - the relay of flows with two plain legs (same-node
# agent path: client pod -> agent -> local-echo pod, mesh.kernelPath false
# so the kernel path does not take them), for each mesh.relay mode the agent
# can be started with (copy is the reference):
#   <mode>-reported     agent.json paths.relay names the mode, and
#                       `nodemesh status` prints it
#   <mode>-echo-4mib    4 MiB each way come back unchanged (nm_peer's
#                       byte-for-byte comparison)
#   <mode>-counts       the flow's close line counts 4 MiB up and down
#                       (telemetry bytes with the kernel moving them)
#   <mode>-bulk-switched that 4 MiB flow ran in the mode (its close line's
#                       relay=): a busy stream's switch does not wait for
#                       empty receive queues
#   <mode>-halfclose    4 MiB then FIN: the server reads them all, and its
#                       answer arrives after (FIN only after the last byte)
#   <mode>-short-flows  5000 one-request connections (send, FIN, read the
#                       echo to its end) each get their bytes back: the
#                       answer races the client's FIN through the relay
#                       (test_22's canary runs catch the same race under
#                       more load: 10000 connects, two agents busy)
#   <mode>-server-reset / <mode>-client-reset   RST for RST, both ways
#   <mode>-slow-bounded a receiver that reads nothing for 2 s: the sender
#                       is stopped well short of 64 MiB (the relay does not
#                       queue without bound), then every byte arrives
#                       (FNV-1a of the 64 MiB matches); sockmap: the source
#                       was parked (its bytes then copied in order)
#   <mode>-slow-reader  a receiver that stays slow (16 KiB per 1 ms) takes
#                       24 MiB: every byte arrives in order (FNV-1a
#                       matches) while the sender is held back by the
#                       whole path's windows (sockmap: the parks the
#                       agent logged are printed; often none)
#   <mode>-flows        paths.relay.flows counted the long flows (not copy)
#   sockmap-opt-in      mesh.relay sockmap says in paths.relay.reason that
#                       it is opt-in (slower for bulk streams)
#   sockmap-bulk-repeat 20 echoes of 16 MiB on sockmap each come back byte
#                       for byte (the workload on which overlapping
#                       retransmissions came out twice before the verdict
#                       cut them, bpf/nm_relay.bpf.h; tests/bpf/test_relay
#                       makes one such retransmission on purpose)
#   auto-is-splice      mesh.relay auto runs splice on this kernel, with
#                       the reason naming sockmap
#   auto-bulk-repeat    the same 20 echoes under auto, on splice
#   sockmap-overlap     a client's retransmission repeating 300 relayed bytes
#                       with 200 new ones (nm_overlap): only the new ones
#                       are echoed, once
#   sockmap-fault       the same with a verdict that may cut nothing
#                       (NODEMESH_SOCKMAP_NO_TRIM): the agent resets the
#                       flow (the client reads ECONNRESET) and logs why
#   sockmap-fallback    with sockmap unavailable (NODEMESH_NO_SOCKMAP, the
#                       probe's test hook) mesh.relay sockmap runs splice,
#                       and says why
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
SLOW=$NM_BUILD/tests/tools/nm_slow
OVERLAP=$NM_BUILD/tests/tools/nm_overlap
for b in "$CLOSER" "$SLOW" "$OVERLAP"; do
	[[ -x $b ]] || { nm_fail zero-copy "$b missing (run make)"; exit 1; }
done
nm_scenario_up zero-copy

nm_pod_spawn local-echo closer-local-echo "$CLOSER" serve --port 9000
nm_pod_spawn local-echo slow-local-echo "$SLOW" serve --port 9100 --delay-ms 2000
nm_pod_spawn local-echo trickle-local-echo "$SLOW" serve --port 9101 --delay-ms 0 --read-pause-us 1000
nm_pod_info local-echo
nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail zero-copy "closer did not listen"
nm_wait_listen "$NM_P_NS" 9100 5 || nm_fail zero-copy "nm_slow did not listen"
nm_wait_listen "$NM_P_NS" 9101 5 || nm_fail zero-copy "nm_slow (trickle) did not listen"
pod=$(nm_pod_ip local-echo)
log1=$(nm_agent_log 1)
agent_json=/run/nodemesh/$(nm_instance 1)/agent.json
n=4194304
slow_n=$((64 << 20))
# Between a stopped receiver and the sender sit four socket buffers (at most
# tcp_rmem/tcp_wmem's maximum each) and the relay's own buffer or pipe.
rmax=$(awk '{print $3}' /proc/sys/net/ipv4/tcp_rmem)
wmax=$(awk '{print $3}' /proc/sys/net/ipv4/tcp_wmem)
bound=$((2 * rmax + 2 * wmax + (4 << 20)))
((bound < slow_n * 3 / 4)) || bound=$((slow_n * 3 / 4))

# restart_with MODE [ENV...]: agent 1 restarted with mesh.relay MODE.
restart_with() {
	local mode=$1 tmp
	shift
	tmp=$(mktemp)
	jq --arg m "$mode" '.mesh.relay = $m | .mesh.kernelPath = false' "$NM_CLUSTER_JSON" >"$tmp" &&
		mv "$tmp" "$NM_CLUSTER_JSON"
	nm_agent_stop 1
	local kv rc
	for kv; do export "${kv?}"; done
	nm_agent_start 1
	rc=$?
	for kv; do unset "${kv%%=*}"; done
	return $rc
}

# One-request connections (lib/oneshot.py): N sequential connects to
# HOST:PORT, each sends 16 bytes, half-closes and must read them back.
ONESHOT=$NM_REPO/tests/integration/lib/oneshot.py
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)

relay_field() { jq -r ".paths.relay.$1" "$agent_json" 2>/dev/null; }

# wait_flows MIN: paths.relay.flows reaches MIN (heartbeat: once a second).
wait_flows() {
	local i f
	for ((i = 0; i < 60; i++)); do
		f=$(relay_field flows)
		((${f:-0} >= $1)) && return 0
		sleep 0.1
	done
	return 1
}

# bulk_repeat NAME MODE: 20 echoes of 16 MiB, each byte for byte, all of
# them run on relay MODE (their close lines).
bulk_repeat() {
	local name=$1 mode=$2 bad="" big=$((16 << 20)) reps=20 from rep i out
	from=$(($(wc -l <"$log1") + 1))
	for ((rep = 0; rep < reps; rep++)); do
		out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.11:80 --bytes "$big" --timeout-ms 20000)
		[[ $(nm_json "$out" match) == true ]] || { bad="echo $rep: $out"; break; }
	done
	closes() { tail -n "+$from" "$log1" | grep 'msg="flow close"' | grep -F " bytes_up=$big " ; }
	for ((i = 0; i < 50; i++)); do
		[[ -n $bad ]] || (($(closes | wc -l) >= reps)) && break
		sleep 0.1
	done
	if [[ -z $bad ]] && (($(closes | grep -c " relay=$mode") < reps)); then
		bad="not all $reps echoes ran on $mode: $(closes | grep -v " relay=$mode" | head -n 2)"
	fi
	nm_check "$name ($reps x 16 MiB, $mode)" "$bad" test -z "$bad"
}

run_mode() {
	local mode=$1 out src line id st

	if ! restart_with "$mode"; then
		nm_fail "$mode-agent" "agent did not start with mesh.relay $mode"
		return
	fi
	st=$("$NODEMESH" status --instance "$(nm_instance 1)" 2>&1)
	if [[ $(relay_field mode) == "$mode" ]] &&
		grep -Eq "^ +relay +(yes|no) +$mode " <<<"$st"; then
		nm_pass "$mode-reported"
	else
		nm_fail "$mode-reported" "agent.json relay: $(jq -c .paths.relay "$agent_json" 2>&1); status: $(grep relay <<<"$st")"
	fi

	if [[ $mode == sockmap ]]; then
		if [[ $(relay_field reason) == *opt-in* ]]; then
			nm_pass "sockmap-opt-in ($(relay_field reason))"
		else
			nm_fail sockmap-opt-in "relay: $(jq -c .paths.relay "$agent_json" 2>&1)"
		fi
		bulk_repeat sockmap-bulk-repeat sockmap
	fi

	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.11:80 --bytes "$n" --timeout-ms 20000)
	nm_check "$mode-echo-4mib" "$out" test "$(nm_json "$out" match)" == true
	src=$(nm_json "$out" local)
	if line=$(nm_flow_line "$log1" outbound src "$src" 3) && id=$(nm_kv "$line" flow) &&
		line=$(nm_close_line "$log1" "$id" 5) &&
		[[ $(nm_kv "$line" bytes_up) == "$n" && $(nm_kv "$line" bytes_down) == "$n" ]]; then
		nm_pass "$mode-counts"
	else
		nm_fail "$mode-counts" "close line of $src: ${line:-none}"
	fi
	# The bulk flow itself ran in the mode, not on copy: its queues are
	# rarely empty, so a switch that waited for empty queues never came.
	if [[ $(nm_kv "$line" relay) == "$mode" ]]; then
		nm_pass "$mode-bulk-switched"
	else
		nm_fail "$mode-bulk-switched" "close line of $src: ${line:-none}"
	fi

	out=$(nm_pod_exec client "$CLOSER" halfclose --to "$pod:9000" --bytes "$n" 2>&1)
	nm_check "$mode-halfclose" "$out" grep -q "answer \"got $n\"" <<<"$out"

	out=$(nm_pod_exec client "$PY" "$ONESHOT" 198.19.0.11 80 5000 2>&1)
	if [[ $(nm_kv "$out" ok) == 5000 ]]; then
		nm_pass "$mode-short-flows"
	else
		nm_fail "$mode-short-flows" "$(tr '\n' ' ' <<<"$out")"
	fi

	out=$(nm_pod_exec client "$CLOSER" reset --to "$pod:9000" 2>&1)
	nm_check "$mode-server-reset" "$out" grep -q ECONNRESET <<<"$out"
	local waits
	waits=$(grep -c '^wait:' "$NM_STATE/closer-local-echo.out")
	nm_pod_exec client "$CLOSER" client-reset --to "$pod:9000" >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do
		(($(grep -c '^wait:' "$NM_STATE/closer-local-echo.out") > waits)) && break
		sleep 0.05
	done
	line=$(grep '^wait:' "$NM_STATE/closer-local-echo.out" | tail -n 1)
	if (($(grep -c '^wait:' "$NM_STATE/closer-local-echo.out") > waits)) &&
		[[ $line == 'wait: ECONNRESET' ]]; then
		nm_pass "$mode-client-reset"
	else
		nm_fail "$mode-client-reset" "server saw: $line"
	fi

	local pauses0 pauses parks_ok=1
	pauses0=$(grep -c 'msg="sockmap relay parked a direction"' "$log1")
	out=$(nm_pod_exec client "$SLOW" send --to "$pod:9100" --bytes "$slow_n" --probe-ms 1500 --timeout-ms 30000)
	at=$(nm_json "$out" at_probe)
	pauses=$(($(grep -c 'msg="sockmap relay parked a direction"' "$log1") - pauses0))
	# sockmap: a receiver stopped for 2 s must get its source parked (the
	# kernel would queue the redirected skbs without bound), and the
	# parked direction's copy must still deliver every byte in order.
	[[ $mode == sockmap ]] && ((pauses < 1)) && parks_ok=0
	if [[ $(nm_json "$out" match) == true ]] && ((${at:-0} > 0 && at < bound && parks_ok)); then
		nm_pass "$mode-slow-bounded (sender stopped at $at of $slow_n, bound $bound, parked $pauses)"
	else
		nm_fail "$mode-slow-bounded" "bound $bound, parked $pauses: $out"
	fi

	pauses0=$(grep -c 'msg="sockmap relay parked a direction"' "$log1")
	out=$(nm_pod_exec client "$SLOW" send --to "$pod:9101" --bytes $((24 << 20)) --probe-ms 100 --timeout-ms 60000)
	pauses=$(($(grep -c 'msg="sockmap relay parked a direction"' "$log1") - pauses0))
	if [[ $(nm_json "$out" match) == true ]]; then
		nm_pass "$mode-slow-reader (parked $pauses)"
	else
		nm_fail "$mode-slow-reader" "parked $pauses: $out"
	fi

	if [[ $mode != copy ]]; then
		# Five flows ran; a short one (the resets) may end before its
		# queues were ever empty, which the sockmap switch waits for.
		if wait_flows 3; then
			nm_pass "$mode-flows ($(relay_field flows))"
		else
			nm_fail "$mode-flows" "paths.relay: $(jq -c .paths.relay "$agent_json" 2>&1)"
		fi
	fi
}

for mode in ${NM_RELAY_MODES:-copy splice sockmap}; do
	run_mode "$mode"
done

# auto never picks sockmap (nm_zc_setup: slower for bulk streams), and
# the mode it picks carries the same repeated 16 MiB echoes.
if restart_with auto && [[ $(relay_field mode) == splice && $(relay_field reason) == *sockmap* ]]; then
	nm_pass "auto-is-splice ($(relay_field reason))"
	bulk_repeat auto-bulk-repeat splice
else
	nm_fail auto-is-splice "relay: $(jq -c .paths.relay "$agent_json" 2>&1)"
fi

# A client pod's retransmission that repeats 300 bytes the agent already
# relayed (nm_overlap, TCP_REPAIR), with 200 new ones: the verdict cuts the
# repeat, so only the new bytes are echoed, once.
overlap() { nm_pod_exec client "$OVERLAP" --to 198.19.0.11:80 --bytes 100000 --back 300 --more 200 --timeout-ms 8000; }
if restart_with sockmap; then
	out=$(overlap)
	nm_check "sockmap-overlap (repeated bytes cut: $out)" "$out" \
		test "$(nm_json "$out" after)/$(nm_json "$out" match)" = echoed/true
else
	nm_fail sockmap-overlap "agent did not start with mesh.relay sockmap"
fi
# The same with a verdict that may cut nothing (the agent's test hook): the
# skb is dropped, so the stream has a hole, and the agent must reset both
# legs and say why, never deliver what follows the hole.
if restart_with sockmap NODEMESH_SOCKMAP_NO_TRIM=1; then
	from=$(($(wc -l <"$log1") + 1))
	out=$(overlap)
	resets=$(tail -n "+$from" "$log1" | grep -c 'msg="sockmap relay could not cut a repeated skb, resetting the flow"')
	nm_check "sockmap-fault (client: $out; agent resets: $resets)" "$out; log: $(tail -n "+$from" "$log1" | tail -n 5)" \
		test "$(nm_json "$out" after)/$resets" = reset/1
else
	nm_fail sockmap-fault "agent did not start with NODEMESH_SOCKMAP_NO_TRIM"
fi

if restart_with sockmap NODEMESH_NO_SOCKMAP=1 &&
	[[ $(relay_field mode) == splice && $(relay_field reason) == *sockmap* ]]; then
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.11:80 --bytes "$n" --timeout-ms 20000)
	if [[ $(nm_json "$out" match) == true ]] && wait_flows 1; then
		nm_pass "sockmap-fallback ($(relay_field reason))"
	else
		nm_fail sockmap-fallback "echo: $out; relay: $(jq -c .paths.relay "$agent_json")"
	fi
else
	nm_fail sockmap-fallback "relay: $(jq -c .paths.relay "$agent_json" 2>&1)"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
