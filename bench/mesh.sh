#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# mesh.sh -- nodemesh's real mesh path in the simulated two-node cluster of
# tests/integration/lib/cluster.sh (network namespaces, veth, bridges, a
# private cgroup v2 subtree, one nodemeshd per node with its BPF datapath).
#
# Paths, all from the `client` pod on node-1 (198.18.1.11):
#   direct-cross  unmeshed (the pod's netns, `outside` cgroup) -> echo pod on
#                 node-2 by pod IP 198.18.2.11: the network alone
#   mesh-cross    meshed (the pod's cgroup) -> service VIP 198.19.1.x -> agent
#                 node-1 -> mTLS tunnel -> agent node-2 -> echo pod
#   direct-same   unmeshed -> local-echo pod on node-1 by pod IP 198.18.1.12
#   mesh-same     meshed -> service VIP 198.19.2.x -> local-echo pod (kernel
#                 path or agent path, whichever the datapath picks)
# Each path runs the kit's tools: sockperf ping-pong 64 B (--full-rtt,
# p50/p99 round trip), iperf3 -P 1 and -P 4, and sequential new connections
# per second (bench/nmbench connrate, the kit's connrate for any address).
# Ratios: mesh-cross vs direct-cross, mesh-same vs direct-same, same run.
# Pinning like the kit (BENCH_PIN=split): tools and servers on CPU 0, both
# agents on CPU 1. Agents log at warn level.
#
# It also measures, in the same cluster: both agents' idle RSS, agent CPU
# seconds per GB relayed over mesh-cross (iperf3 -P 1), and the time a
# meshed connect() spends in the BPF hook (meshed-but-bypassed connects vs
# unmeshed ones, plus the kernel's own run_time_ns of the programs).
#
# Usage: mesh.sh [--duration S] [--runs N] [--json PATH] [--connects N]
# Env: BENCH_TLS_RESUME=0|1 (default 0: --tls-resumption off on both agents),
#      BENCH_PIN=split|none. Root only. Everything is removed on exit.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"

DURATION=5
RUNS=3
JSON=""
CONNECTS=20000
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	--connects) CONNECTS=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "mesh.sh: unknown argument $1" ;;
	esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $DURATION -le 60 ]] || bench_die "--duration must be 1..60"
[[ $RUNS =~ ^[1-9][0-9]*$ && $RUNS -le 9 ]] || bench_die "--runs must be 1..9"
[[ $CONNECTS =~ ^[1-9][0-9]*$ ]] || bench_die "--connects must be a number"
[[ $(id -u) -eq 0 ]] || bench_die "mesh.sh needs root (namespaces, cgroups, BPF)"
bench_need sockperf iperf3 jq ip nsenter taskset timeout bpftool gcc
TLS_RESUME=${BENCH_TLS_RESUME:-0}
RESUME_ARG=off
[[ $TLS_RESUME == 1 ]] && RESUME_ARG=on
PIN=${BENCH_PIN:-split}
if [[ $PIN == split && $(nproc) -ge 2 ]]; then CPU_TOOLS=0; CPU_AGENT=1; else PIN=none; CPU_TOOLS=""; CPU_AGENT=""; fi
PINT=()
[[ -n $CPU_TOOLS ]] && PINT=(taskset -c "$CPU_TOOLS")
# Everything this script starts is bounded by this, even if its trap never runs.
LIFE=$((RUNS * 4 * (4 * DURATION + 20) + 300))

# ------------------------------------------------------------- the cluster
NM_AGENT_LOG_LEVEL=warn
# shellcheck disable=SC2034 # read by cluster.sh
NM_NO_TRAP=1
NM_BUILD=$BENCH_BUILD
# shellcheck source=../tests/integration/lib/cluster.sh
. "$BENCH_REPO/tests/integration/lib/cluster.sh"

