#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# telemetry.sh -- what telemetry costs, on the real mesh path of the
# simulated two-node cluster (tests/integration/lib/cluster.sh, as mesh.sh):
# client pod on node-1 -> service VIP -> agent -> mTLS -> agent node-2 ->
# echo pod. In one run:
#
#   scrape   p99 (and p50) round trip of sockperf ping-pong 64 B while an
#            iperf3 -P 1 throughput run at a fixed 300 Mbit/s (below the
#            path's capacity, so the CPUs are not saturated by the load
#            itself and the latency is the agents') loads the same path, without and
#            with a scrape loop of 20 requests/s on each agent's /metrics;
#            alternated RUNS times each. Reported: the median p99 of each,
#            their difference, and the run's noise (max - min of the
#            unscraped p99s): the scrape is "within noise" when the
#            difference is not larger than that.
#   cost     iperf3 -P 1 Gbit/s and sequential new connections/s with
#            telemetry.sockStats and flowLog "full" (to a file) on, and with
#            both off; configurations alternated RUNS times (the agents are
#            restarted with each), medians and on/off ratios.
#
# Usage: telemetry.sh [--duration S] [--runs N] [--json PATH]
# Env: BENCH_PIN=split|none (tools and scrapers on CPU 0, agents on CPU 1),
#      BENCH_TLS_RESUME=0|1. Root only. Everything is removed on exit.
# Prints one "telemetry:" summary line per figure and writes JSON with
# --json. Not a test: nothing is asserted (bench/smoke.sh checks the shape).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"

DURATION=5
RUNS=3
JSON=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "telemetry.sh: unknown argument $1" ;;
	esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $DURATION -le 60 ]] || bench_die "--duration must be 1..60"
[[ $RUNS =~ ^[1-9][0-9]*$ && $RUNS -le 9 ]] || bench_die "--runs must be 1..9"
[[ $(id -u) -eq 0 ]] || bench_die "telemetry.sh needs root (namespaces, cgroups, BPF)"
bench_need sockperf iperf3 jq ip nsenter taskset timeout gcc curl
PY=/usr/bin/python3
[[ -x $PY ]] || bench_die "$PY not found"
RESUME_ARG=off
[[ ${BENCH_TLS_RESUME:-0} == 1 ]] && RESUME_ARG=on
PIN=${BENCH_PIN:-split}
if [[ $PIN == split && $(nproc) -ge 2 ]]; then CPU_TOOLS=0; CPU_AGENT=1; else PIN=none; CPU_TOOLS=""; CPU_AGENT=""; fi
PINT=()
[[ -n $CPU_TOOLS ]] && PINT=(taskset -c "$CPU_TOOLS")
LIFE=$((RUNS * 6 * (DURATION + 20) + 300))

NM_AGENT_LOG_LEVEL=warn
# shellcheck disable=SC2034 # read by cluster.sh
NM_NO_TRAP=1
# shellcheck disable=SC2034 # read by cluster.sh
NM_BUILD=$BENCH_BUILD
# shellcheck source=../tests/integration/lib/cluster.sh
. "$BENCH_REPO/tests/integration/lib/cluster.sh"

LAT_PORT=11111 TPUT_PORT=5201 CONN_PORT=7000
LAT_VIP=198.19.1.1 TPUT_VIP=198.19.1.2 CONN_VIP=198.19.1.3
for spec in "bench-lat-r $LAT_VIP $LAT_PORT" "bench-tput-r $TPUT_VIP $TPUT_PORT" \
	"bench-conn-r $CONN_VIP $CONN_PORT"; do
	read -r name vip port <<<"$spec"
	# shellcheck disable=SC2034,SC2004 # an associative array of cluster.sh
	NM_SERVICES[$name]="$vip $port $port app=echo"
	NM_SERVICE_ORDER+=("$name")
done

TMP=$(mktemp -d /tmp/nm-telemetry.XXXXXX)
SCRAPERS=()
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM HUP
	for p in "${SCRAPERS[@]}"; do kill "$p" 2>/dev/null || true; done
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
BASE_JSON=$TMP/cluster-base.json
cp "$NM_STATE/cluster.json" "$BASE_JSON"

