#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_17_policy - AuthorizationPolicy enforced by the destination agent and
# in the kernel (issue "Access policy"), in the simulated cluster:
#   policy-none-allows      with an empty policyDir every flow works
#   allow-principal-admits  an ALLOW by principal (plus an ipBlocks rule, so
#                           the kernel leaves the decision to the agent)
#                           admits client -> echo (cross-node)
#   allow-principal-refuses local-echo (sa echo) -> echo: the destination
#                           agent answers status denied with the reason,
#                           the client sees a reset, the pod sees nothing
#   deny-ns-in-kernel       a DENY by namespace: connect() fails with EPERM
#                           at once, the client's agent never sees it, the
#                           kernel counts the denial
#   deny-record-dump        bpftool prints the typed nm_policy record
#   broken-file-kept        a broken file is refused naming file and field;
#                           the DENY stays in force
#   change-within-1s        removing the DENY file admits new connections
#                           within 1 s
#   cli-check-agent         `nodemesh policy check` answers from the set the
#                           agent has in force (deny while the DENY is on)
#   deny-names-policy       a DENY the agent decides names the policy in the
#                           destination agent's log (status denied)
#   existing-kept           by default an established flow survives a policy
#                           that now denies it
#   existing-closed         with policy.applyToExisting it is reset
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up policy
NM_CONNECT=${NM_CONNECT:-$NM_BUILD/tests/tools/nm_connect}
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
cfg=$NM_STATE/cluster.json
pdir=$NM_STATE/policies
mkdir -p "$pdir"

count() { grep -c -- "$2" "$1" 2>/dev/null || true; }
# wait_more FILE PATTERN BEFORE [TIMEOUT_S]: until PATTERN has more lines.
wait_more() {
	local i t=${4:-5}
	for ((i = 0; i < t * 20; i++)); do
		(($(count "$1" "$2") > $3)) && return 0
		sleep 0.05
	done
	return 1
}
send() { nm_pod_exec "$1" "$NM_CONNECT" --to "$2" --send "$3" --timeout-ms "${4:-3000}"; }

# Point both agents at the (empty) policy folder.
r1=$(count "$log1" 'msg="config reloaded"') r2=$(count "$log2" 'msg="config reloaded"')
jq '.policyDir = "policies"' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_1" "$NM_AGENT_PID_2"
wait_more "$log1" 'msg="config reloaded"' "$r1" && wait_more "$log2" 'msg="config reloaded"' "$r2" ||
	nm_fail policy "agents did not reload with policyDir"
out=$(send client 198.19.0.10:80 none)
nm_check policy-none-allows "client -> echo without policies: $out" test "$out" == "ok none"

# put FILE CONTENT: write a policy file atomically, wait for both agents.
put() {
	local p1 p2
	p1=$(count "$log1" 'msg="policies reloaded"') p2=$(count "$log2" 'msg="policies reloaded"')
	printf '%s\n' "$2" >"$pdir/.$1.tmp" && mv "$pdir/.$1.tmp" "$pdir/$1"
	wait_more "$log1" 'msg="policies reloaded"' "$p1" && wait_more "$log2" 'msg="policies reloaded"' "$p2"
}

put allow.yaml 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: echo-allow-client
  namespace: default
spec:
  selector:
    matchLabels:
      app: echo
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/client"]
  - from:
    - source:
        ipBlocks: ["203.0.113.0/24"]' || nm_fail policy "ALLOW policy not loaded: $(grep -i polic "$log2" | tail -n 2)"

out=$(send client 198.19.0.10:80 admitted)
nm_check allow-principal-admits "client -> echo: $out" test "$out" == "ok admitted"

conns=$(count "$NM_STATE/echo-echo.out" .)
# No ALLOW rule matched: no single policy decided, the reason says so.
want_line='inbound flow refused.*peer_id=spiffe://cluster.local/ns/default/sa/echo .*status=denied policy=- reason="no ALLOW policy matched"'
denied=$(count "$log2" "$want_line")
out=$(send local-echo 198.19.0.10:80 refused)
if [[ $out == "error ECONNRESET"* ]] && wait_more "$log2" "$want_line" "$denied" 3 &&
	(($(count "$NM_STATE/echo-echo.out" .) == conns)); then
	nm_pass allow-principal-refuses