LAT_PORT=11111 TPUT_PORT=5201 CONN_PORT=7000
# One service per port (a service here carries one port mapping).
NM_SERVICES[bench-lat-r]="198.19.1.1 $LAT_PORT $LAT_PORT app=echo"
NM_SERVICES[bench-tput-r]="198.19.1.2 $TPUT_PORT $TPUT_PORT app=echo"
NM_SERVICES[bench-conn-r]="198.19.1.3 $CONN_PORT $CONN_PORT app=echo"
NM_SERVICES[bench-lat-l]="198.19.2.1 $LAT_PORT $LAT_PORT app=echo-local"
NM_SERVICES[bench-tput-l]="198.19.2.2 $TPUT_PORT $TPUT_PORT app=echo-local"
NM_SERVICES[bench-conn-l]="198.19.2.3 $CONN_PORT $CONN_PORT app=echo-local"
NM_SERVICE_ORDER+=(bench-lat-r bench-tput-r bench-conn-r bench-lat-l bench-tput-l bench-conn-l)

BPF_STATS_OLD=""
TMP=$(mktemp -d /tmp/nm-mesh.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	[[ -n $BPF_STATS_OLD ]] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_OLD" 2>/dev/null
	if [[ -n ${NM_STATE:-} && -d ${NM_STATE:-/nonexistent} ]]; then
		mkdir -p "$TMP/logs"
		cp "$NM_STATE"/agent-node-*.log "$TMP/logs/" 2>/dev/null || true
	fi
	nm_cluster_cleanup
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

bench_build_tools "$TMP/bin"
NMB=$TMP/bin/nmbench
nm_cluster_init
nm_cluster_create
nm_cluster_certs
# nm_agent_start waits for the info-level msg="ready" line, which a warn
# level agent never prints; this starts the agent the same way (same cgroup,
# netns, env bookkeeping for the cleanup) and waits for its run-state file,
# which the agent writes right before it is ready.
bench_agent_start() { # N
	local n=$1 log cg ns pid i
	log=$(nm_agent_log "$n")
	cg=$NM_CG/agent-$n
	ns=$(nm_node_ns "$n")
	(
		echo "$BASHPID" >"$cg/cgroup.procs" || exit 126
		exec nsenter --net="/run/netns/$ns" -- timeout -k 3 "$LIFE" "$NODEMESHD" \
			--config "$NM_STATE/cluster.json" --node "node-$n" \
			--instance "$(nm_instance "$n")" --log-level "$NM_AGENT_LOG_LEVEL" \
			--tls-resumption "$RESUME_ARG"
	) >>"$log" 2>&1 &
	pid=$!
	nm_env_set "NM_AGENT_PID_$n" "$pid"
	nm_env_set "NM_AGENT_LOG_$n" "$log"
	nm_env_add NM_AGENT_PIDS "$pid"
	for ((i = 0; i < 200; i++)); do
		[[ -s /run/nodemesh/$(nm_instance "$n")/agent.json ]] && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; return 1; }
		sleep 0.05
	done
	[[ -s /run/nodemesh/$(nm_instance "$n")/agent.json ]] || { tail -n 20 "$log" >&2; return 1; }
	# `timeout` is the recorded pid; nodemeshd is its only child.
	BENCH_AGENT_PID=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
	[[ -n $BENCH_AGENT_PID ]] || return 1
	if [[ -n $CPU_AGENT ]]; then taskset -a -p -c "$CPU_AGENT" "$BENCH_AGENT_PID" >/dev/null; fi
}
bench_agent_start 1 || bench_die "agent node-1 did not start"
AGENT1=$BENCH_AGENT_PID
bench_agent_start 2 || bench_die "agent node-2 did not start"
AGENT2=$BENCH_AGENT_PID