# set_config on|off: the cluster file with telemetry on (sockStats, flow
# log "full" into $TMP) or off.
set_config() {
	"$PY" - "$BASE_JSON" "$NM_STATE/cluster.json" "$1" "$TMP/flows.log" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
on = sys.argv[3] == "on"
c["telemetry"] = {"sockStats": on,
                  "flowLog": {"mode": "full" if on else "off", "file": sys.argv[4],
                              "maxBytes": 64 << 20, "keep": 1}}
json.dump(c, open(sys.argv[2], "w"), indent=1)
PYEOF
}

# As mesh.sh's: a warn-level agent never prints msg="ready"; wait for its
# run-state file, then pin it.
AGENT_PIDS=()
agent_start() { # N
	local n=$1 log cg ns pid i
	log=$(nm_agent_log "$n")
	cg=$NM_CG/agent-$n
	ns=$(nm_node_ns "$n")
	rm -f "/run/nodemesh/$(nm_instance "$n")/agent.json"
	(
		echo "$BASHPID" >"$cg/cgroup.procs" || exit 126
		exec nsenter --net="/run/netns/$ns" -- timeout -k 3 "$LIFE" "$NODEMESHD" \
			--config "$NM_STATE/cluster.json" --node "node-$n" \
			--instance "$(nm_instance "$n")" --log-level "$NM_AGENT_LOG_LEVEL" \
			--tls-resumption "$RESUME_ARG"
	) >>"$log" 2>&1 &
	pid=$!
	nm_env_set "NM_AGENT_PID_$n" "$pid"
	nm_env_add NM_AGENT_PIDS "$pid"
	for ((i = 0; i < 200; i++)); do
		[[ -s /run/nodemesh/$(nm_instance "$n")/agent.json ]] && break
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; return 1; }
		sleep 0.05
	done
	[[ -s /run/nodemesh/$(nm_instance "$n")/agent.json ]] || { tail -n 20 "$log" >&2; return 1; }
	local child
	child=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
	[[ -n $child ]] || return 1
	[[ -n $CPU_AGENT ]] && taskset -a -p -c "$CPU_AGENT" "$child" >/dev/null
	AGENT_PIDS[$n]=$child
}
agents_restart() { # on|off
	local n
	for n in 1 2; do nm_agent_stop "$n" 5; done
	set_config "$1"
	for n in 1 2; do agent_start "$n" || bench_die "agent node-$n did not start ($1)"; done
	# The path carries a connection before it is measured.
	for n in $(seq 50); do
		nm_pod_exec client timeout 5 "$NMB" connrate "$CONN_VIP" "$CONN_PORT" 0.2 2>/dev/null |
			grep -q ' err=0 ' && return 0
		sleep 0.1
	done
	bench_die "the mesh path does not work after restarting the agents ($1)"
}

nm_pod_spawn echo sockperf-echo timeout -k 3 "$LIFE" "${PINT[@]}" sockperf server --tcp -i 0.0.0.0 -p "$LAT_PORT"
nm_pod_spawn echo iperf3-echo timeout -k 3 "$LIFE" "${PINT[@]}" iperf3 -s -p "$TPUT_PORT"
nm_pod_spawn echo connecho-echo timeout -k 3 "$LIFE" "${PINT[@]}" "$NMB" echo 0.0.0.0 "$CONN_PORT" "$LIFE"
nm_pod_info echo
for p in "$LAT_PORT" "$TPUT_PORT" "$CONN_PORT"; do
	nm_wait_listen "$NM_P_NS" "$p" 10 || bench_die "server on echo:$p did not start"
done

tool() { nm_pod_exec client timeout $((DURATION + 20)) "${PINT[@]}" "$@"; }
m_lat() { # -> "p50 p99"
	local out
	if out=$(tool sockperf ping-pong --tcp -i "$LAT_VIP" -p "$LAT_PORT" -m 64 -t "$DURATION" --full-rtt 2>&1); then
		grep -q 'percentile 99.000 =' <<<"$out" || bench_log "sockperf printed no p99: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		echo "$(awk '/percentile 50.000 =/{print $NF}' <<<"$out" | grep . || echo NA) $(awk '/percentile 99.000 =/{print $NF}' <<<"$out" | grep . || echo NA)"
	else
		bench_log "sockperf failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
		echo "NA NA"
	fi
}
m_tput() { # SECONDS -> gbps
	local out v
	if out=$(nm_pod_exec client timeout $(($1 + 20)) "${PINT[@]}" iperf3 -c "$TPUT_VIP" -p "$TPUT_PORT" -P 1 -t "$1" -J 2>/dev/null); then
		v=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' <<<"$out" 2>/dev/null || true)
		[[ $v =~ ^[0-9.]+$ ]] && { echo "$v"; return; }
	fi
	bench_log "iperf3 failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null | head -c 200)"
	echo NA
}
m_conn() {
	local out v
	out=$(tool "$NMB" connrate "$CONN_VIP" "$CONN_PORT" "$DURATION" 2>&1) || true
	v=$(sed -n 's/^conns_per_s=\([0-9.]*\) .*/\1/p' <<<"$out")
	[[ $out == *" err=0 "* ]] || bench_log "connrate: $out"
	echo "${v:-NA}"
}

