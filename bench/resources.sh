#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# resources.sh -- what the nodemesh hop costs in memory and CPU, measured on
# a loopback candidate pair (bench/candidate-hop.sh: outbound + inbound
# nodemeshd with static forwards, the kit's certificates) in front of an
# echo server and an iperf3 server:
#
#   rss_idle_kb      VmRSS of each agent after start-up, before any traffic
#   hold             N idle proxied connections (N = 10,000, or fewer when the
#                    fd hard limit cannot hold 2 fds per flow in one agent):
#                    VmRSS of each agent with all N flows set up end to end
#                    (1 byte echoed on each) and idle; user-space bytes per
#                    connection = (RSS_N - RSS_idle) / N, per agent and summed
#   cpu_s_per_gb     utime+stime of both agents (/proc/PID/stat) per GB that
#                    iperf3 -P 1 moved through the hop
#
# Usage: resources.sh [--conns N] [--duration S] [--base-port P] [--json PATH]
# Env: BENCH_PIN=split|none (agents on CPU 1, tools on CPU 0, like the kit).
# TLS resumption stays at the agent's default (on): it only shortens the
# set-up of the N connections, not what an idle flow holds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=10000
DURATION=5
BASE=31200
JSON=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--conns) CONNS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--base-port) BASE=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "resources.sh: unknown argument $1" ;;
	esac
done
[[ $CONNS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ ]] || bench_die "--conns and --duration must be numbers"
bench_need iperf3 jq ss taskset timeout setsid gcc openssl
[[ -x $NODEMESHD ]] || bench_die "$NODEMESHD not built (run make)"
PIN=${BENCH_PIN:-split}
if [[ $PIN == split && $(nproc) -ge 2 ]]; then CPU_TOOLS=0; CPU_PROXY=1; else PIN=none; CPU_TOOLS=""; CPU_PROXY=""; fi

SRV_TPUT=$((BASE + 2)) SRV_CONN=$((BASE + 3))
OUTS=($((BASE + 11)) $((BASE + 12)) $((BASE + 13)))
INS=($((BASE + 16)) $((BASE + 17)) $((BASE + 18)))
for p in "$SRV_TPUT" "$SRV_CONN" "${OUTS[@]}" "${INS[@]}"; do
	bench_port_busy "$p" && bench_die "port 127.0.0.1:$p in use; pick another --base-port"
done