for pod in echo local-echo; do
	nm_pod_spawn "$pod" "sockperf-$pod" timeout -k 3 "$LIFE" "${PINT[@]}" \
		sockperf server --tcp -i 0.0.0.0 -p "$LAT_PORT"
	nm_pod_spawn "$pod" "iperf3-$pod" timeout -k 3 "$LIFE" "${PINT[@]}" \
		iperf3 -s -p "$TPUT_PORT"
	nm_pod_spawn "$pod" "connecho-$pod" timeout -k 3 "$LIFE" "${PINT[@]}" \
		"$NMB" echo 0.0.0.0 "$CONN_PORT" "$LIFE"
	nm_pod_info "$pod"
	for p in "$LAT_PORT" "$TPUT_PORT" "$CONN_PORT"; do
		nm_wait_listen "$NM_P_NS" "$p" 10 || bench_die "server on $pod:$p did not start"
	done
done
sleep 1
RSS_IDLE1=$(bench_rss_kb "$AGENT1") RSS_IDLE2=$(bench_rss_kb "$AGENT2")
bench_log "mesh: cluster $NM_RUN up; agents pid $AGENT1 (rss ${RSS_IDLE1} kB), $AGENT2 (rss ${RSS_IDLE2} kB); ${DURATION}s x $RUNS runs; pin=$PIN tls_resume=$TLS_RESUME"

# ------------------------------------------------------------ measurements
PATHS=(direct-cross mesh-cross direct-same mesh-same)
declare -A HOST=([direct-cross]=198.18.2.11 [direct-same]=198.18.1.12)
declare -A VIPS=([mesh-cross]="198.19.1.1 198.19.1.2 198.19.1.3" [mesh-same]="198.19.2.1 198.19.2.2 198.19.2.3")
declare -A BASE=([mesh-cross]=direct-cross [mesh-same]=direct-same [direct-cross]=direct-cross [direct-same]=direct-same)
dest() { # dest PATH SERVICE(1..3) -> "ip port"
	local port
	case $2 in 1) port=$LAT_PORT ;; 2) port=$TPUT_PORT ;; 3) port=$CONN_PORT ;; esac
	if [[ -n ${HOST[$1]:-} ]]; then
		echo "${HOST[$1]} $port"
	else
		local v
		read -ra v <<<"${VIPS[$1]}"
		echo "${v[$(($2 - 1))]} $port"
	fi
}
# run_in PATH CMD... : as the client pod, meshed or not.
run_in() {
	local p=$1
	shift
	if [[ $p == direct-* ]]; then
		nm_outside_exec client "$@"
	else
		nm_pod_exec client "$@"
	fi
}
tool() { local p=$1; shift; run_in "$p" timeout $((DURATION + 20)) "${PINT[@]}" "$@"; }

m_lat() { # PATH -> "p50 p99"
	local out ip port
	read -r ip port < <(dest "$1" 1)
	if out=$(tool "$1" sockperf ping-pong --tcp -i "$ip" -p "$port" -m 64 -t "$DURATION" --full-rtt 2>&1); then
		echo "$(awk '/percentile 50.000 =/{print $NF}' <<<"$out" | grep . || echo NA) $(awk '/percentile 99.000 =/{print $NF}' <<<"$out" | grep . || echo NA)"
	else
		bench_log "sockperf $1 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
		echo "NA NA"
	fi
}
m_tput() { # PATH STREAMS -> "gbps bytes"
	local out ip port try v b
	read -r ip port < <(dest "$1" 2)
	for try in 1 2; do
		if out=$(tool "$1" iperf3 -c "$ip" -p "$port" -P "$2" -t "$DURATION" -J 2>/dev/null); then
			v=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' <<<"$out" 2>/dev/null || true)
			b=$(jq -r '.end.sum_received.bytes' <<<"$out" 2>/dev/null || true)
			if [[ $v =~ ^[0-9.]+$ ]]; then echo "$v $b"; return; fi
		fi
		bench_log "iperf3 $1 -P $2 failed (try $try): $(jq -r '.error // empty' <<<"$out" 2>/dev/null | head -c 200)"
		sleep 1
	done
	echo "NA NA"
}
m_conn() { # PATH -> conns/s
	local out ip port v
	read -r ip port < <(dest "$1" 3)
	if out=$(tool "$1" "$NMB" connrate "$ip" "$port" "$DURATION" 2>&1); then
		v=$(sed -n 's/^conns_per_s=\([0-9.]*\) .*/\1/p' <<<"$out")
		[[ $out == *" err=0 "* ]] || bench_log "connrate $1: $out"
		echo "${v:-NA}"
	else
		bench_log "connrate $1 failed: $out"
		echo NA
	fi
}

