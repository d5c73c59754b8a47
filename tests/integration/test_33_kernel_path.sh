#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_33_kernel_path - the same-node kernel path (DESIGN §2 path 3,
# docs/kernel-path.md) on the two-node cluster with mesh.kernelPath on, an
# empty policyDir (everything allowed) and local-echo STRICT:
#
#   kp-vip-direct / kp-pod-direct  client -> echo-local VIP and -> local-echo's
#                    address: 1 MiB each way comes back byte-exact, the agent
#                    opened no flow, the server saw the client's own address
#   kp-halfclose     the client shuts writing, the server still answers
#   kp-server-reset  the server's RST reaches the client as ECONNRESET
#   kp-strict-*      those passed into a STRICT pod; a plaintext stranger
#                    (outside cgroup, client's netns) is still dropped
#   kp-flowlog / kp-metrics / kp-status*  a path "kernel" flow record with
#                    the bytes, nodemesh_kernel_flows_total, agent.json's
#                    paths.kernel_path (active, flows counted) and the
#                    kernel_path row of `nodemesh status`
#   kp-ipblocks-agent  an ALLOW by ipBlocks on local-echo (no kernel record
#                    can say it) sends the flow through the agent
#   kp-deny-1s       a DENY written while running refuses new connects with
#                    EPERM within 1 s of the file change
#   kp-existing-kept a kernel-path connection opened before the DENY keeps
#                    working: the kernel decides at connect() only
#   kp-switch-off    mesh.kernelPath false (reload): the agent path again
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
CONNECT=$NM_BUILD/tests/tools/nm_connect
NM_KERNEL_PATH=true
nm_require_bins test_33
for b in "$CLOSER" "$CONNECT"; do
	[[ -x $b ]] || { nm_fail test_33 "$b missing (run make)"; exit 1; }
done
command -v curl >/dev/null || { nm_fail test_33 "curl missing"; exit 1; }
nm_cluster_init
nm_cluster_create
nm_cluster_certs
cfg=$NM_STATE/cluster.json
pdir=$NM_STATE/policies
mkdir -p "$pdir"
python3 - "$cfg" <<'EOF' || nm_die "cannot edit cluster.json"
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["policyDir"] = "policies"
c["telemetry"] = {"metricsPort": 15020, "adminPort": 15000,
                  "flowLog": {"mode": "full", "file": "-"}}
for w in c["workloads"]:
    if w["name"] == "local-echo":
        w["mode"] = "STRICT"
json.dump(c, open(p, "w"), indent=1)
EOF
nm_agent_start 1 || { nm_dump_logs; nm_fail test_33 "agent 1 did not start"; exit 1; }
nm_agent_start 2 || { nm_dump_logs; nm_fail test_33 "agent 2 did not start"; exit 1; }
nm_start_echo local-echo 8080
nm_pod_spawn local-echo closer "$CLOSER" serve --port 9000
nm_pod_info local-echo
nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail test_33 "closer in local-echo did not listen"

log1=$(nm_agent_log 1)
json1=/run/nodemesh/$(nm_instance 1)/agent.json
CL=$(nm_pod_ip client)
LE=$(nm_pod_ip local-echo)
VIP=198.19.0.11
MIB=1048576

count() { grep -c -- "$2" "$1" 2>/dev/null; }
agent_flows() { count "$log1" 'msg="flow open"'; }
last_peer() { nm_kv "$(grep '^accept' "$NM_STATE/echo-local-echo.out" | tail -n 1)" peer; }
# wait_more FILE PATTERN BEFORE [TIMEOUT_S]: until PATTERN has more lines.
wait_more() {
	local i t=${4:-5}
	for ((i = 0; i < t * 20; i++)); do
		(($(count "$1" "$2") > $3)) && return 0
		sleep 0.05
	done
	return 1
}
put() {
	local p1
	p1=$(count "$log1" 'msg="policies reloaded"')
	printf '%s\n' "$2" >"$pdir/.$1.tmp" && mv "$pdir/.$1.tmp" "$pdir/$1"
	wait_more "$log1" 'msg="policies reloaded"' "$p1"
}
drop() {
	local p1
	p1=$(count "$log1" 'msg="policies reloaded"')
	rm -f "$pdir/$1"
	wait_more "$log1" 'msg="policies reloaded"' "$p1"
}