WORK=$(mktemp -d /tmp/nm-res.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bench_stop_all
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Every flow costs the outbound agent two fds (client + tunnel) and the
# inbound agent two (tunnel + server): lift the soft limit to the hard one
# (the agents inherit it) and size N to fit.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -Sn)
N=$CONNS
if [[ $NOFILE != unlimited ]] && ((2 * N + 64 > NOFILE)); then
	N=$(((NOFILE - 64) / 2))
	N=$((N / 100 * 100))
	bench_log "resources: fd limit $NOFILE (hard, and CAP_SYS_RESOURCE is needed to raise it) holds $N flows per agent, not $CONNS; bytes/connection is measured at $N"
fi
LIFE=$((N / 20 + 4 * DURATION + 240))

"$BENCH_KIT/certs.sh" "$WORK/certs" >/dev/null
bench_build_tools "$WORK/bin"
bench_start iperf3-srv "$WORK" "$CPU_TOOLS" "$LIFE" iperf3 -s -B 127.0.0.1 -p "$SRV_TPUT"
bench_start echo-srv "$WORK" "$CPU_TOOLS" "$LIFE" "$WORK/bin/nmbench" echo 127.0.0.1 "$SRV_CONN" "$LIFE"
if ! bench_wait_listen "$SRV_TPUT" 10 || ! bench_wait_listen "$SRV_CONN" 10; then bench_die "servers did not start"; fi
bench_start hop "$WORK" "" "$LIFE" env \
	BENCH_CERT_DIR="$WORK/certs" BENCH_WORK_DIR="$WORK" BENCH_PROXY_CPU="$CPU_PROXY" \
	BENCH_TLS_RESUME=1 BENCH_HOP_NAME=nodemesh-res BENCH_HOP_LIFETIME="$LIFE" \
	BENCH_OUT_LAT="${OUTS[0]}" BENCH_OUT_TPUT="${OUTS[1]}" BENCH_OUT_CONN="${OUTS[2]}" \
	BENCH_IN_LAT="${INS[0]}" BENCH_IN_TPUT="${INS[1]}" BENCH_IN_CONN="${INS[2]}" \
	BENCH_SRV_LAT="$SRV_CONN" BENCH_SRV_TPUT="$SRV_TPUT" BENCH_SRV_CONN="$SRV_CONN" \
	"$BENCH_DIR/candidate-hop.sh"
for p in "${OUTS[@]}" "${INS[@]}"; do
	bench_wait_listen "$p" 10 || { tail -n 20 "$WORK"/nodemesh-res-*.log >&2; bench_die "hop not listening on :$p"; }
done
PID_OUT=$(cat "$WORK/nodemesh-res-out.pid") PID_IN=$(cat "$WORK/nodemesh-res-in.pid")
[[ -d /proc/$PID_OUT && -d /proc/$PID_IN ]] || bench_die "agent pids not found"
sleep 1
IDLE_OUT=$(bench_rss_kb "$PID_OUT") IDLE_IN=$(bench_rss_kb "$PID_IN")
FD_IDLE_OUT=$(find "/proc/$PID_OUT/fd" -mindepth 1 | wc -l)
bench_log "resources: idle rss out=${IDLE_OUT} kB in=${IDLE_IN} kB"

# --- N idle connections
bench_start hold "$WORK" "$CPU_TOOLS" "$LIFE" "$WORK/bin/nmbench" hold 127.0.0.1 "${OUTS[2]}" "$N" "$LIFE"
HOLD_PG=$BENCH_LAST_PID
for ((i = 0; i < LIFE * 10; i++)); do
	grep -q '^ready' "$WORK/hold.log" 2>/dev/null && break
	kill -0 "$HOLD_PG" 2>/dev/null || break
	sleep 0.1
done
HOLD_LINE=$(grep '^ready' "$WORK/hold.log" || echo "ready held=0 failed=$N secs=NA")
HELD=$(sed -n 's/.*held=\([0-9]*\).*/\1/p' <<<"$HOLD_LINE")
SETUP_S=$(sed -n 's/.*secs=\([0-9.NA]*\).*/\1/p' <<<"$HOLD_LINE")
sleep 2 # let the agents settle: nothing moves, buffers go back to the pool
HOLD_OUT=$(bench_rss_kb "$PID_OUT") HOLD_IN=$(bench_rss_kb "$PID_IN")
FD_OUT=$(find "/proc/$PID_OUT/fd" -mindepth 1 | wc -l) FD_IN=$(find "/proc/$PID_IN/fd" -mindepth 1 | wc -l)
bench_log "resources: $HOLD_LINE; rss out=${HOLD_OUT} kB in=${HOLD_IN} kB; fds out=$FD_OUT in=$FD_IN"
bench_stop "$HOLD_PG"
for ((i = 0; i < 100; i++)); do
	(($(find "/proc/$PID_OUT/fd" -mindepth 1 | wc -l) <= FD_IDLE_OUT + 2)) && break
	sleep 0.1
done
sleep 1
AFTER_OUT=$(bench_rss_kb "$PID_OUT") AFTER_IN=$(bench_rss_kb "$PID_IN")
per_conn() { # RSS_N_KB RSS_IDLE_KB HELD -> bytes
	[[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ && ${3:-0} -gt 0 ]] || { echo NA; return; }
	awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{printf "%.0f", (a - b) * 1024 / n}'
}
BPC_OUT=$(per_conn "$HOLD_OUT" "$IDLE_OUT" "$HELD")
BPC_IN=$(per_conn "$HOLD_IN" "$IDLE_IN" "$HELD")
BPC_SUM=NA
[[ $BPC_OUT != NA && $BPC_IN != NA ]] && BPC_SUM=$((BPC_OUT + BPC_IN))

# --- CPU per GB through the hop
HZ=$(getconf CLK_TCK)
t0=$(( $(bench_cpu_ticks "$PID_OUT") + $(bench_cpu_ticks "$PID_IN") ))
o0=$(bench_cpu_ticks "$PID_OUT")
out=$( (if [[ -n $CPU_TOOLS ]]; then taskset -c "$CPU_TOOLS" timeout $((DURATION + 20)) iperf3 -c 127.0.0.1 -p "${OUTS[1]}" -P 1 -t "$DURATION" -J; else timeout $((DURATION + 20)) iperf3 -c 127.0.0.1 -p "${OUTS[1]}" -P 1 -t "$DURATION" -J; fi) 2>/dev/null || true)
t1=$(( $(bench_cpu_ticks "$PID_OUT") + $(bench_cpu_ticks "$PID_IN") ))
o1=$(bench_cpu_ticks "$PID_OUT")
BYTES=$(jq -r '.end.sum_received.bytes // empty' <<<"$out" 2>/dev/null || true)
GBPS=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' <<<"$out" 2>/dev/null || echo NA)
CPU_GB=NA CPU_GB_OUT=NA CPU_GB_IN=NA
if [[ $BYTES =~ ^[0-9]+$ && $BYTES -gt 0 ]]; then
	CPU_GB=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v b="$BYTES" 'BEGIN{printf "%.3f", (t / hz) / (b / 1e9)}')
	CPU_GB_OUT=$(awk -v t=$((o1 - o0)) -v hz="$HZ" -v b="$BYTES" 'BEGIN{printf "%.3f", (t / hz) / (b / 1e9)}')
	CPU_GB_IN=$(awk -v t=$((t1 - t0 - (o1 - o0))) -v hz="$HZ" -v b="$BYTES" 'BEGIN{printf "%.3f", (t / hz) / (b / 1e9)}')