# Sanity: every path carries a connection before measuring.
for p in "${PATHS[@]}"; do
	read -r ip port < <(dest "$p" 3)
	out=$(tool "$p" "$NMB" connrate "$ip" "$port" 0.3 2>&1 || true)
	[[ $out == *" err=0 "* && $out != conns_per_s=0.0* ]] || {
		nm_dump_logs 20
		bench_die "path $p ($ip:$port) does not work: $out"
	}
done

declare -A R=()
CPU_TICKS=0 CPU_BYTES=0
HZ=$(getconf CLK_TCK)
for ((r = 1; r <= RUNS; r++)); do
	for p in "${PATHS[@]}"; do
		bench_log "mesh run $r/$RUNS: $p"
		read -r a b < <(m_lat "$p")
		R[$p.p50]+="$a " R[$p.p99]+="$b "
		t0=$(( $(bench_cpu_ticks "$AGENT1") + $(bench_cpu_ticks "$AGENT2") ))
		read -r g bytes < <(m_tput "$p" 1)
		t1=$(( $(bench_cpu_ticks "$AGENT1") + $(bench_cpu_ticks "$AGENT2") ))
		R[$p.g1]+="$g "
		if [[ $p == mesh-cross && $bytes =~ ^[0-9]+$ ]]; then
			CPU_TICKS=$((CPU_TICKS + t1 - t0)) CPU_BYTES=$((CPU_BYTES + bytes))
		fi
		sleep 0.5
		read -r g _ < <(m_tput "$p" 4)
		R[$p.g4]+="$g "
		sleep 0.5
		R[$p.cps]+="$(m_conn "$p") "
	done
done
RSS_AFTER1=$(bench_rss_kb "$AGENT1") RSS_AFTER2=$(bench_rss_kb "$AGENT2")

# ------------------------------------------------------------ BPF hook cost
# A meshed connect to an address that is neither a service nor a workload
# runs the whole lookup in connect4 and passes through: node-1's bridge
# address, port 9, where nothing listens (an RST comes back). Unmeshed
# connects from the same netns are the control; the difference of the
# medians is what the hook adds to connect(). bpf_stats gives the programs'
# own run time.
prog_of_link() { bpftool link show pinned "$1" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "prog") {print $(i + 1); exit}}'; }
prog_stats() { # PROG_ID -> "run_time_ns run_cnt"
	bpftool prog show id "$1" --json 2>/dev/null | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'
}
PINDIR=$NM_PIN_BASE/$(nm_instance 1)
C4=$(prog_of_link "$PINDIR/link_connect4" || true)
SO=$(prog_of_link "$PINDIR/link_sockops" || true)
BPF_STATS_OLD=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo "")
HOOK_STATS_OK=0
if [[ -n $C4 && -n $BPF_STATS_OLD ]] && sysctl -qw kernel.bpf_stats_enabled=1 2>/dev/null; then HOOK_STATS_OK=1; fi
declare -A CT=()
read -r c4t0 c4c0 < <([[ -n $C4 ]] && prog_stats "$C4" || echo "0 0")
read -r sot0 soc0 < <([[ -n $SO ]] && prog_stats "$SO" || echo "0 0")
for ((r = 1; r <= 3; r++)); do
	for mode in unmeshed meshed; do
		if [[ $mode == meshed ]]; then ex=nm_pod_exec; else ex=nm_outside_exec; fi
		out=$($ex client timeout 60 "${PINT[@]}" \
			"$NMB" conntime 198.18.1.1 9 "$CONNECTS" 2>&1 || true)
		CT[$mode]+="$(sed -n 's/^median_ns=\([0-9]*\) .*/\1/p' <<<"$out") "
		[[ $out == median_ns=* ]] || bench_log "conntime $mode: $out"
	done
