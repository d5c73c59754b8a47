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
#   mesh-same     meshed -> service VIP 198.19.2.x -> local-echo pod: the
#                 same-node kernel path (docs/kernel-path.md), or with
#                 --kernel-path off (mesh.kernelPath false) the agent's
#                 plaintext relay; the JSON says which carried the flows
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
#                [--tunnel-pool SIZE] [--pool-compare] [--kernel-path on|off]
#   --tunnel-pool SIZE  mesh.tunnelPool.size of both agents (default: the
#                       agent's default, 2; 0 = no pool)
#   --pool-compare      after the measurements, turn the pool off (a live
#                       reload) and measure mesh-cross and direct-cross
#                       conns/s again, alternating, in the same cluster:
#                       JSON "tunnel_pool_compare" and a summary line
#   --kernel-path on|off  mesh.kernelPath of both agents (default on, the
#                       agent's default; off: mesh-same through the agent)
# Env: BENCH_TLS_RESUME=0|1 (default 0: --tls-resumption off on both agents),
#      BENCH_PIN=split|none, BENCH_RELAY=auto|sockmap|splice|copy (both
#      agents' mesh.relay, default: the agent's default),
#      BENCH_BUSY_POLL=US (both agents' mesh.busyPoll, default off),
#      BENCH_TLS_RECORDS=auto|openssl (both agents' mesh.tlsRecords),
#      BENCH_TLS_EC=auto|provider (both agents' mesh.tlsEcMethods).
#      BENCH_PATHS="direct-same mesh-same" (a subset of the four paths).
# Root only. Everything is removed on exit.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"

DURATION=5
RUNS=3
JSON=""
CONNECTS=20000
POOL_SIZE=""
POOL_CMP=0
KERNEL_PATH=on
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	--connects) CONNECTS=$2; shift 2 ;;
	--tunnel-pool) POOL_SIZE=$2; shift 2 ;;
	--pool-compare) POOL_CMP=1; shift ;;
	--kernel-path) KERNEL_PATH=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "mesh.sh: unknown argument $1" ;;
	esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $DURATION -le 60 ]] || bench_die "--duration must be 1..60"
[[ $RUNS =~ ^[1-9][0-9]*$ && $RUNS -le 9 ]] || bench_die "--runs must be 1..9"
[[ $CONNECTS =~ ^[1-9][0-9]*$ ]] || bench_die "--connects must be a number"
[[ -z $POOL_SIZE || $POOL_SIZE =~ ^[0-9]+$ ]] || bench_die "--tunnel-pool must be a number"
[[ $KERNEL_PATH == on || $KERNEL_PATH == off ]] || bench_die "--kernel-path must be on or off"
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
# shellcheck disable=SC2034 # read by cluster.sh (mesh.kernelPath)
NM_KERNEL_PATH=false
[[ $KERNEL_PATH == on ]] && NM_KERNEL_PATH=true
# shellcheck disable=SC2034 # read by cluster.sh
NM_NO_TRAP=1
# shellcheck disable=SC2034 # read by cluster.sh
NM_BUILD=$BENCH_BUILD
# shellcheck source=../tests/integration/lib/cluster.sh
. "$BENCH_REPO/tests/integration/lib/cluster.sh"

LAT_PORT=11111 TPUT_PORT=5201 CONN_PORT=7000
# One service per port (a service here carries one port mapping); -r on
# node-2 (the echo pod), -l on node-1 (local-echo).
for spec in "bench-lat-r 198.19.1.1 $LAT_PORT app=echo" "bench-tput-r 198.19.1.2 $TPUT_PORT app=echo" \
	"bench-conn-r 198.19.1.3 $CONN_PORT app=echo" "bench-lat-l 198.19.2.1 $LAT_PORT app=echo-local" \
	"bench-tput-l 198.19.2.2 $TPUT_PORT app=echo-local" "bench-conn-l 198.19.2.3 $CONN_PORT app=echo-local"; do
	read -r name vip port sel <<<"$spec"
	# shellcheck disable=SC2034,SC2004 # an associative array of cluster.sh
	NM_SERVICES[$name]="$vip $port $port $sel"
	NM_SERVICE_ORDER+=("$name")
done

if [[ -n $POOL_SIZE ]]; then
	# shellcheck disable=SC2034 # read by cluster.sh
	NM_MESH_EXTRA="\"tunnelPool\": { \"size\": $POOL_SIZE }"
fi

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
# mesh_set FIELD JQ-ARGS...: one edit of the cluster file (named FIELD in
# the error), before any agent starts.
mesh_set() {
	local field=$1; shift
	jq "$@" "$NM_STATE/cluster.json" >"$TMP/cluster.json" &&
		cp "$TMP/cluster.json" "$NM_STATE/cluster.json" || bench_die "cannot set $field"
}
if [[ -n ${BENCH_RELAY:-} ]]; then
	mesh_set mesh.relay --arg m "$BENCH_RELAY" '.mesh.relay = $m'
