#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# busypoll.sh -- what mesh.busyPoll buys and costs on the hop (issue 14).
#
#   bench/busypoll.sh [--values "0 50"] [--duration S] [--runs N] [--json PATH]
#
# The kit's loopback hop (candidate-hop.sh: two nodemeshd, TLS 1.3 + NMTP
# between them, both pinned to CPU 1, sockperf on CPU 0). For each value of
# mesh.busyPoll (microseconds; 0 = off, the default) it starts the hop,
# runs sockperf ping-pong (64 bytes) for S seconds, N times, and prints per
# run the round-trip p50/p99 and the CPU the two agents used meanwhile
# (utime+stime from /proc, as a share of one core), then the medians, and
# direct (no hop) in the same run: client and server on CPU 0, and once
# more with the client on CPU 1 (what one cross-core wakeup costs here; the
# hop's round trip crosses cores four times). Each value's hop is started
# afresh. Output: one "BUSYPOLL value=... p50_us=... p99_us=...
# agents_cpu_pct=..." line per value (medians) after the per-run lines;
# --json writes the same figures (bench/run.sh puts them in its report).
# Ports 32100-32122 on 127.0.0.1 only; everything started here is stopped
# on exit.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"
KIT=${BENCH_KIT:-$BENCH_DIR/../../shared/bench}

VALUES="0 50"
DURATION=5
RUNS=3
JSON=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--values) VALUES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	-h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "busypoll.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
for v in $VALUES; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "busypoll.sh: --values: '$v' is not a number" >&2; exit 2; }
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $RUNS =~ ^[1-9][0-9]*$ ]] ||
	{ echo "busypoll.sh: --duration and --runs take positive integers" >&2; exit 2; }
for t in sockperf taskset jq; do
	command -v "$t" >/dev/null || { echo "busypoll.sh: $t missing (tools/install-deps.sh)" >&2; exit 1; }
