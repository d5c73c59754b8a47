#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_34_tunnel_pool - the tunnel pool (mesh/pool.h, issue 14): node-1's
# agent keeps established mTLS tunnels to node-2's agent per (source
# identity, peer node, destination identity), client -> echo cross-node.
#   pool-flows-pooled     after a first flow, the next flows take pooled
#                         tunnels (flow open pooled=yes, hits metric) and
#                         node-2 does no full handshake for them
#   pool-bytes            1 MiB both ways through a pooled tunnel, byte-exact
#   pool-halfclose        client FIN through a pooled tunnel: the server still
#                         answers and the answer arrives
#   pool-server-reset     server RST through a pooled tunnel -> ECONNRESET
#   pool-status           `nodemesh status --json` reports tunnel_pool active,
#                         "2 per key", flows > 0
#   pool-peer-restart     node-2's agent restarted: the pooled tunnels die,
#                         the next flow still succeeds (own handshake), the
#                         dead ones are discarded
#   pool-idle-retire      idleTimeoutMs 1000: idle tunnels are retired before
#                         the peer's preamble wait and the next flow makes its
#                         own; node-2 logs no error for them
#   pool-size-0           tunnelPool.size 0: no flow is pooled, status says off
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
[[ -x $CLOSER ]] || { nm_fail tunnel-pool "$CLOSER missing (run make)"; exit 1; }
command -v curl >/dev/null || { nm_fail tunnel-pool "curl missing"; exit 1; }
nm_scenario_up tunnel-pool

PY=/usr/bin/python3
LOG1=$(nm_agent_log 1)
LOG2=$(nm_agent_log 2)
ECHO=$(nm_pod_ip echo)
nm_pod_spawn echo closer-echo "$CLOSER" serve --port 9000
nm_pod_info echo
nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail tunnel-pool "closer in echo did not listen"

pooled() { grep -c 'msg="flow open" dir=outbound.* pooled=yes' "$LOG1"; }
unpooled() { grep -c 'msg="flow open" dir=outbound.* pooled=no' "$LOG1"; }
send() { # send BYTES: one echo flow client -> echo; 0 when byte-exact
	nm_pod_exec client "$NM_PEER" send --to "$ECHO:8080" --bytes "$1" --timeout-ms 8000 \
		>"$NM_STATE/send.json" 2>&1 && grep -q '"match":true' "$NM_STATE/send.json"
}
# Metrics are published every 250 ms: settle before reading a count.
settle() { sleep 0.4; }
# wait_idle N: until node-1's pool holds N idle tunnels (3 s at most).
wait_idle() {
	settle
	for _ in $(seq 30); do
		(($(nm_metric 1 nodemesh_tunnel_pool_connections 'state="idle"') >= $1)) && return 0
		sleep 0.1
	done
	return 1
}
full_in() { nm_metric 2 nodemesh_tls_handshakes_total 'direction="inbound",result="success",resumed="false"'; }

# --- pooled flows ----------------------------------------------------------
send 4096 || nm_fail pool-flows-pooled "first flow failed: $(cat "$NM_STATE/send.json")"
wait_idle 2 || nm_fail pool-flows-pooled "pool not warmed after the first flow: $(nm_metric 1 nodemesh_tunnel_pool_connections)"
p0=$(pooled) h0=$(nm_metric 1 nodemesh_tunnel_pool_hits_total) f0=$(full_in) bad=0
for i in 1 2 3 4 5 6; do
	send 4096 || bad=$((bad + 1))
	wait_idle 2
done
settle
p1=$(pooled) h1=$(nm_metric 1 nodemesh_tunnel_pool_hits_total) f1=$(full_in)
if ((bad == 0 && p1 - p0 >= 5 && h1 - h0 >= 5 && f1 == f0)); then
	nm_pass "pool-flows-pooled (6 flows: $((p1 - p0)) pooled, hits +$((h1 - h0)), node-2 full handshakes +$((f1 - f0)))"
else
	nm_fail pool-flows-pooled "$bad failed; pooled +$((p1 - p0)), hits +$((h1 - h0)) (want >= 5); node-2 full handshakes $f0 -> $f1 (want no growth)"
fi

# --- bytes and close semantics through pooled tunnels -----------------------
p0=$(pooled)
if send 1048576 && (($(pooled) == p0 + 1)); then
	nm_pass pool-bytes
else
	nm_fail pool-bytes "pooled $p0 -> $(pooled); $(cat "$NM_STATE/send.json")"
fi
wait_idle 2
p0=$(pooled)
out=$(nm_pod_exec client "$CLOSER" halfclose --to "$ECHO:9000" --bytes 300000 2>&1)
if [[ $out == *'answer "got 300000"'* ]] && (($(pooled) == p0 + 1)); then
	nm_pass pool-halfclose