fi
if [[ -n ${BENCH_TLS_RECORDS:-} ]]; then
	[[ $BENCH_TLS_RECORDS == auto || $BENCH_TLS_RECORDS == openssl ]] ||
		bench_die "BENCH_TLS_RECORDS is not auto or openssl: '$BENCH_TLS_RECORDS'"
	mesh_set mesh.tlsRecords --arg m "$BENCH_TLS_RECORDS" '.mesh.tlsRecords = $m'
fi
if [[ -n ${BENCH_TLS_EC:-} ]]; then
	[[ $BENCH_TLS_EC == auto || $BENCH_TLS_EC == provider ]] ||
		bench_die "BENCH_TLS_EC is not auto or provider: '$BENCH_TLS_EC'"
	mesh_set mesh.tlsEcMethods --arg m "$BENCH_TLS_EC" '.mesh.tlsEcMethods = $m'
fi
if [[ -n ${BENCH_BUSY_POLL:-} ]]; then
	[[ $BENCH_BUSY_POLL =~ ^[0-9]+$ ]] || bench_die "BENCH_BUSY_POLL is not a number: '$BENCH_BUSY_POLL'"
	mesh_set mesh.busyPoll --argjson us "$BENCH_BUSY_POLL" '.mesh.busyPoll = $us'
fi
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
read -r -a PATHS <<<"${BENCH_PATHS:-direct-cross mesh-cross direct-same mesh-same}"
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
# Which path carried mesh-same: node-1's count of kernel-path connections
# (agent.json, refreshed each second) after every run.
sleep 1.2
KP_FLOWS=$(jq -r '.paths.kernel_path.flows // 0' "/run/nodemesh/$(nm_instance 1)/agent.json" 2>/dev/null || echo 0)
bench_log "mesh: kernel path $KERNEL_PATH; node-1 counted $KP_FLOWS kernel-path connections"

# --------------------------------------------- conns/s with the pool off
# Same cluster, same servers: mesh.tunnelPool.size 0 through a live reload
# (agent.json says when both agents run without the pool), then mesh-cross
# and direct-cross conns/s again, alternating, RUNS times.
POOL_OFF_JSON=null
if ((POOL_CMP)); then
	jq '.mesh.tunnelPool = {size: 0}' "$NM_STATE/cluster.json" >"$NM_STATE/cluster.json.tmp" ||
		bench_die "cannot rewrite cluster.json"
	mv "$NM_STATE/cluster.json.tmp" "$NM_STATE/cluster.json"
	for ((i = 0; i < 100; i++)); do
		off=0
		for n in 1 2; do
			jq -e '.paths.tunnel_pool.active == false' "/run/nodemesh/$(nm_instance "$n")/agent.json" \
				>/dev/null 2>&1 && off=$((off + 1))
		done
		((off == 2)) && break
		sleep 0.1
	done
	((off == 2)) || bench_die "the agents did not reload with tunnelPool.size 0"
	OFF_M="" OFF_D=""
	for ((r = 1; r <= RUNS; r++)); do
		bench_log "mesh pool-off run $r/$RUNS"
		OFF_M+="$(m_conn mesh-cross) "
		sleep 0.5
		OFF_D+="$(m_conn direct-cross) "
		sleep 0.5
	done
	# shellcheck disable=SC2086
	om=$(bench_median $OFF_M) od=$(bench_median $OFF_D)
	# shellcheck disable=SC2086
	pm=$(bench_median ${R[mesh-cross.cps]}) pd=$(bench_median ${R[direct-cross.cps]})
	POOL_OFF_JSON=$(jq -n --argjson pm "$(bench_jnum "$pm")" --argjson pd "$(bench_jnum "$pd")" \
		--argjson om "$(bench_jnum "$om")" --argjson od "$(bench_jnum "$od")" \
		--argjson rp "$(bench_jnum "$(bench_ratio "$pm" "$pd")")" \
		--argjson ro "$(bench_jnum "$(bench_ratio "$om" "$od")")" \
		--argjson size "$(bench_jnum "${POOL_SIZE:-2}")" \
		'{pool_size: $size, pool: {mesh_cross_cps: $pm, direct_cross_cps: $pd, ratio: $rp},
		  off: {mesh_cross_cps: $om, direct_cross_cps: $od, ratio: $ro}}')
fi

