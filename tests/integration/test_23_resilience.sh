#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_23_resilience - issue 12, resilience on the agent path. The `echo`
# service gets three endpoints (echo and echo-b on node-2, echo-c on
# node-1) and "resilience": {"connectTimeoutMs": 1000, "retries": 2,
# "outlier": {"consecutiveFailures": 3, "baseEjectionMs": 6000,
# "maxEjectionPercent": 50}} and "lb": {"locality": "none"}; `echo-cb`
# (198.19.0.12, backend pod cb on node-1) has "circuitBreaker":
# {"maxConnections": 50}; `echo-idle` has "idleTimeoutMs": 1000.
#
#  1. all three endpoints serve;
#  2. echo-b's server stops: every new connection still succeeds (node-2's
#     agent answers status 3, node-1's retries on another endpoint) until
#     node-1's agent logs echo-b's ejection;
#  3. the ejection is written to nm_backends (NM_EP_EJECTED, one slot);
#     while ejected, echo-b's netns sees no TCP segment at all (Tcp InSegs
#     in its /proc/net/snmp) over 30 more connections, all good;
#  4. echo-b serves again: after "endpoint returned" it gets connections;
#  5. breaker: 51 connections held at once to echo-cb: 50 open, 1 reset at
#     once, logged with its count; a 52nd is reset in well under a second;
#     the agent's upstream sockets carry TCP keepalive (ss timer); with
#     node-1's count at 50, a connection from client-2 (node-2) arrives as
#     node-1's 51st and is answered NMTP status 4: client-2 sees a reset,
#     node-2's agent logs status=overloaded;
#  6. idle timeout: `echo-idle` ("idleTimeoutMs": 1000) resets a silent
#     connection within 1-2.5 s, logged; echo-cb's silent ones stayed open.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

HOLD=$NM_BUILD/tests/tools/nm_hold
CONNECT=$NM_BUILD/tests/tools/nm_connect
name=resilience
nm_require_bins "$name"
[[ -x $HOLD && -x $CONNECT ]] || { nm_fail "$name" "missing $HOLD or $CONNECT (run make)"; exit 1; }

# Two more pods of app=echo, and the breaker's service.
NM_PODS[echo-b]="2 3 echo app=echo"
NM_PODS[echo-c]="1 3 echo app=echo"
NM_PODS[cb]="1 4 echo app=cb"
NM_POD_ORDER+=(echo-b echo-c cb)
# The breaker's service alone selects its pod, so the destination agent
# counts inbound tunnels against it too (docs/config.md: lowest ID).
NM_SERVICES[echo-cb]="198.19.0.12 80 8080 app=cb"
NM_SERVICES[echo-idle]="198.19.0.13 80 8080 app=echo-local"
NM_SERVICE_ORDER+=(echo-cb echo-idle)

nm_cluster_init
nm_cluster_create
python3 - "$NM_CLUSTER_JSON" <<'PY' || nm_die "cannot add resilience to cluster.json"
import json, sys
p = sys.argv[1]
c = json.load(open(p))
for s in c["services"]:
    if s["name"] == "echo":
        # Random over all three: no same-node preference to hide echo-b.
        s["lb"] = {"locality": "none"}
        s["resilience"] = {"connectTimeoutMs": 1000, "retries": 2,
                           "outlier": {"consecutiveFailures": 3,
                                       "baseEjectionMs": 6000,
                                       "maxEjectionPercent": 50}}
    if s["name"] == "echo-cb":
        s["resilience"] = {"circuitBreaker": {"maxConnections": 50}}
    if s["name"] == "echo-idle":
        s["resilience"] = {"idleTimeoutMs": 1000}
json.dump(c, open(p, "w"), indent=2)
PY
nm_cluster_certs
{ nm_agent_start 1 && nm_agent_start 2; } || { nm_dump_logs; nm_fail "$name" "agents did not start"; exit 1; }
for p in echo local-echo echo-b echo-c cb; do
	nm_start_echo "$p" 8080
	[[ $p == echo-b ]] && echob_pid=$NM_LAST_PID
done
log1=$(nm_agent_log 1)
ipb=$(nm_pod_ip echo-b)

accepts() { grep -c '^accept' "$NM_STATE/echo-$1.out" 2>/dev/null; }
# connects N: N connections from client to the echo VIP; prints how many
# carried their bytes back.
connects() {
	local n=$1 i ok=0
	for ((i = 0; i < n; i++)); do
		nm_pod_exec client "$CONNECT" --to 198.19.0.10:80 --send "hello-$i" \
			--timeout-ms 5000 >/dev/null 2>&1 && ok=$((ok + 1))
	done
	echo "$ok"
}
insegs() {
	nm_pod_exec echo-b awk '$1 == "Tcp:" && !h { for (i = 1; i <= NF; i++) c[$i] = i; h = 1; next }
		$1 == "Tcp:" { print $c["InSegs"] }' /proc/net/snmp
}

# 1. Three endpoints serve.
ok=$(connects 30)
nm_check resilience-baseline "30 connects, $ok ok; accepts echo=$(accepts echo) echo-b=$(accepts echo-b) echo-c=$(accepts echo-c)" \
	test "$ok" == 30 -a "$(accepts echo)" -gt 0 -a "$(accepts echo-b)" -gt 0 -a "$(accepts echo-c)" -gt 0

# 2. echo-b dies: connections keep working until it is ejected.
kill -TERM "$echob_pid"
for ((i = 0; i < 100; i++)); do
	nm_pod_exec echo-b ss -Hltn 'sport = :8080' | grep -q . || break
	sleep 0.05