# scrape_start SECONDS: a loop of 20 requests/s on each agent's /metrics
# (in its node's netns, CPU of the tools); counts go to $TMP/scrapes-N.
SCRAPE='import sys, time, urllib.request
url, secs, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
n = bad = size = 0
t0 = time.monotonic()
while time.monotonic() - t0 < secs:
    t = t0 + n * 0.05
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
    try:
        size = len(urllib.request.urlopen(url, timeout=2).read())
    except Exception:
        bad += 1
    n += 1
open(out, "w").write("%d %d %d %.3f\n" % (n, bad, size, time.monotonic() - t0))'
scrape_start() {
	local n
	SCRAPERS=()
	for n in 1 2; do
		rm -f "$TMP/scrapes-$n"
		nm_node_exec "$n" timeout $(($1 + 10)) "${PINT[@]}" "$PY" -c "$SCRAPE" \
			"http://${NM_NODE_ADDR[$n]}:15020/metrics" "$1" "$TMP/scrapes-$n" &
		SCRAPERS+=($!)
	done
}
scrape_wait() {
	local p
	for p in "${SCRAPERS[@]}"; do wait "$p" || true; done
	SCRAPERS=()
}

# ------------------------------------------------------------- scrape part
agents_restart on
bench_log "telemetry: cluster $NM_RUN up; ${DURATION}s x $RUNS runs; pin=$PIN"
# One iperf3 run covers every latency run of this part.
LOAD_S=$((RUNS * 2 * (DURATION + 2) + 4))
nm_pod_exec client timeout $((LOAD_S + 20)) "${PINT[@]}" iperf3 -c "$TPUT_VIP" -p "$TPUT_PORT" -P 1 \
	-b 300M -t "$LOAD_S" -J >"$TMP/load.json" 2>/dev/null &
LOAD_PID=$!
sleep 2
NS_P99="" NS_P50="" S_P99="" S_P50="" SCRAPES="" SCRAPE_BAD=0 METRICS_BYTES=NA
for ((r = 1; r <= RUNS; r++)); do
	bench_log "telemetry scrape run $r/$RUNS: without scraping"
	read -r a b < <(m_lat)
	NS_P50+="$a " NS_P99+="$b "
	bench_log "telemetry scrape run $r/$RUNS: scraping 20/s per agent"
	scrape_start $((DURATION + 1))
	read -r a b < <(m_lat)
	scrape_wait
	S_P50+="$a " S_P99+="$b "
	for n in 1 2; do
		read -r cnt bad size secs <"$TMP/scrapes-$n" || continue
		SCRAPES+="$(awk -v c="$cnt" -v s="$secs" 'BEGIN{printf "%.1f", c / s}') "
		SCRAPE_BAD=$((SCRAPE_BAD + bad))
		METRICS_BYTES=$size
	done
done
wait "$LOAD_PID" || true
LOAD_GBPS=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' "$TMP/load.json" 2>/dev/null || echo NA)

# --------------------------------------------------------------- cost part
ON_G="" ON_C="" OFF_G="" OFF_C=""
for ((r = 1; r <= RUNS; r++)); do
	for cfg in off on; do
		agents_restart "$cfg"
		bench_log "telemetry cost run $r/$RUNS: sockStats+flowLog $cfg"
		g=$(m_tput "$DURATION")
		sleep 0.5
		c=$(m_conn)
		if [[ $cfg == on ]]; then ON_G+="$g " ON_C+="$c "; else OFF_G+="$g " OFF_C+="$c "; fi
	done
done
FLOW_RECORDS=$(wc -l <"$TMP/flows.log" 2>/dev/null || echo NA)