else
	nm_fail pool-halfclose "pooled $p0 -> $(pooled): $out"
fi
wait_idle 2
p0=$(pooled)
out=$(nm_pod_exec client "$CLOSER" reset --to "$ECHO:9000" 2>&1)
if [[ $out == *ECONNRESET* ]] && (($(pooled) == p0 + 1)); then
	nm_pass pool-server-reset
else
	nm_fail pool-server-reset "pooled $p0 -> $(pooled): $out"
fi

# status PYEXPR: until node-1's status --json tunnel_pool entry p satisfies
# PYEXPR (agent.json is rewritten at most once a second); ST keeps the last.
status_is() {
	for _ in $(seq 30); do
		ST=$("$NODEMESH" status --instance "$(nm_instance 1)" --json 2>&1 |
			"$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["instances"][0]["agent"]["paths"]["tunnel_pool"]))' 2>&1)
		echo "$ST" | "$PY" -c "import json, sys; p = json.load(sys.stdin); sys.exit(0 if $1 else 1)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
if status_is 'p["active"] and p["mode"] == "2 per key" and p["flows"] >= 9'; then
	nm_pass "pool-status ($ST)"
else
	nm_fail pool-status "$ST"
fi

# --- peer restart: dead pooled tunnels, fresh handshake -------------------------
wait_idle 2
d0=$(nm_metric 1 nodemesh_tunnel_pool_discards_total)
nm_agent_stop 2
nm_agent_start 2 || { nm_dump_logs; nm_fail pool-peer-restart "node-2 agent did not restart"; exit 1; }
u0=$(unpooled)
send 65536
ok=$?
settle
if ((ok == 0 && $(unpooled) == u0 + 1)) &&
	(($(nm_metric 1 nodemesh_tunnel_pool_discards_total) >= d0 + 1)); then
	nm_pass pool-peer-restart
else
	nm_fail pool-peer-restart "unpooled $u0 -> $(unpooled), discards $d0 -> $(nm_metric 1 nodemesh_tunnel_pool_discards_total): $(cat "$NM_STATE/send.json")"
fi

# --- config reloads: short idle timeout, then no pool ------------------------------
# reconfigure JSON: sets mesh.tunnelPool and waits for both agents' reload.
reconfigure() {
	local r1 r2
	r1=$(grep -c 'msg="config reloaded"' "$LOG1") r2=$(grep -c 'msg="config reloaded"' "$LOG2")
	"$PY" - "$NM_CLUSTER_JSON" "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["mesh"]["tunnelPool"] = json.loads(sys.argv[2])
json.dump(c, open(sys.argv[1] + ".tmp", "w"), indent=1)
PY
	mv "$NM_CLUSTER_JSON.tmp" "$NM_CLUSTER_JSON"
	for _ in $(seq 80); do
		(($(grep -c 'msg="config reloaded"' "$LOG1") > r1 &&
			$(grep -c 'msg="config reloaded"' "$LOG2") > r2)) && return 0
		sleep 0.1
	done
	return 1
}

reconfigure '{"size": 2, "idleTimeoutMs": 1000}' || nm_fail pool-idle-retire "agents did not reload"
send 4096
wait_idle 2 || nm_fail pool-idle-retire "pool not warmed"
w0=$(grep -cE 'level=warn.*(malformed preamble|timed out before relaying)' "$LOG2")
sleep 2.5
settle
idle=$(nm_metric 1 nodemesh_tunnel_pool_connections 'state="idle"')
u0=$(unpooled)
send 4096
ok=$?
w1=$(grep -cE 'level=warn.*(malformed preamble|timed out before relaying)' "$LOG2")
if ((ok == 0 && idle == 0 && $(unpooled) == u0 + 1 && w1 == w0)) &&
	grep -q 'msg="tunnel closed unused"' "$LOG2"; then
	nm_pass pool-idle-retire
else
	nm_fail pool-idle-retire "idle after 2.5 s: $idle (want 0); unpooled $u0 -> $(unpooled); node-2 warnings $w0 -> $w1; $(grep -c 'tunnel closed unused' "$LOG2") unused closes"
fi

reconfigure '{"size": 0}' || nm_fail pool-size-0 "agents did not reload"
p0=$(pooled) bad=0
for i in 1 2 3; do
	send 4096 || bad=$((bad + 1))
	sleep 0.2
done
settle
if ((bad == 0 && $(pooled) == p0)) &&
	(($(nm_metric 1 nodemesh_tunnel_pool_connections) == 0)) &&
	status_is 'not p["active"] and "size is 0" in p["reason"]'; then
	nm_pass pool-size-0
else
	nm_fail pool-size-0 "$bad failed; pooled $p0 -> $(pooled); status $ST"
fi