done
total=0 good=0
while ((total < 90)) && ! grep -q "msg=\"endpoint ejected\".*endpoint=$ipb:8080" "$log1"; do
	good=$((good + $(connects 5)))
	total=$((total + 5))
done
line=$(grep "msg=\"endpoint ejected\".*endpoint=$ipb:8080" "$log1" | head -1)
nm_check resilience-retry-while-failing "$good of $total connects ok while echo-b was down" test "$good" == "$total"
nm_check resilience-ejected "ejection line: ${line:-none}" test -n "$line"
nm_check resilience-ejected-in-kernel-map "ejection line: ${line:-none}" test "$(nm_kv "$line" map_slots)" == 1
retries=$(grep -c 'msg="retrying on another endpoint"' "$log1")
nm_check resilience-retried "retry lines in node-1's log: $retries" test "$retries" -gt 0

# 3. While ejected, nothing reaches echo-b.
t0=$(date +%s%N)
before=$(insegs)
ok=$(connects 30)
after=$(insegs)
ms=$((($(date +%s%N) - t0) / 1000000))
nm_check resilience-ejected-all-ok "30 connects while echo-b is ejected: $ok ok" test "$ok" == 30
nm_check resilience-ejected-receives-none "echo-b Tcp InSegs $before -> $after over 30 connects in ${ms} ms (ejection 6000 ms)" \
	test -n "$before" -a "$before" == "$after" -a "$ms" -lt 6000

# 4. echo-b is back: after its return it serves again.
nm_start_echo echo-b 8080
if nm_wait_file_match "$log1" "msg=\"endpoint returned\".*endpoint=$ipb:8080" 15; then
	nm_pass resilience-returned
else
	nm_fail resilience-returned "no return line for $ipb:8080"
fi
b0=$(accepts echo-b)
ok=$(connects 30)
b1=$(accepts echo-b)
nm_check resilience-back-serves "30 connects after the return: $ok ok, echo-b accepts $b0 -> $b1" \
	test "$ok" == 30 -a "$b1" -gt "$b0"

# 5. Circuit breaker: maxConnections 50 on echo-cb.
nm_pod_spawn client hold "$HOLD" open --to 198.19.0.12:80 --count 51 --settle-ms 1000 --hold-ms 0
hold_pid=$NM_LAST_PID
if nm_wait_file_match "$NM_STATE/hold.out" '^ready' 25; then
	r=$(grep '^ready' "$NM_STATE/hold.out")
	nm_check breaker-51st-refused "$r" test "$(nm_kv "$r" connected)" == 50 -a "$(nm_kv "$r" refused)" == 1
else
	nm_fail breaker-51st-refused "nm_hold not ready: $(cat "$NM_STATE/hold.err")"
fi
if line=$(nm_log_line "$log1" "refused: circuit breaker" 3 service=default/echo-cb limit=maxConnections max=50 refused=1); then
	nm_pass breaker-logged-counted
else
	nm_fail breaker-logged-counted "no breaker line with refused=1"
fi
t0=$(date +%s%N)
out=$(nm_pod_exec client "$CONNECT" --to 198.19.0.12:80 --send x --timeout-ms 5000 2>&1)
ms=$((($(date +%s%N) - t0) / 1000000))
nm_check breaker-refused-at-once "52nd: $out in ${ms} ms" bash -c '[[ $1 == *ECONNRESET* ]] && (($2 < 1000))' _ "$out" "$ms"
nm_check breaker-count-2 "breaker line with refused=2" \
	nm_log_line "$log1" "refused: circuit breaker" 3 service=default/echo-cb refused=2
ka=$(nm_node_exec 1 ss -Htno state established "( dport = :8080 and dst $(nm_pod_ip cb) )" | grep -c 'timer:(keepalive')
nm_check breaker-keepalive "upstream sockets with a keepalive timer: $ka of 50" test "$ka" == 50
log2=$(nm_agent_log 2)
out=$(nm_pod_exec client-2 "$CONNECT" --to 198.19.0.12:80 --send x --timeout-ms 5000 2>&1)
nm_check breaker-inbound-status4 "client-2 -> echo-cb with node-1 at 50: $out" bash -c '[[ $1 == *ECONNRESET* ]]' _ "$out"
nm_check breaker-inbound-logged "node-1 inbound breaker line" \
	nm_log_line "$log1" "refused: circuit breaker" 3 service=default/echo-cb dir=inbound
nm_check breaker-inbound-overloaded "node-2 sees status overloaded" \
	nm_wait_file_match "$log2" 'msg="peer agent refused flow".*status=overloaded' 3
kill -TERM "$hold_pid" 2>/dev/null

# 6. Idle timeout.
nm_pod_spawn client idle "$HOLD" open --to 198.19.0.13:80 --count 1 --settle-ms 2500 --hold-ms 1
if nm_wait_file_match "$NM_STATE/idle.out" '^ready' 10; then
	r=$(grep '^ready' "$NM_STATE/idle.out")
	nm_check idle-timeout-reset "$r" test "$(nm_kv "$r" refused)" == 1
else
	nm_fail idle-timeout-reset "nm_hold not ready: $(cat "$NM_STATE/idle.err")"
fi
if line=$(nm_log_line "$log1" "flow idle timeout, reset" 3 service=default/echo-idle); then
	ms=$(nm_kv "$line" idle_ms)
	nm_check idle-timeout-logged "$line" test "$ms" -ge 1000 -a "$ms" -lt 2500
else
	nm_fail idle-timeout-logged "no idle timeout line"
fi

((NM_FAILS)) && nm_dump_logs 40
exit $((NM_FAILS > 0))