done
[[ -x $KIT/certs.sh ]] || { echo "busypoll.sh: bench kit not found at $KIT (BENCH_KIT)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/nm-busypoll.XXXXXX)
SRV_PID="" HOP_PID=""
cleanup() {
	[[ -n $HOP_PID ]] && kill -TERM -- "-$HOP_PID" 2>/dev/null
	[[ -n $SRV_PID ]] && kill -TERM "$SRV_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

"$KIT/certs.sh" "$WORK/certs" >/dev/null
export BENCH_CERT_DIR=$WORK/certs BENCH_WORK_DIR=$WORK BENCH_PROXY_CPU=1
export BENCH_SRV_LAT=32100 BENCH_SRV_TPUT=32101 BENCH_SRV_CONN=32102
export BENCH_OUT_LAT=32110 BENCH_OUT_TPUT=32111 BENCH_OUT_CONN=32112
export BENCH_IN_LAT=32120 BENCH_IN_TPUT=32121 BENCH_IN_CONN=32122
taskset -c 0 sockperf server --tcp -i 127.0.0.1 -p "$BENCH_SRV_LAT" >"$WORK/sockperf-srv.log" 2>&1 &
SRV_PID=$!

cpu_ticks() { # PID... -> their utime+stime summed, clock ticks
	local p sum=0
	for p; do sum=$((sum + $(bench_cpu_ticks "$p"))); done
	echo "$sum"
}
ping_pong() { # PORT [CLIENT_CPU] -> "p50 p99" in µs
	local out
	out=$(taskset -c "${2:-0}" timeout $((DURATION + 20)) sockperf ping-pong --tcp -i 127.0.0.1 \
		-p "$1" -m 64 -t "$DURATION" --full-rtt 2>&1) || { echo "NA NA"; return; }
	echo "$(awk '/percentile 50.000 =/{print $NF}' <<<"$out") $(awk '/percentile 99.000 =/{print $NF}' <<<"$out")"
}

bench_wait_listen "$BENCH_SRV_LAT" || { echo "busypoll.sh: sockperf server did not listen" >&2; exit 1; }
hz=$(getconf CLK_TCK)
d50=() d99=()
for ((r = 0; r < RUNS; r++)); do
	read -r p50 p99 <<<"$(ping_pong "$BENCH_SRV_LAT")"
	d50+=("$p50") d99+=("$p99")
done
direct_p99=$(bench_median "${d99[@]}")
direct=$(bench_median "${d50[@]}")
echo "direct p50_us=$direct (runs: ${d50[*]})"
x50=()
for ((r = 0; r < RUNS; r++)); do
	read -r p50 _ <<<"$(ping_pong "$BENCH_SRV_LAT" 1)"
	x50+=("$p50")
done
cross=$(bench_median "${x50[@]}")
echo "direct_cross_core p50_us=$cross (client on CPU 1; runs: ${x50[*]})"
ROWS=()

for v in $VALUES; do
	name=nm-bp$v
	bp=()
	((v > 0)) && bp=(BENCH_BUSY_POLL="$v")
	setsid env BENCH_HOP_NAME="$name" "${bp[@]}" "$BENCH_DIR/candidate-hop.sh" \
		>"$WORK/$name.out" 2>&1 &
	HOP_PID=$!
	bench_wait_listen "$BENCH_OUT_LAT" && bench_wait_listen "$BENCH_IN_LAT" ||
		{ echo "busypoll.sh: hop with busyPoll $v did not start:" >&2; cat "$WORK/$name.out" >&2; exit 1; }
	# candidate-hop.sh writes the agents' pids once they run.
	for ((i = 0; i < 50; i++)); do
		[[ -s $WORK/$name-out.pid && -s $WORK/$name-in.pid ]] && break
		sleep 0.1
	done
	pids=$(cat "$WORK/$name-out.pid" "$WORK/$name-in.pid")
	# shellcheck disable=SC2086 # two pids
	mode=$(jq -c '.paths.busy_poll' \
		"/run/nodemesh/$(ls /run/nodemesh | grep -m1 "bench-$name-.*-out")/agent.json" 2>/dev/null || true)
	p50s=() p99s=() cpus=()
	for ((r = 0; r < RUNS; r++)); do
		# shellcheck disable=SC2086
		t0=$(cpu_ticks $pids) s0=$(date +%s%N)
		read -r p50 p99 <<<"$(ping_pong "$BENCH_OUT_LAT")"
		# shellcheck disable=SC2086
		t1=$(cpu_ticks $pids) s1=$(date +%s%N)
		cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v ns=$((s1 - s0)) 'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) }')
		echo "run value=$v p50_us=$p50 p99_us=$p99 agents_cpu_pct=$cpu"
		p50s+=("$p50") p99s+=("$p99") cpus+=("$cpu")
	done
	kill -TERM -- "-$HOP_PID" 2>/dev/null
	wait "$HOP_PID" 2>/dev/null || true
	HOP_PID=""
	for ((i = 0; i < 50; i++)); do bench_port_busy "$BENCH_OUT_LAT" || break; sleep 0.1; done
	m50=$(bench_median "${p50s[@]}") m99=$(bench_median "${p99s[@]}")
	mcpu=$(bench_median "${cpus[@]}") ratio50=$(bench_ratio "$m50" "$direct")
	echo "BUSYPOLL value=$v p50_us=$m50 p99_us=$m99 agents_cpu_pct=$mcpu" \
		"p50_vs_direct=${ratio50}x busy_poll=${mode:-?}"
	ROWS+=("$(jq -nc --argjson v "$v" --argjson p50 "$(bench_jnum "$m50")" \
		--argjson p99 "$(bench_jnum "$m99")" --argjson cpu "$(bench_jnum "$mcpu")" \
		--argjson x "$(bench_jnum "$ratio50")" \
		--argjson p99x "$(bench_jnum "$(bench_ratio "$m99" "$direct_p99")")" \
		--argjson path "${mode:-null}" \
		'{busy_poll_us: $v, p50_us: $p50, p99_us: $p99, agents_cpu_pct: $cpu,
		  p50_x: $x, p99_x: $p99x, path: $path}')")
done
if [[ -n $JSON ]]; then
	printf '%s\n' "${ROWS[@]}" | jq -s --argjson d "$(bench_jnum "$direct")" \
		--argjson d99 "$(bench_jnum "$direct_p99")" --argjson x "$(bench_jnum "$cross")" \
		--argjson dur "$DURATION" --argjson runs "$RUNS" \
		'{duration_s: $dur, runs: $runs, direct_p50_us: $d, direct_p99_us: $d99,
		  direct_cross_core_p50_us: $x, values: .}' >"$JSON"
fi