else
	nm_fail allow-principal-refuses "local-echo -> echo: $out; node-2: $(grep 'refused' "$log2" | tail -n 1); echo pod lines $conns -> $(count "$NM_STATE/echo-echo.out" .)"
fi

put deny.yaml 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: echo-deny-default
  namespace: default
spec:
  selector:
    matchLabels:
      app: echo-local
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["default"]' || nm_fail policy "DENY policy not loaded"

# Cross-node, decided in the kernel: a DENY on the client pods (app=client)
# from namespace default; client (node-1) -> client-2 (node-2) by pod
# address. A capture on the node link proves no packet left for it.
put deny-clients.yaml 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: clients-deny-default
  namespace: default
spec:
  selector:
    matchLabels:
      app: client
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["default"]' || nm_fail policy "DENY (clients) not loaded"
pcap=$NM_STATE/deny.pcap
nm_node_spawn 1 tcpdump tcpdump -i "${NM_RUN}l1" --immediate-mode -n -s 0 -U -Z root -w "$pcap" "tcp and (port $NM_INBOUND_PORT or port 8080)"
tcpdump_pid=$NM_LAST_PID
nm_wait_file_match "$NM_STATE/tcpdump.err" "listening on" 5 || nm_fail deny-cross-node-kernel "tcpdump did not start"
client2=$(nm_pod_ip client-2)
syns() { tcpdump -n -r "$pcap" "tcp[tcpflags] & tcp-syn != 0" 2>/dev/null | wc -l; }
out=$(send client "$client2:8080" denied)
sleep 0.3
during=$(syns)
# Control: a flow that does cross the link, so an empty capture means
# something (local-echo -> echo goes over the link to node-2's agent).
send local-echo 198.19.0.10:80 control >/dev/null
for ((i = 0; i < 40; i++)); do
	(($(syns) > 0)) && break
	sleep 0.05
done
after=$(syns)
kill -INT "$tcpdump_pid" 2>/dev/null
wait "$tcpdump_pid" 2>/dev/null
if [[ $out == "error EPERM"* ]] && ((during == 0 && after > 0)); then
	nm_pass "deny-cross-node-kernel (EPERM, no SYN on the link; control: $after)"
else
	nm_fail deny-cross-node-kernel "client -> client-2: $out; link SYNs during $during, with the control $after"
fi
rm -f "$pdir/deny-clients.yaml"

# client and local-echo are both on node-1: the kernel decides there.
flows1=$(count "$log1" 'msg="flow open"')
t0=$(date +%s%N)
out=$(send client 198.19.0.11:80 denied)
t1=$(date +%s%N)
if [[ $out == "error EPERM"* ]] && (((t1 - t0) / 1000000 < 500)) &&
	(($(count "$log1" 'msg="flow open"') == flows1)); then
	nm_pass "deny-ns-in-kernel ($(((t1 - t0) / 1000000)) ms, EPERM)"
else
	nm_fail deny-ns-in-kernel "client -> echo-local VIP: $out in $(((t1 - t0) / 1000000)) ms"
fi
dump=$(bpftool -j map dump pinned "$NM_PIN_BASE/$(nm_instance 1)/nm_policy" 2>/dev/null)
if jq -e '[.[] | select(.formatted.value.verdict == 2 or .formatted.value.verdict == "NM_PV_DENY")] | length > 0' <<<"$dump" >/dev/null 2>&1 &&
	jq -e '.[0].formatted.key | has("src_workload_id") and has("dst_workload_id") and has("port")' <<<"$dump" >/dev/null 2>&1; then
	nm_pass deny-record-dump
	printf '    nm_policy on node-1 (bpftool map dump, first record):\n'
	bpftool map dump pinned "$NM_PIN_BASE/$(nm_instance 1)/nm_policy" 2>/dev/null | head -n 12 | sed 's/^/      /'