# ------------------------------------------------------------ BPF hook cost
# Meshed-but-bypassed connect()s against unmeshed ones from the same netns
# (the client pod's), to addresses that are neither a service nor a
# workload, so connect4 does its whole lookup and lets them pass:
#   nopkt  198.18.99.1:9, given an "unreachable" route in the pod's netns
#          (ours): connect() fails right after the hook and no packet is
#          sent, so the syscall is CPU work only and the hook's share of it
#          stands out of the noise. This is the connect4 hook alone.
#   syn    198.18.1.1:9 (node-1's bridge address, no listener): a real SYN
#          and RST, so sockops runs too (it sees every meshed TCP socket);
#          noisier, since packet processing is in the syscall.
# Each round times N connects per mode (median of N, bpf_stats as they
# were: run-time accounting adds clock reads to every program run); the
# figure is the median over rounds of (meshed - unmeshed). One more meshed
# round per target with kernel.bpf_stats_enabled=1 (restored afterwards)
# gives the programs' own run_time_ns / run_cnt.
prog_of_link() { bpftool link show pinned "$1" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "prog") {print $(i + 1); exit}}'; }
prog_stats() { # PROG_ID -> "run_time_ns run_cnt"
	if [[ -n $1 ]]; then
		bpftool prog show id "$1" --json 2>/dev/null | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'
	else
		echo "0 0"
	fi
}
conntime() { # MODE DST -> median ns (or nothing)
	local ex=nm_outside_exec out
	[[ $1 == meshed ]] && ex=nm_pod_exec
	out=$($ex client timeout 60 "${PINT[@]}" "$NMB" conntime "$2" 9 "$CONNECTS" 2>&1 || true)
	[[ $out == median_ns=* ]] || bench_log "conntime $1 $2: $out"
	sed -n 's/^median_ns=\([0-9]*\) .*/\1/p' <<<"$out"
}
median_int() { printf '%s\n' "$@" | grep -E '^-?[0-9]+$' | sort -n | awk '{a[NR] = $1} END{if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
PINDIR=$NM_PIN_BASE/$(nm_instance 1)
C4=$(prog_of_link "$PINDIR/link_connect4" || true)
SO=$(prog_of_link "$PINDIR/link_sockops" || true)
nm_pod_info client
ip -n "$NM_P_NS" route add unreachable 198.18.99.0/24 || bench_die "cannot add the unreachable route in $NM_P_NS"
declare -A HT=([nopkt]=198.18.99.1 [syn]=198.18.1.1) HK=()
for t in nopkt syn; do
	un="" me="" diffs=""
	for ((r = 1; r <= 5; r++)); do
		u=$(conntime unmeshed "${HT[$t]}") m=$(conntime meshed "${HT[$t]}")
		un+="$u " me+="$m "
		if [[ -n $u && -n $m ]]; then diffs+="$((m - u)) "; fi
	done
	# shellcheck disable=SC2086
	HK[$t.un]=$(median_int $un) HK[$t.me]=$(median_int $me) HK[$t.added]=$(median_int $diffs)
	HK[$t.un_runs]=$un HK[$t.me_runs]=$me
done
BPF_STATS_OLD=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo "")
HOOK_STATS_OK=0
if [[ -n $C4 && -n $BPF_STATS_OLD ]] && sysctl -qw kernel.bpf_stats_enabled=1 2>/dev/null; then HOOK_STATS_OK=1; fi
per_run() { # T0 C0 T1 C1 -> ns per run
	if ((HOOK_STATS_OK && $4 > $2)); then awk -v t=$(($3 - $1)) -v c=$(($4 - $2)) 'BEGIN{printf "%.1f", t / c}'; else echo NA; fi
}
for t in nopkt syn; do
	read -r c4t0 c4c0 < <(prog_stats "$C4")
	read -r sot0 soc0 < <(prog_stats "$SO")
	HK[$t.me_stats]=$(conntime meshed "${HT[$t]}")
	read -r c4t1 c4c1 < <(prog_stats "$C4")
	read -r sot1 soc1 < <(prog_stats "$SO")
	HK[$t.c4_ns]=$(per_run "$c4t0" "$c4c0" "$c4t1" "$c4c1")
	HK[$t.so_ns]=$(per_run "$sot0" "$soc0" "$sot1" "$soc1")
	HK[$t.so_per_connect]=$(awk -v s=$((soc1 - soc0)) -v c=$((c4c1 - c4c0)) 'BEGIN{if (c > 0) printf "%.1f", s / c; else print "NA"}')