done
read -r c4t1 c4c1 < <([[ -n $C4 ]] && prog_stats "$C4" || echo "0 0")
read -r sot1 soc1 < <([[ -n $SO ]] && prog_stats "$SO" || echo "0 0")
if [[ -n $BPF_STATS_OLD ]]; then sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_OLD" 2>/dev/null || true; BPF_STATS_OLD=""; fi
# shellcheck disable=SC2086
CT_UN=$(bench_median ${CT[unmeshed]}) CT_ME=$(bench_median ${CT[meshed]})
HOOK_DELTA=NA
[[ $CT_UN != NA && $CT_ME != NA ]] && HOOK_DELTA=$((${CT_ME%.*} - ${CT_UN%.*}))
C4_NS=NA SO_NS=NA
if ((HOOK_STATS_OK && c4c1 > c4c0)); then C4_NS=$(awk -v t=$((c4t1 - c4t0)) -v c=$((c4c1 - c4c0)) 'BEGIN{printf "%.1f", t / c}'); fi
if ((HOOK_STATS_OK && soc1 > soc0)); then SO_NS=$(awk -v t=$((sot1 - sot0)) -v c=$((soc1 - soc0)) 'BEGIN{printf "%.1f", t / c}'); fi
C4_CNT=$((c4c1 - c4c0)) SO_CNT=$((soc1 - soc0))
bench_log "hook: connect() median unmeshed ${CT_UN} ns, meshed ${CT_ME} ns (delta $HOOK_DELTA ns); connect4 run ${C4_NS} ns x $C4_CNT, sockops ${SO_NS} ns x $SO_CNT"

CPU_S_PER_GB=NA
if ((CPU_BYTES > 0)); then
	CPU_S_PER_GB=$(awk -v t="$CPU_TICKS" -v hz="$HZ" -v b="$CPU_BYTES" 'BEGIN{printf "%.3f", (t / hz) / (b / 1e9)}')
fi

# ------------------------------------------------------------------ report
declare -A M=()
for p in "${PATHS[@]}"; do
	for m in p50 p99 g1 g4 cps; do
		# shellcheck disable=SC2086
		M[$p.$m]=$(bench_median ${R[$p.$m]:-})
	done
