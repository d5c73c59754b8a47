#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_13_overload - issue 8 fault 6: bounded under overload. Both agents run
# with RLIMIT_NOFILE 264 (prlimit), so the derived limits are maxFlows 100,
# maxHandshakes 64, maxFlowsPerPod 25, maxFlowsPerPeer 50.
#   limits-derived        the agent logs exactly those limits
#   per-pod-limit         30 held meshed connections from one pod: 25 are
#                         served, 5 reset at once, each counted in the log
#   per-peer-limit        60 idle TCP connections to 15008 from one address:
#                         50 held, 10 reset at once and counted
#   handshake-limit       20 more from a second address that complete a TLS
#                         handshake and send no preamble: 14 held (64 in
#                         progress), 6 reset at once and counted
#   emfile-*              node-2's soft limit lowered under its live fds, a
#                         stream of new connections for 5 s while accept fails
#                         with EMFILE: agent CPU < 20 % of the window, < 50 log
#                         lines, the excess reset (not left hanging), and once
#                         the load drops a meshed request is served within 1 s
# Figures (CPU %, log lines, RSS, time to serve) are printed for the notes.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

HOLD=$NM_BUILD/tests/tools/nm_hold
[[ -x $HOLD ]] || { nm_fail overload "$HOLD missing (run make)"; exit 1; }
command -v prlimit >/dev/null || { nm_fail overload "prlimit (util-linux) missing"; exit 1; }
nm_require_bins overload
# Exact slot arithmetic: node-1's pooled tunnels (mesh/pool.h) would hold
# node-2's per-peer and handshake slots like any other connection from it.
NM_MESH_EXTRA='"tunnelPool": { "size": 0 }'
nm_cluster_init
REAL_NODEMESHD=$NODEMESHD
NODEMESHD=$NM_STATE/nodemeshd-nofile264
printf '#!/bin/sh\nexec prlimit --nofile=264:264 %q "$@"\n' "$REAL_NODEMESHD" >"$NODEMESHD"
chmod +x "$NODEMESHD"
nm_cluster_up || { nm_dump_logs; nm_fail overload "cluster setup failed"; exit 1; }
LOG1=$(nm_agent_log 1) LOG2=$(nm_agent_log 2)
PID2=$NM_AGENT_PID_2
N2=$(nm_node_ns 2)
HZ=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# refused_lines LOG LIMIT: how many "over limit" lines name LIMIT.
refused_lines() { grep -c "msg=\"refused: over limit\" limit=$2 " "$1"; }
# wait_ready FILE: the hold tool's ready line.
wait_ready() { nm_wait_file_match "$1" '^ready ' 15 && grep '^ready ' "$1"; }

want='max_flows=100 max_handshakes=64 max_flows_per_pod=25 max_flows_per_peer=50'
if grep -q "msg=\"limits\" nofile=264 $want" "$LOG2"; then
	nm_pass limits-derived
else
	nm_fail limits-derived "want '$want' in: $(grep 'msg="limits"' "$LOG2")"
fi

# --- per pod (outbound, node-1) ---------------------------------------------
nm_pod_spawn client hold-pod "$HOLD" open --to 198.19.0.10:80 --count 30 --settle-ms 500
hold_pod=$NM_LAST_PID
r=$(wait_ready "$NM_STATE/hold-pod.out")
if [[ $r == "ready connected=25 refused=5 failed=0 "* ]] &&
	(($(refused_lines "$LOG1" maxFlowsPerPod) == 5)) &&
	grep -q 'limit=maxFlowsPerPod max=25 .* refused=5$' "$LOG1"; then
	nm_pass "per-pod-limit ($r)"
else
	nm_fail per-pod-limit "client saw '$r'; agent logged $(refused_lines "$LOG1" maxFlowsPerPod) refusals: $(grep -m1 maxFlowsPerPod "$LOG1")"
fi
kill "$hold_pod" 2>/dev/null

# --- per peer and handshakes (inbound, node-2) --------------------------------
base_fds=$(nfds "$PID2")
nm_node_spawn 1 hold-peer "$HOLD" open --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" --count 60 --settle-ms 500
hold_peer=$NM_LAST_PID
r=$(wait_ready "$NM_STATE/hold-peer.out")
if [[ $r == "ready connected=50 refused=10 failed=0 "* ]] &&
	(($(refused_lines "$LOG2" maxFlowsPerPeer) == 10)) &&
	grep -q 'limit=maxFlowsPerPeer max=50 .* refused=10$' "$LOG2"; then
	nm_pass "per-peer-limit ($r)"
else
	nm_fail per-peer-limit "client saw '$r'; agent logged $(refused_lines "$LOG2" maxFlowsPerPeer) refusals"