fi
bench_log "resources: bytes/conn out=$BPC_OUT in=$BPC_IN sum=$BPC_SUM; cpu ${CPU_GB} s/GB (out $CPU_GB_OUT, in $CPU_GB_IN) at ${GBPS} Gbit/s"

EST10K=NA
if [[ $BPC_SUM != NA ]]; then
	EST10K=$(awk -v o="$IDLE_OUT" -v i="$IDLE_IN" -v bo="$BPC_OUT" -v bi="$BPC_IN" \
		'BEGIN{printf "{\"out\": %.0f, \"in\": %.0f}", o + bo * 10000 / 1024, i + bi * 10000 / 1024}')
fi
result=$(jq -n \
	--argjson io "$(bench_jnum "$IDLE_OUT")" --argjson ii "$(bench_jnum "$IDLE_IN")" \
	--argjson ho "$(bench_jnum "$HOLD_OUT")" --argjson hi "$(bench_jnum "$HOLD_IN")" \
	--argjson ao "$(bench_jnum "$AFTER_OUT")" --argjson ai "$(bench_jnum "$AFTER_IN")" \
	--argjson want "$CONNS" --argjson n "$N" --argjson held "${HELD:-0}" \
	--argjson setup "$(bench_jnum "$SETUP_S")" --argjson nofile "$(bench_jnum "$NOFILE")" \
	--argjson fdo "$FD_OUT" --argjson fdi "$FD_IN" \
	--argjson bo "$(bench_jnum "$BPC_OUT")" --argjson bi "$(bench_jnum "$BPC_IN")" --argjson bs "$(bench_jnum "$BPC_SUM")" \
	--argjson est "$(bench_jnum "$EST10K")" \
	--argjson cgb "$(bench_jnum "$CPU_GB")" --argjson cgo "$(bench_jnum "$CPU_GB_OUT")" --argjson cgi "$(bench_jnum "$CPU_GB_IN")" \
	--argjson bytes "$(bench_jnum "$BYTES")" --argjson gbps "$(bench_jnum "$GBPS")" --argjson dur "$DURATION" \
	--argjson ticks $((t1 - t0)) --argjson hz "$HZ" --arg pin "$PIN" \
	'{pin: $pin, rss_idle_kb: {out: $io, in: $ii},
	  hold: {requested: $want, target: $n, held: $held, setup_s: $setup, fd_limit: $nofile,
	         fds: {out: $fdo, in: $fdi}, rss_kb: {out: $ho, in: $hi},
	         rss_after_release_kb: {out: $ao, in: $ai},
	         bytes_per_conn: {out: $bo, in: $bi, sum: $bs},
	         rss_10k_kb_estimate: $est},
	  cpu: {iperf3_streams: 1, duration_s: $dur, gbps: $gbps, bytes: $bytes, ticks: $ticks, hz: $hz,
	        cpu_s_per_gb: $cgb, cpu_s_per_gb_out: $cgo, cpu_s_per_gb_in: $cgi}}')
if [[ -n $JSON ]]; then printf '%s\n' "$result" >"$JSON"; else printf '%s\n' "$result"; fi
[[ ${HELD:-0} -gt 0 ]]
