#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_22_lb - issue 12, load balancing in the kernel through real agents.
# The app=echo pods are three: echo (node-2, version=v1), echo-b (node-2,
# version=v2) and echo-c (node-1, version=v1), each an nm_peer echo server
# logging its accepts; the client pods are client (node-1), client-2
# (node-2) and client-3..6 (node-1). Every connection below is a real one
# from a pod (sequential, one Python process per batch: connect, send,
# half-close, read the echo), counted at the endpoints by their accept lines.
# Services on app=echo, each on its own VIP:
#   lb-random   random,        locality none
#   lb-rr       round_robin,   locality none
#   lb-lr       least_request, locality none
#   lb-maglev   maglev,        locality none
#   lb-local    no lb (random, failover)
#   canary      subsets v1 (90) / v2 (10), no lb (random, failover)
#
#  1. random and least_request: 300 connects, chi-square (2 df) below
#     13.82 (p = 0.001); round_robin: max - min <= CPUs
#     (docs/load-balancing.md); least_request with 30 held open: each
#     endpoint 7..13;
#  2. maglev: every client pod's 40 connects land on one endpoint, and the
#     six pods do not all land on the same one (the hash and the table are
#     deterministic, so this is fixed for the fixed addresses);
#  3. failover (the default): from client (node-1, echo-c local) all go to
#     echo-c; from client-2 (node-2) none go to echo-c, both node-2 ones get
#     some;
#  4. canary 90/10: N connects (NM_LB_CANARY_N, default 10000), v2 share
#     within +-2 points (the issue's bound; at N=10000 that is >= 4 sigma);
#     then 50/50 in the file + SIGHUP: both agents log "config reloaded"
#     within 1 s of the write, same pids, the first 100 connects after it
#     already split 50/50 (30..70), N more within +-2 points (4 sigma at
#     10000, wider when N is lowered); a stream opened before the reload
#     keeps flowing through it;
#  5. bad definitions (unknown algorithm, weights adding up to 0, a subset
#     selecting nothing), each written with the weights 10/90 so that a
#     partial apply would show: refused naming the JSON path, no "config
#     reloaded", and the 50/50 split stays (1000 connects, 4 sigma).
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

HOLD=$NM_BUILD/tests/tools/nm_hold
name=lb
nm_require_bins "$name"
[[ -x $HOLD ]] || { nm_fail "$name" "missing $HOLD (run make)"; exit 1; }
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
[[ -x $PY ]] || { nm_fail "$name" "python3 missing"; exit 1; }
CANARY_N=${NM_LB_CANARY_N:-10000}
CPUS=$(nproc)

NM_PODS[echo-b]="2 3 echo app=echo"
NM_PODS[echo-c]="1 3 echo app=echo"
NM_POD_ORDER+=(echo-b echo-c)
# Maglev clients on node-1. Their indices (addresses 198.18.1.14, .15, .21,
# .22) are picked so that, with client, they cover all three endpoints in
# today's tables; the table check below does not depend on that choice.
for spec in 3:4 4:5 5:11 6:12; do
	NM_PODS[client-${spec%:*}]="1 ${spec#*:} client app=client"
	NM_POD_ORDER+=("client-${spec%:*}")
done
NM_SERVICES[lb-random]="198.19.0.20 80 8080 app=echo"
NM_SERVICES[lb-rr]="198.19.0.21 80 8080 app=echo"
NM_SERVICES[lb-lr]="198.19.0.22 80 8080 app=echo"
NM_SERVICES[lb-maglev]="198.19.0.23 80 8080 app=echo"
NM_SERVICES[lb-local]="198.19.0.24 80 8080 app=echo"
NM_SERVICES[canary]="198.19.0.25 80 8080 app=echo"
NM_SERVICE_ORDER+=(lb-random lb-rr lb-lr lb-maglev lb-local canary)

nm_cluster_init
nm_cluster_create
"$PY" - "$NM_CLUSTER_JSON" <<'PY' || nm_die "cannot add lb settings to cluster.json"
import json, sys
p = sys.argv[1]
c = json.load(open(p))
versions = {"echo": "v1", "echo-b": "v2", "echo-c": "v1"}
for w in c["workloads"]:
    if w["name"] in versions:
        w["labels"]["version"] = versions[w["name"]]