fi
# These complete a TLS handshake and then send no preamble: still counted
# as handshakes in progress.
nm_node_spawn 1 hold-hs "$HOLD" open --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" --src "${NM_BRIDGE_ADDR[1]}" --count 20 --settle-ms 500 \
	--tls "$NM_STATE/certs" --id default/client --peer "spiffe://$NM_TRUST_DOMAIN/ns/default/sa/echo"
hold_hs=$NM_LAST_PID
r=$(wait_ready "$NM_STATE/hold-hs.out")
if [[ $r == "ready connected=14 refused=6 failed=0 handshakes=14" ]] &&
	(($(refused_lines "$LOG2" maxHandshakes) == 6)); then
	nm_pass "handshake-limit ($r)"
else
	nm_fail handshake-limit "client saw '$r'; agent logged $(refused_lines "$LOG2" maxHandshakes) refusals"
fi
idle_rss=$(rss_kb "$PID2")
kill "$hold_peer" "$hold_hs" 2>/dev/null
for ((i = 0; i < 100; i++)); do
	(($(nfds "$PID2") <= base_fds)) && break
	sleep 0.05
done
(($(nfds "$PID2") <= base_fds)) ||
	nm_fail overload-release "node-2 still holds $(nfds "$PID2") fds (had $base_fds)"

# --- descriptor exhaustion (node-2) -------------------------------------------
fds=$(nfds "$PID2")
prlimit --pid "$PID2" --nofile=$((fds + 10)):264 || { nm_fail emfile "prlimit --pid failed"; exit 1; }
lines0=$(wc -l <"$LOG2")
cpu0=$(cpu_ticks "$PID2")
t0=$(date +%s%N)
# 10 fill the descriptors, then 50 new connections a second for 5 s.
nm_node_spawn 1 hold-emfile "$HOLD" open --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" --count 40 \
	--settle-ms 0 --hold-ms 5000 --rate 50
hold_emfile=$NM_LAST_PID
for ((i = 0; i < 200; i++)); do
	kill -0 "$hold_emfile" 2>/dev/null || break
	sleep 0.05
done
t1=$(date +%s%N)
cpu1=$(cpu_ticks "$PID2")
lines=$(($(wc -l <"$LOG2") - lines0))
window_ms=$(((t1 - t0) / 1000000))
cpu_pct=$(((cpu1 - cpu0) * 1000 * 100 / HZ / window_ms))
emfile_rss=$(rss_kb "$PID2")
done_line=$(grep '^done ' "$NM_STATE/hold-emfile.out")
pauses=$(tail -n +"$((lines0 + 1))" "$LOG2" | grep -c 'msg="accept failed, pausing listener".*err="Too many open files"')
echo "figures: emfile window ${window_ms} ms, agent cpu ${cpu_pct}% ($((cpu1 - cpu0)) ticks at ${HZ} Hz), log lines ${lines}, pauses logged ${pauses}, rss ${emfile_rss} kB (with 64 idle conns: ${idle_rss} kB), client: ${done_line}"
if ((pauses >= 1)); then
	nm_pass "emfile-reached ($pauses pause lines)"
else
	nm_fail emfile-reached "accept never failed with EMFILE: $(tail -n 5 "$LOG2")"
fi
if ((cpu_pct < 20)); then
	nm_pass "emfile-cpu (${cpu_pct}% of ${window_ms} ms)"
else
	nm_fail emfile-cpu "agent used ${cpu_pct}% CPU during the window"
fi
if ((lines < 50)); then
	nm_pass "emfile-log-lines ($lines lines)"
else
	nm_fail emfile-log-lines "$lines log lines during the window"
fi
extra_refused=$(nm_kv "$done_line" extra_refused)
if [[ -n $extra_refused ]] && ((extra_refused > 100)); then
	nm_pass "emfile-excess-reset ($done_line)"
else
	nm_fail emfile-excess-reset "new connections were not reset under EMFILE: ${done_line:-no done line}"
fi

# The load dropped (the hold tool exited): how soon is a meshed request served?
t0=$(date +%s%N)
served=0
for ((i = 0; i < 20; i++)); do
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 1000 --timeout-ms 3000)
	if [[ $(nm_json "$out" result) == ok ]]; then
		served=1
		break
	fi
	sleep 0.1
done
serve_ms=$((($(date +%s%N) - t0) / 1000000))
echo "figures: time to serve after the load dropped ${serve_ms} ms"
if ((served)) && ((serve_ms < 1000)); then
	nm_pass "emfile-recovers (${serve_ms} ms)"
else
	nm_fail emfile-recovers "served=$served after ${serve_ms} ms: $out"
fi
((NM_FAILS)) && nm_dump_logs 40
exit $((NM_FAILS > 0))