# direct NAME TO: 1 MiB each way, exact, no agent flow, the client's address.
direct() {
	local name=$1 to=$2 before out peer
	before=$(agent_flows)
	out=$(nm_pod_exec client "$NM_PEER" send --to "$to" --bytes "$MIB" --timeout-ms 20000 2>&1)
	peer=$(last_peer)
	if [[ $(nm_json "$out" match) == true && $(agent_flows) == "$before" &&
		${peer%:*} == "$CL" ]]; then
		nm_pass "$name"
	else
		nm_fail "$name" "send $to: $out; agent flows $before -> $(agent_flows); server saw ${peer:-nothing}"
	fi
}

direct kp-vip-direct "$VIP:80"
direct kp-pod-direct "$LE:8080"

before=$(agent_flows)
out=$(nm_pod_exec client "$CLOSER" halfclose --to "$LE:9000" --bytes 300000 2>&1)
if [[ $out == *'answer "got 300000"'* && $(agent_flows) == "$before" ]]; then
	nm_pass kp-halfclose
else
	nm_fail kp-halfclose "$out (agent flows $before -> $(agent_flows))"
fi
out=$(nm_pod_exec client "$CLOSER" reset --to "$LE:9000" 2>&1)
if [[ $out == *ECONNRESET* && $(agent_flows) == "$before" ]]; then
	nm_pass kp-server-reset
else
	nm_fail kp-server-reset "$out (agent flows $before -> $(agent_flows))"
fi

# Strict: the connections above reached a STRICT pod; a stranger does not.
if [[ $(nm_json "$(nm_pod_exec client "$NM_PEER" send --to "$LE:8080" --bytes 1000 --timeout-ms 5000 2>&1)" match) == true ]]; then
	nm_pass kp-strict-admits-kernel-path
else
	nm_fail kp-strict-admits-kernel-path "a kernel-path client could not reach STRICT local-echo"
fi
out=$(nm_outside_exec client "$CONNECT" --to "$LE:8080" --send plain --timeout-ms 800 2>&1)
nm_check kp-strict-stranger-dropped "stranger -> STRICT local-echo: $out" test "${out%% *}" == error

# Telemetry: the flow log's path "kernel" record of the 1 MiB pod flow.
rec_re="\"path\":\"kernel\".*\"addr\":\"$CL\".*\"addr\":\"$LE:8080\".*\"bytes_up\":$MIB,\"bytes_down\":$MIB"
if nm_wait_file_match "$log1" "$rec_re" 5; then
	nm_pass kp-flowlog
else
	nm_fail kp-flowlog "no path kernel record of $CL -> $LE:8080 with $MIB bytes each way: $(grep '"path":"kernel"' "$log1" | tail -n 2)"
fi
metrics=$(nm_node_exec 1 curl -s --max-time 5 "http://${NM_NODE_ADDR[1]}:15020/metrics")
kf=$(awk '/^nodemesh_kernel_flows_total\{.*verdict="allow"/ { print $2 }' <<<"$metrics")
nm_check kp-metrics "nodemesh_kernel_flows_total allow: ${kf:-none}" test "${kf%.*}" -ge 5
for ((i = 0; i < 60; i++)); do
	flows=$(jq -r '.paths.kernel_path.flows // 0' "$json1" 2>/dev/null)
	((${flows:-0} >= 5)) && break
	sleep 0.05
done
st=$(jq -c '.paths.kernel_path' "$json1" 2>/dev/null)
nm_check kp-status "agent.json paths.kernel_path: $st" \
	test "$(jq -r '.active and .mode == "rewrite" and .flows >= 5' <<<"$st")" == true
out=$("$NODEMESH" status --instance "$(nm_instance 1)" 2>&1)
nm_check kp-status-cli "nodemesh status: $(grep kernel_path <<<"$out")" \
	grep -Eq '^ +kernel_path +yes +rewrite +[1-9][0-9]* *$' <<<"$out"