# ------------------------------------------------------------------ report
# shellcheck disable=SC2086
{
	M_NS99=$(bench_median $NS_P99) M_S99=$(bench_median $S_P99)
	M_NS50=$(bench_median $NS_P50) M_S50=$(bench_median $S_P50)
	M_ONG=$(bench_median $ON_G) M_OFFG=$(bench_median $OFF_G)
	M_ONC=$(bench_median $ON_C) M_OFFC=$(bench_median $OFF_C)
	M_RATE=$(bench_median $SCRAPES)
}
NOISE=$(printf '%s\n' $NS_P99 | grep -E '^[0-9.]+$' | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR) printf "%.3f", hi - lo; else print "NA"}')
DIFF=NA WITHIN=null
if [[ $M_S99 != NA && $M_NS99 != NA ]]; then
	DIFF=$(awk -v a="$M_S99" -v b="$M_NS99" 'BEGIN{printf "%.3f", a - b}')
	[[ $NOISE != NA ]] && WITHIN=$(awk -v d="$DIFF" -v n="$NOISE" 'BEGIN{print (d <= n) ? "true" : "false"}')
fi
G_RATIO=$(bench_ratio "$M_ONG" "$M_OFFG") C_RATIO=$(bench_ratio "$M_ONC" "$M_OFFC")
echo "telemetry: p99_us no-scrape=$M_NS99 [${NS_P99% }] scrape-20/s=$M_S99 [${S_P99% }] diff=$DIFF noise=$NOISE within_noise=$WITHIN (p50 $M_NS50 vs $M_S50; load iperf3 -P1 ${LOAD_GBPS} Gbit/s; scrapes/s per agent ${M_RATE}, failed $SCRAPE_BAD, /metrics ${METRICS_BYTES} B)"
echo "telemetry: gbps_1 on=$M_ONG [${ON_G% }] off=$M_OFFG [${OFF_G% }] on/off=$G_RATIO"
echo "telemetry: conns_per_s on=$M_ONC [${ON_C% }] off=$M_OFFC [${OFF_C% }] on/off=$C_RATIO (flow log records written: $FLOW_RECORDS)"
if [[ -n $JSON ]]; then
	jn() { bench_jnum "$1"; }
	arr() { printf '%s\n' $1 | jq -R 'tonumber? // null' | jq -s -c .; }
	jq -n --argjson d "$DURATION" --argjson runs "$RUNS" --arg pin "$PIN" \
		--argjson ns99 "$(jn "$M_NS99")" --argjson s99 "$(jn "$M_S99")" \
		--argjson ns50 "$(jn "$M_NS50")" --argjson s50 "$(jn "$M_S50")" \
		--argjson diff "$(jn "$DIFF")" --argjson noise "$(jn "$NOISE")" --argjson within "$WITHIN" \
		--argjson ns99r "$(arr "$NS_P99")" --argjson s99r "$(arr "$S_P99")" \
		--argjson rate "$(jn "$M_RATE")" --argjson bad "$SCRAPE_BAD" --argjson mbytes "$(jn "$METRICS_BYTES")" \
		--argjson load "$(jn "$LOAD_GBPS")" \
		--argjson ong "$(jn "$M_ONG")" --argjson offg "$(jn "$M_OFFG")" --argjson gr "$(jn "$G_RATIO")" \
		--argjson onc "$(jn "$M_ONC")" --argjson offc "$(jn "$M_OFFC")" --argjson cr "$(jn "$C_RATIO")" \
		--argjson ongr "$(arr "$ON_G")" --argjson offgr "$(arr "$OFF_G")" \
		--argjson oncr "$(arr "$ON_C")" --argjson offcr "$(arr "$OFF_C")" \
		--argjson records "$(jn "$FLOW_RECORDS")" '
		{duration_s: $d, runs: $runs, pin: $pin,
		 scrape: {p99_us: {no_scrape: $ns99, scrape: $s99, diff: $diff, noise: $noise,
		                   within_noise: $within, runs_no_scrape: $ns99r, runs_scrape: $s99r},
		          p50_us: {no_scrape: $ns50, scrape: $s50},
		          scrapes_per_s_per_agent: $rate, scrapes_failed: $bad, metrics_bytes: $mbytes,
		          load_gbps_1: $load},
		 cost: {gbps_1: {on: $ong, off: $offg, ratio: $gr, runs_on: $ongr, runs_off: $offgr},
		        conns_per_s: {on: $onc, off: $offc, ratio: $cr, runs_on: $oncr, runs_off: $offcr},
		        flow_log_records: $records}}' >"$JSON"
fi