else
	nm_fail deny-record-dump "nm_policy dump: ${dump:0:300}"
fi

# A broken file: refused as a whole, naming file and field; the set stays.
rej=$(count "$log1" 'policies rejected')
printf 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: broken\n  namespace: default\nspec:\n  action: ALLOW\n  rulez: []\n' \
	>"$pdir/broken.yaml"
if wait_more "$log1" 'policies rejected.*broken.yaml.*rulez' "$rej" 3; then
	out=$(send client 198.19.0.11:80 still)
	nm_check broken-file-kept "after a broken file: $out" test "${out%%:*}" == "error EPERM"
else
	nm_fail broken-file-kept "no refusal naming broken.yaml and rulez: $(grep -i 'polic' "$log1" | tail -n 2)"
fi

if "$NODEMESH" --json policy check --instance "$(nm_instance 1)" --to default/local-echo --port 8080 \
	--from spiffe://cluster.local/ns/default/sa/client >"$NM_STATE/check.json" 2>"$NM_STATE/check.err" &&
	[[ $(jq -r .verdict "$NM_STATE/check.json") == deny && $(jq -r .policy "$NM_STATE/check.json") == default/echo-deny-default ]]; then
	nm_pass cli-check-agent
	printf '    nodemesh --json policy check --instance %s --to default/local-echo --port 8080 --from spiffe://cluster.local/ns/default/sa/client:\n      %s\n' \
		"$(nm_instance 1)" "$(cat "$NM_STATE/check.json")"
else
	nm_fail cli-check-agent "$(cat "$NM_STATE/check.json" "$NM_STATE/check.err" 2>/dev/null | head -c 400)"
fi

rm -f "$pdir/broken.yaml" "$pdir/deny.yaml"
t0=$(date +%s%N)
ok=0
for ((i = 0; i < 40; i++)); do
	out=$(send client 198.19.0.11:80 back 1000)
	[[ $out == "ok back" ]] && { ok=1; break; }
	sleep 0.05
done
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
if ((ok && ms < 1000)); then
	nm_pass "change-within-1s (${ms} ms)"
else
	nm_fail change-within-1s "after removing the DENY: $out after ${ms} ms"
fi

# An established stream, then a DENY for it that only the destination
# agent can decide (echo's ALLOW has an ipBlocks rule).
NM_HOLD=${NM_HOLD:-$NM_BUILD/tests/tools/nm_hold}
nm_pod_spawn client stream "$NM_HOLD" stream --to 198.19.0.10:80
nm_wait_file_match "$NM_STATE/stream.out" "stream: started" 5 || nm_fail existing-kept "stream did not start"
put deny-client.yaml 'apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: echo-deny-client
  namespace: default
spec:
  selector:
    matchLabels:
      app: echo
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/client"]' || nm_fail policy "DENY (client) not loaded"
before=$(count "$log2" 'inbound flow refused.*policy=default/echo-deny-client')
out=$(send client 198.19.0.10:80 named)
if [[ $out == "error ECONNRESET"* ]] &&
	wait_more "$log2" 'inbound flow refused.*status=denied policy=default/echo-deny-client reason="denied by DENY policy"' "$before" 3; then
	nm_pass deny-names-policy
else
	nm_fail deny-names-policy "client -> echo: $out; $(grep refused "$log2" | tail -n 1)"
fi
sleep 1
nm_check existing-kept "stream after the DENY: $(cat "$NM_STATE/stream.out")" \
	test "$(grep -c 'stream: ' "$NM_STATE/stream.out")" == 1
r2=$(count "$log2" 'msg="config reloaded"')
jq '.policy.applyToExisting = true' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_2"
if wait_more "$log2" 'msg="config reloaded"' "$r2" && nm_wait_file_match "$NM_STATE/stream.out" "stream: ECONNRESET" 5; then
	nm_pass existing-closed
else
	nm_fail existing-closed "stream: $(cat "$NM_STATE/stream.out"); $(grep -E 'policy change|reloaded' "$log2" | tail -n 2)"
fi

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