done
if [[ -n $BPF_STATS_OLD ]]; then sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_OLD" 2>/dev/null || true; BPF_STATS_OLD=""; fi
bench_log "hook: connect4 alone adds ${HK[nopkt.added]} ns (connect() ${HK[nopkt.un]} -> ${HK[nopkt.me]} ns; connect4 run ${HK[nopkt.c4_ns]} ns with stats on); with a SYN it adds ${HK[syn.added]} ns (${HK[syn.un]} -> ${HK[syn.me]} ns; sockops ${HK[syn.so_per_connect]} runs of ${HK[syn.so_ns]} ns)"
hook_json() { # T
	local t=$1
	jq -n --arg dst "${HT[$t]}" --argjson un "$(bench_jnum "${HK[$t.un]}")" --argjson me "$(bench_jnum "${HK[$t.me]}")" \
		--argjson added "$(bench_jnum "${HK[$t.added]}")" --argjson mest "$(bench_jnum "${HK[$t.me_stats]:-}")" \
		--argjson c4 "$(bench_jnum "${HK[$t.c4_ns]}")" --argjson so "$(bench_jnum "${HK[$t.so_ns]}")" \
		--argjson sopc "$(bench_jnum "${HK[$t.so_per_connect]}")" \
		--arg unr "${HK[$t.un_runs]}" --arg mer "${HK[$t.me_runs]}" \
		'{target: $dst, connect_median_ns_unmeshed: $un, connect_median_ns_meshed: $me, added_ns: $added,
		  connect_median_ns_meshed_bpf_stats_on: $mest, connect4_run_ns: $c4, sockops_run_ns: $so,
		  sockops_runs_per_connect: $sopc,
		  runs_unmeshed_ns: ($unr | split(" ") | map(select(. != "") | tonumber)),
		  runs_meshed_ns: ($mer | split(" ") | map(select(. != "") | tonumber))}'
}
HOOK_NOPKT=$(hook_json nopkt) HOOK_SYN=$(hook_json syn)

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
	--argjson connects "$CONNECTS" --argjson hnopkt "$HOOK_NOPKT" --argjson hsyn "$HOOK_SYN" \
	--argjson kp "$([[ $KERNEL_PATH == on ]] && echo true || echo false)" --argjson kpf "$(bench_jnum "$KP_FLOWS")" \
	'{meta: {duration_s: $dur, runs: $runs, pin: $pin, tls_resume: $resume,
	   kernel_path: $kp, kernel_path_flows_node1: $kpf,
	   topology: "2 nodes x 2 pods, netns + veth + bridge, cgroup v2; client pod on node-1"},
	  results: .,
	  agents: {rss_idle_kb: {"node-1": $rss1, "node-2": $rss2},
	           rss_after_kb: {"node-1": $rssa1, "node-2": $rssa2},
	           cpu_s_per_gb_mesh_cross: $cpugb,
	           cpu_basis: {ticks: $ticks, hz: $hz, bytes: $bytes, note: "both agents, utime+stime over every mesh-cross iperf3 -P1 run"}},
	  hook: {connects_per_run: $connects, rounds: 5,
	         added_ns: $hnopkt.added_ns, connect4_run_ns: $hnopkt.connect4_run_ns,
	         added_ns_with_syn: $hsyn.added_ns, sockops_run_ns: $hsyn.sockops_run_ns,
	         sockops_runs_per_connect: $hsyn.sockops_runs_per_connect,
	         method: "median over rounds of (meshed - unmeshed) connect() medians, bpf_stats off; run_ns from one more meshed round with bpf_stats on",
	         nopkt: $hnopkt, syn: $hsyn}}' >"$TMP/mesh.json"
if ((POOL_CMP)); then
	jq --argjson c "$POOL_OFF_JSON" '. + {tunnel_pool_compare: $c}' "$TMP/mesh.json" >"$TMP/mesh.json.1" &&
		mv "$TMP/mesh.json.1" "$TMP/mesh.json"
fi

if [[ -n $JSON ]]; then cp "$TMP/mesh.json" "$JSON"; else cat "$TMP/mesh.json"; fi
printf '%-13s %9s %9s %8s %8s %11s | %6s %6s %7s %7s %6s\n' path p50_us p99_us gbps_1 gbps_4 conns_per_s p50_x p99_x gbps1_x gbps4_x cps_x >&2
jq -r '.results[] | [.path, .p50_us, .p99_us, .gbps_1, .gbps_4, .conns_per_s, .ratio_vs_direct.p50, .ratio_vs_direct.p99, .ratio_vs_direct.gbps_1, .ratio_vs_direct.gbps_4, .ratio_vs_direct.conns_per_s] | map(. // "NA" | tostring) | @tsv' "$TMP/mesh.json" |
	while IFS=$'\t' read -r a b c d e f g h i j k; do
		printf '%-13s %9s %9s %8s %8s %11s | %6s %6s %7s %7s %6s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j" "$k" >&2
	done
if ((POOL_CMP)); then
	jq -r '.tunnel_pool_compare | "tunnel pool (size \(.pool_size)): mesh-cross conns/s \(.pool.mesh_cross_cps) = \(.pool.ratio)x direct; size 0: \(.off.mesh_cross_cps) = \(.off.ratio)x direct (\(.off.direct_cross_cps))"' \
		"$TMP/mesh.json" >&2
fi