algo = {"lb-random": "random", "lb-rr": "round_robin",
        "lb-lr": "least_request", "lb-maglev": "maglev"}
for s in c["services"]:
    if s["name"] in algo:
        s["lb"] = {"algorithm": algo[s["name"]], "locality": "none"}
    if s["name"] == "canary":
        s["subsets"] = [{"name": "v1", "selector": {"version": "v1"}, "weight": 90},
                        {"name": "v2", "selector": {"version": "v2"}, "weight": 10}]
json.dump(c, open(p, "w"), indent=2)
PY
nm_cluster_certs
{ nm_agent_start 1 && nm_agent_start 2; } || { nm_dump_logs; nm_fail "$name" "agents did not start"; exit 1; }
EPS=(echo echo-b echo-c)
for p in "${EPS[@]}" local-echo; do
	nm_start_echo "$p" 8080
done
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
cfg=$NM_CLUSTER_JSON
pid1=$NM_AGENT_PID_1
pid2=$NM_AGENT_PID_2
canary_idx=$(jq '.services | map(.name) | index("canary")' "$cfg")

# The connection driver (lib/oneshot.py): N sequential connects to IP:PORT,
# each sends "lb", half-closes and must read "lb" back; prints ok=, fail=, ms=.
ONESHOT=$NM_REPO/tests/integration/lib/oneshot.py

accepts() { grep -c '^accept' "$NM_STATE/echo-$1.out" 2>/dev/null; }
snap() { local p s=""; for p in "${EPS[@]}"; do s+="$(accepts "$p") "; done; echo "$s"; }
# run POD VIP N: N connects from POD; sets R_OK R_FAIL R_MS and R_CNT
# (accepts per endpoint of EPS during the batch, space separated).
run() {
	local pod=$1 vip=$2 n=$3 before after out i
	before=($(snap))
	out=$(nm_pod_exec "$pod" "$PY" "$ONESHOT" "$vip" 80 "$n" lb 2>>"$NM_STATE/conns.err")
	after=($(snap))
	R_OK=$(nm_kv "$out" ok) || R_OK=0
	R_FAIL=$(nm_kv "$out" fail) || R_FAIL=$n
	R_MS=$(nm_kv "$out" ms) || R_MS=0
	echo "# $pod -> $vip x $n: $out" >&2
	R_CNT=""
	for i in "${!EPS[@]}"; do
		R_CNT+="$((after[i] - before[i])) "
	done
	R_CNT=${R_CNT% }
}
# chi2 COUNTS...: chi-square of the counts against a uniform split.
chi2() { awk -v c="$*" 'BEGIN { n = split(c, a, " "); for (i = 1; i <= n; i++) t += a[i]
	e = t / n; for (i = 1; i <= n; i++) x += (a[i] - e) ^ 2 / e; printf "%.2f", x }'; }