done
lst() { local v first=1; printf '['; for v in $1; do ((first)) || printf ,; first=0; bench_jnum "$v" | tr -d '\n'; done; printf ']'; }
{
	for p in "${PATHS[@]}"; do
		b=${BASE[$p]}
		jq -n --arg path "$p" --arg base "$b" \
			--argjson p50 "$(bench_jnum "${M[$p.p50]}")" --argjson p99 "$(bench_jnum "${M[$p.p99]}")" \
			--argjson g1 "$(bench_jnum "${M[$p.g1]}")" --argjson g4 "$(bench_jnum "${M[$p.g4]}")" \
			--argjson cps "$(bench_jnum "${M[$p.cps]}")" \
			--argjson rp50 "$(bench_jnum "$(bench_ratio "${M[$p.p50]}" "${M[$b.p50]}")")" \
			--argjson rp99 "$(bench_jnum "$(bench_ratio "${M[$p.p99]}" "${M[$b.p99]}")")" \
			--argjson rg1 "$(bench_jnum "$(bench_ratio "${M[$p.g1]}" "${M[$b.g1]}")")" \
			--argjson rg4 "$(bench_jnum "$(bench_ratio "${M[$p.g4]}" "${M[$b.g4]}")")" \
			--argjson rcps "$(bench_jnum "$(bench_ratio "${M[$p.cps]}" "${M[$b.cps]}")")" \
			--argjson runs "{\"p50_us\": $(lst "${R[$p.p50]:-}"), \"p99_us\": $(lst "${R[$p.p99]:-}"), \"gbps_1\": $(lst "${R[$p.g1]:-}"), \"gbps_4\": $(lst "${R[$p.g4]:-}"), \"conns_per_s\": $(lst "${R[$p.cps]:-}")}" \
			'{path: $path, baseline: $base, p50_us: $p50, p99_us: $p99, gbps_1: $g1, gbps_4: $g4,
			  conns_per_s: $cps, ratio_vs_direct: {p50: $rp50, p99: $rp99, gbps_1: $rg1,
			  gbps_4: $rg4, conns_per_s: $rcps}, runs: $runs}'
	done
} | jq -s \
	--argjson dur "$DURATION" --argjson runs "$RUNS" --arg pin "$PIN" --argjson resume "$TLS_RESUME" \
	--argjson rss1 "$(bench_jnum "$RSS_IDLE1")" --argjson rss2 "$(bench_jnum "$RSS_IDLE2")" \
	--argjson rssa1 "$(bench_jnum "$RSS_AFTER1")" --argjson rssa2 "$(bench_jnum "$RSS_AFTER2")" \
	--argjson cpugb "$(bench_jnum "$CPU_S_PER_GB")" --argjson ticks "$CPU_TICKS" --argjson hz "$HZ" \
	--argjson bytes "$CPU_BYTES" \
	--argjson ctun "$(bench_jnum "$CT_UN")" --argjson ctme "$(bench_jnum "$CT_ME")" \
	--argjson hd "$(bench_jnum "$HOOK_DELTA")" --argjson c4 "$(bench_jnum "$C4_NS")" \
	--argjson so "$(bench_jnum "$SO_NS")" --argjson c4c "$C4_CNT" --argjson soc "$SO_CNT" \
	--argjson connects "$CONNECTS" --arg ctun_runs "${CT[unmeshed]:-}" --arg ctme_runs "${CT[meshed]:-}" \
	'{meta: {duration_s: $dur, runs: $runs, pin: $pin, tls_resume: $resume,
	   topology: "2 nodes x 2 pods, netns + veth + bridge, cgroup v2; client pod on node-1"},
	  results: .,
	  agents: {rss_idle_kb: {"node-1": $rss1, "node-2": $rss2},
	           rss_after_kb: {"node-1": $rssa1, "node-2": $rssa2},
	           cpu_s_per_gb_mesh_cross: $cpugb,
	           cpu_basis: {ticks: $ticks, hz: $hz, bytes: $bytes, note: "both agents, utime+stime over every mesh-cross iperf3 -P1 run"}},
	  hook: {connects_per_run: $connects, connect_median_ns_unmeshed: $ctun, connect_median_ns_meshed: $ctme,
	         added_ns: $hd, connect4_run_ns: $c4, connect4_runs: $c4c, sockops_run_ns: $so, sockops_runs: $soc,
	         runs_unmeshed_ns: ($ctun_runs | split(" ") | map(select(. != "") | tonumber)),
	         runs_meshed_ns: ($ctme_runs | split(" ") | map(select(. != "") | tonumber)),
	         target: "198.18.1.1:9 (node-1 bridge address, no listener): meshed lookup, passthrough"}}' >"$TMP/mesh.json"

if [[ -n $JSON ]]; then cp "$TMP/mesh.json" "$JSON"; else cat "$TMP/mesh.json"; fi
printf '%-13s %9s %9s %8s %8s %11s | %6s %6s %7s %7s %6s\n' path p50_us p99_us gbps_1 gbps_4 conns_per_s p50_x p99_x gbps1_x gbps4_x cps_x >&2
jq -r '.results[] | [.path, .p50_us, .p99_us, .gbps_1, .gbps_4, .conns_per_s, .ratio_vs_direct.p50, .ratio_vs_direct.p99, .ratio_vs_direct.gbps_1, .ratio_vs_direct.gbps_4, .ratio_vs_direct.conns_per_s] | map(. // "NA" | tostring) | @tsv' "$TMP/mesh.json" |
	while IFS=$'\t' read -r a b c d e f g h i j k; do
		printf '%-13s %9s %9s %8s %8s %11s | %6s %6s %7s %7s %6s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j" "$k" >&2
	done