# An ipBlocks rule: the kernel cannot say it, so the agent decides.
put ipblocks.yaml 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-address, namespace: default}
spec:
  selector: {matchLabels: {app: echo-local}}
  action: ALLOW
  rules:
  - from:
    - source: {ipBlocks: ["198.18.0.0/15"]}' || nm_fail kp-ipblocks-agent "no policies reloaded line"
before=$(agent_flows)
out=$(nm_pod_exec client "$NM_PEER" send --to "$LE:8080" --bytes 100000 --timeout-ms 10000 2>&1)
if [[ $(nm_json "$out" match) == true ]] && wait_more "$log1" 'msg="flow open"' "$before" 3; then
	nm_pass kp-ipblocks-agent
else
	nm_fail kp-ipblocks-agent "$out; agent flows $before -> $(agent_flows)"
fi
drop ipblocks.yaml || nm_fail kp-deny-1s "no policies reloaded line after removing ipblocks.yaml"

# A kernel-path connection held open across the DENY below.
go=$NM_STATE/hold.go
nm_pod_spawn client hold python3 -c 'import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 8080), timeout=10)
s.sendall(b"a"); assert s.recv(1) == b"a"
print("open", flush=True)
while not os.path.exists(sys.argv[2]): time.sleep(0.02)
s.sendall(b"b"); print("after-deny", s.recv(1).decode(), flush=True)' "$LE" "$go"
nm_wait_file_match "$NM_STATE/hold.out" '^open' 5 || nm_fail kp-existing-kept "held connection did not open: $(cat "$NM_STATE/hold.err")"

# A DENY while running: new connects refused (EPERM) within 1 s.
out=$(nm_pod_exec client "$CONNECT" --to "$LE:8080" --send pre --timeout-ms 3000 2>&1)
[[ $out == "ok pre" ]] || nm_fail kp-deny-1s "before the DENY: $out"
printf '%s\n' 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: default}
spec:
  selector: {matchLabels: {app: echo-local}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/client"]}' >"$pdir/.deny.tmp"
t0=$(date +%s%N)
mv "$pdir/.deny.tmp" "$pdir/deny.yaml"
ms=-1
for ((i = 0; i < 100; i++)); do
	out=$(nm_pod_exec client "$CONNECT" --to "$LE:8080" --send x --timeout-ms 1000 2>&1)
	if [[ $out == "error EPERM"* ]]; then
		ms=$((($(date +%s%N) - t0) / 1000000))
		break
	fi
	sleep 0.02
done
if ((ms >= 0 && ms <= 1000)); then
	nm_pass "kp-deny-1s (refused ${ms} ms after the file change)"
else
	nm_fail kp-deny-1s "EPERM after ${ms} ms (-1: never in 5 s), last: $out"
fi
touch "$go"
if nm_wait_file_match "$NM_STATE/hold.out" '^after-deny b' 5; then
	nm_pass kp-existing-kept
else
	nm_fail kp-existing-kept "held connection after the DENY: $(cat "$NM_STATE/hold.out" "$NM_STATE/hold.err")"
fi
drop deny.yaml || nm_fail kp-switch-off "no policies reloaded line after removing deny.yaml"

# mesh.kernelPath false: the agent carries same-node flows again.
r1=$(count "$log1" 'msg="config reloaded"')
jq '.mesh.kernelPath = false' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_1"
wait_more "$log1" 'msg="config reloaded"' "$r1" || nm_fail kp-switch-off "agent 1 did not reload"
before=$(agent_flows)
out=$(nm_pod_exec client "$NM_PEER" send --to "$VIP:80" --bytes 100000 --timeout-ms 10000 2>&1)
peer=$(last_peer)
st=$(jq -c '.paths.kernel_path' "$json1" 2>/dev/null)
if [[ $(nm_json "$out" match) == true && ${peer%:*} != "$CL" ]] &&
	wait_more "$log1" 'msg="flow open"' "$before" 3 &&
	[[ $(jq -r '.active == false and (.reason | test("kernelPath"))' <<<"$st") == true ]]; then
	nm_pass kp-switch-off
else
	nm_fail kp-switch-off "$out; server saw ${peer:-nothing}; agent flows $before -> $(agent_flows); status $st"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