# 1. random, round_robin, least_request over 300 sequential connects.
for svc in lb-random:198.19.0.20 lb-rr:198.19.0.21 lb-lr:198.19.0.22; do
	s=${svc%%:*} vip=${svc#*:}
	run client "$vip" 300
	read -r a b c <<<"$R_CNT"
	x=$(chi2 "$R_CNT")
	max=$(printf '%s\n' $a $b $c | sort -n | tail -1) min=$(printf '%s\n' $a $b $c | sort -n | head -1)
	what="300 connects in $R_MS ms, $R_OK ok; echo/echo-b/echo-c $a/$b/$c, chi2 $x, max-min $((max - min))"
	if ((R_OK != 300 || a + b + c != 300)); then
		nm_fail "$s-distribution" "$what"
	elif [[ $s == lb-rr ]]; then
		nm_check "$s-distribution ($what; bound max-min <= $CPUS)" "$what" test $((max - min)) -le "$CPUS"
	else
		nm_check "$s-distribution ($what; bound chi2 < 13.82)" "$what" awk -v x="$x" 'BEGIN { exit !(x < 13.82) }'
	fi
done

# least_request with connections held open: the two-choices pick spreads
# the open ones evenly (a tie goes to the first, so sequential is uniform).
before=($(snap))
nm_pod_spawn client lr-hold "$HOLD" open --to 198.19.0.22:80 --count 30 --settle-ms 1500 --hold-ms 0
lr_pid=$NM_LAST_PID
if nm_wait_file_match "$NM_STATE/lr-hold.out" '^ready' 15; then
	r=$(grep '^ready' "$NM_STATE/lr-hold.out")
	after=($(snap))
	held=() ; for i in 0 1 2; do held+=($((after[i] - before[i]))); done
	what="30 held: $r; echo/echo-b/echo-c ${held[*]}"
	nm_check "lb-lr-held-open ($what; bound 7..13 each)" "$what" bash -c \
		'(( $1 == 30 && $2 >= 7 && $2 <= 13 && $3 >= 7 && $3 <= 13 && $4 >= 7 && $4 <= 13 ))' _ \
		"$(nm_kv "$r" connected)" "${held[@]}"
else
	nm_fail lb-lr-held-open "nm_hold not ready: $(cat "$NM_STATE/lr-hold.err")"
fi
kill -TERM "$lr_pid" 2>/dev/null

# 2. maglev: one client, one endpoint.
declare -A mg_ep=()
mg_bad="" mg_what="" mg_pairs=""
for pod in client client-3 client-4 client-5 client-6; do
	run "$pod" 198.19.0.23 40
	read -r a b c <<<"$R_CNT"
	mg_what+="$pod $a/$b/$c; "
	if ((R_OK != 40)); then
		mg_bad+="$pod: $R_OK of 40 ok; "
	elif ((a == 40)); then mg_ep[echo]=1 mg_pairs+=" $(nm_pod_ip "$pod")=echo"
	elif ((b == 40)); then mg_ep[echo-b]=1 mg_pairs+=" $(nm_pod_ip "$pod")=echo-b"
	elif ((c == 40)); then mg_ep[echo-c]=1 mg_pairs+=" $(nm_pod_ip "$pod")=echo-c"
	else mg_bad+="$pod split $a/$b/$c; "
	fi
done
# client-2 on node-2: its own agent's table.
run client-2 198.19.0.23 40
read -r a b c <<<"$R_CNT"
mg_what+="client-2 $a/$b/$c"
if ((R_OK != 40)) || ! ((a == 40 || b == 40 || c == 40)); then
	mg_bad+="client-2 $R_OK ok, split $a/$b/$c"
else
	((a == 40)) && mg_ep[echo]=1; ((b == 40)) && mg_ep[echo-b]=1; ((c == 40)) && mg_ep[echo-c]=1
fi
nm_check "lb-maglev-sticky (40 connects from each of 6 pods, echo/echo-b/echo-c: $mg_what)" "${mg_bad:-}$mg_what" test -z "$mg_bad"
# The kernel followed node-1's table: the entry of each client's hash
# (nm_lb_hash_addr: fmix32 chain over the IPv4-mapped address, modulo the
# table size) names one slot; clients on one slot share an endpoint and
# clients on different slots do not.
bpftool -j map dump pinned "$NM_PIN_BASE/$(nm_instance 1)/nm_maglev" >"$NM_STATE/maglev.json" 2>&1
mg_table=$("$PY" - "$NM_STATE/maglev.json" $mg_pairs <<'PY'
import json, socket, struct, sys
M = 0xffffffff
def fmix(h):
    h ^= h >> 16; h = (h * 0x85ebca6b) & M; h ^= h >> 13
    h = (h * 0xc2b2ae35) & M; h ^= h >> 16
    return h
def le(b):
    return int.from_bytes(bytes(int(x, 16) for x in b), "little")
d = json.load(open(sys.argv[1]))
sets = {(le(e["key"][0:4]), le(e["key"][4:8])) for e in d}
tab = {le(e["key"][8:12]): le(e["value"]) for e in d}
if len(sets) != 1 or sorted(tab) != list(range(len(tab))):
    print("bad table: %d sets, %d entries" % (len(sets), len(tab))); sys.exit(1)
slot_ep, ep_slot, out, bad = {}, {}, [], 0
for pair in sys.argv[2:]:
    ip, ep = pair.split("=")
    h = 0x9e3779b9
    for w in struct.unpack("<4I", bytes(10) + b"\xff\xff" + socket.inet_aton(ip)):
        h = fmix(h ^ w)
    k = tab[h % len(tab)]
    out.append("%s->slot %d->%s" % (ip, k, ep))
    if slot_ep.setdefault(k, ep) != ep or ep_slot.setdefault(ep, k) != k:
        bad = 1
print("size %d: %s" % (len(tab), ", ".join(out)))
sys.exit(bad)
PY
)
nm_check "lb-maglev-follows-table ($mg_table)" "$mg_table" test $? == 0 -a -n "$mg_pairs"
nm_check "lb-maglev-spread (endpoints used: ${!mg_ep[*]})" "all 6 client pods on one endpoint: $mg_what" test "${#mg_ep[@]}" -ge 2

# 3. failover (the default locality): the local endpoint takes everything.
run client 198.19.0.24 200
read -r a b c <<<"$R_CNT"
nm_check "lb-failover-local (client on node-1, 200 connects: echo/echo-b/echo-c $a/$b/$c)" \
	"$R_OK ok, echo/echo-b/echo-c $a/$b/$c (want 0/0/200)" test "$R_OK" == 200 -a "$c" == 200
run client-2 198.19.0.24 100
read -r a b c <<<"$R_CNT"
nm_check "lb-failover-local-node-2 (client-2, 100 connects: echo/echo-b/echo-c $a/$b/$c)" \
	"$R_OK ok, echo/echo-b/echo-c $a/$b/$c (want echo-c 0, both others > 0)" \
	test "$R_OK" == 100 -a "$c" == 0 -a "$a" -gt 0 -a "$b" -gt 0

# apply JQ-FILTER: rewrite the file, SIGHUP both agents, wait for one more
# "config reloaded" in each (up to 3 s); sets RELOAD_MS (write to both seen).
apply() {
	local b1 b2 t0 i
	b1=$(grep -c 'msg="config reloaded"' "$log1")
	b2=$(grep -c 'msg="config reloaded"' "$log2")
	jq "$1" "$cfg" >"$cfg.tmp" || return 1
	t0=$(date +%s%N)
	mv "$cfg.tmp" "$cfg"
	kill -HUP "$pid1" "$pid2"
	for ((i = 0; i < 300; i++)); do
		if (($(grep -c 'msg="config reloaded"' "$log1") > b1 &&
			$(grep -c 'msg="config reloaded"' "$log2") > b2)); then
			RELOAD_MS=$((($(date +%s%N) - t0) / 1000000))
			return 0
		fi
		sleep 0.01
	done
	return 1
}
# share_check NAME N WANT_PCT BOUND_PCT: the last run's v2 (echo-b) share.
share_check() {
	local nm=$1 n=$2 want=$3 bound=$4 a b c what
	read -r a b c <<<"$R_CNT"
	what="$n connects in $R_MS ms, $R_OK ok: v2 (echo-b) $b, v1 (echo $a, echo-c $c)"
	what+=", v2 share $(awk -v b="$b" -v n="$n" 'BEGIN { printf "%.2f", 100 * b / n }') %"
	if ((R_OK == n && a + b + c == n)) && awk -v b="$b" -v n="$n" -v w="$want" -v d="$bound" \
		'BEGIN { s = 100 * b / n; exit !(s >= w - d && s <= w + d) }'; then
		nm_pass "$nm ($what; bound $want +- $bound)"
	else
		nm_fail "$nm" "$what; bound $want +- $bound"
	fi
}
# 4 sigma of a share p (percent) over n, never below the issue's 2 points.
bound_of() { awk -v p="$1" -v n="$2" 'BEGIN { b = 400 * sqrt(p / 100 * (1 - p / 100) / n)
	if (b < 2) b = 2; printf "%.2f", b }'; }

# 4. canary 90/10.
run client 198.19.0.25 "$CANARY_N"
share_check canary-90-10 "$CANARY_N" 10 "$(bound_of 10 "$CANARY_N")"

# A stream opened before the reload, held through it.
nm_pod_spawn client stream "$HOLD" stream --to 198.19.0.25:80
stream_pid=$NM_LAST_PID
rx() { nm_pod_exec client ss -Htin state established | grep -o 'bytes_received:[0-9]*' | head -1 | cut -d: -f2; }
nm_wait_file_match "$NM_STATE/stream.out" '^stream: started' 10 || nm_fail canary-stream "stream did not start: $(cat "$NM_STATE/stream.out")"
rx0=$(rx)

if apply ".services[$canary_idx].subsets[0].weight = 50 | .services[$canary_idx].subsets[1].weight = 50"; then
	run client 198.19.0.25 100
	first_ms=$R_MS
	read -r a b c <<<"$R_CNT"
	nm_check "canary-reload-applies (config reloaded on both agents $RELOAD_MS ms after the write; next 100 connects in $first_ms ms: v2 $b, v1 $((a + c)))" \
		"reload $RELOAD_MS ms, first 100: $R_OK ok, echo/echo-b/echo-c $R_CNT (want v2 30..70)" \
		bash -c '(( $1 < 1000 && $2 == 100 && $3 >= 30 && $3 <= 70 ))' _ "$RELOAD_MS" "$R_OK" "$b"
else
	nm_fail canary-reload-applies "no \"config reloaded\" within 3 s: $(grep -h config "$log1" "$log2" | tail -n 4)"
fi
ready1=$(grep -c 'msg="ready"' "$log1") ready2=$(grep -c 'msg="ready"' "$log2")
nm_check "canary-no-restart (pids $pid1 $pid2 alive, one ready line each)" "ready lines $ready1/$ready2" \
	bash -c 'kill -0 $1 && kill -0 $2 && (( $3 == 1 && $4 == 1 ))' _ "$pid1" "$pid2" "$ready1" "$ready2"
rx1=$(rx)
nm_check "canary-established-survives (stream bytes back $rx0 -> $rx1 across the reload)" \
	"stream: $(tr '\n' ' ' <"$NM_STATE/stream.out") rx $rx0 -> $rx1" \
	bash -c 'kill -0 $1 && [[ -n $2 && -n $3 ]] && (( $3 > $2 )) && ! grep -qv "^stream: started" "$4"' _ \
	"$stream_pid" "$rx0" "$rx1" "$NM_STATE/stream.out"
kill -TERM "$stream_pid" 2>/dev/null

run client 198.19.0.25 "$CANARY_N"
share_check canary-50-50 "$CANARY_N" 50 "$(bound_of 50 "$CANARY_N")"

# 5. Bad definitions: refused by path, the 50/50 split stays.
# bad NAME JQ-FILTER PATH-TEXT: the reload is refused naming PATH-TEXT.
bad() {
	local nm=$1 filter=$2 want=$3 r1 r2 c1 c2 i ok=0
	r1=$(grep -c 'msg="config rejected' "$log1") r2=$(grep -c 'msg="config rejected' "$log2")
	c1=$(grep -c 'msg="config reloaded"' "$log1") c2=$(grep -c 'msg="config reloaded"' "$log2")
	jq "$filter" "$GOOD" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg" || { nm_fail "$nm" "jq failed"; return; }
	kill -HUP "$pid1" "$pid2"
	for ((i = 0; i < 100; i++)); do
		if (($(grep -c 'msg="config rejected' "$log1") > r1 && $(grep -c 'msg="config rejected' "$log2") > r2)); then
			ok=1
			break
		fi
		sleep 0.03
	done
	local l1 l2
	l1=$(grep 'msg="config rejected' "$log1" | tail -n 1)
	l2=$(grep 'msg="config rejected' "$log2" | tail -n 1)
	if ((ok)) && [[ $l1 == *"$want"* && $l2 == *"$want"* ]] &&
		(($(grep -c 'msg="config reloaded"' "$log1") == c1 && $(grep -c 'msg="config reloaded"' "$log2") == c2)); then
		nm_pass "$nm (refused: ${l1#*err=})"
	else
		nm_fail "$nm" "want a refusal naming '$want', got node-1 '${l1:-none}' node-2 '${l2:-none}'"
	fi
}
GOOD=$NM_STATE/good.json
cp "$cfg" "$GOOD"
S=".services[$canary_idx]"
W="$S.subsets[0].weight = 10 | $S.subsets[1].weight = 90"
bad lb-bad-algorithm "$W | $S.lb = {\"algorithm\": \"ring_hash\"}" "services[$canary_idx].lb.algorithm: unknown algorithm"
bad lb-bad-zero-weight "$S.subsets[0].weight = 0 | $S.subsets[1].weight = 0" "services[$canary_idx].subsets: the weights add up to 0"
bad lb-bad-subset-selects-nothing "$W | $S.subsets[1].selector = {\"version\": \"v3\"}" \
	"services[$canary_idx].subsets[1].selector: subset v2 selects no workload"
run client 198.19.0.25 1000
share_check lb-bad-keeps-split 1000 50 "$(bound_of 50 1000)"

((NM_FAILS)) && nm_dump_logs 30
exit $((NM_FAILS > 0))
