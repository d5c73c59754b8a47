# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# lib.sh - helpers shared by nodemesh's benchmark scripts (bench/*.sh).
# Source it; it defines functions and sets no traps. Every process started
# through bench_start runs in its own process group under `timeout`, and
# bench_stop_all kills those groups (the caller's trap calls it).

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
BENCH_REPO=${BENCH_REPO:-$(cd "$BENCH_DIR/.." && pwd)}
# The build directory (BENCH_BUILD=$(OUT) from make) and the agent; relative paths
# are taken from the repository root, like the Makefile's.
# (make passes NODEMESHD=$(OUT)/nodemeshd; its folder is then the build.)
if [[ -z ${BENCH_BUILD:-} && -n ${NODEMESHD:-} ]]; then
	BENCH_BUILD=$(dirname "$NODEMESHD")
fi
BENCH_BUILD=${BENCH_BUILD:-build}
[[ $BENCH_BUILD == /* ]] || BENCH_BUILD=$BENCH_REPO/$BENCH_BUILD
NODEMESHD=${NODEMESHD:-$BENCH_BUILD/nodemeshd}
[[ $NODEMESHD == /* ]] || NODEMESHD=$BENCH_REPO/$NODEMESHD
# The peer kit sits beside the clone (CI puts shared/ next to it).
BENCH_KIT=${BENCH_KIT:-$BENCH_REPO/../shared/bench}
BENCH_PGIDS=()

bench_log() { printf '[%(%H:%M:%S)T bench] %s\n' -1 "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# bench_need TOOL... : fail naming the Debian package when a tool is missing.
bench_need() {
	local t pkg
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 && continue
		case $t in
		jq) pkg=jq ;; sockperf) pkg=sockperf ;; iperf3) pkg=iperf3 ;;
		ss|ip) pkg=iproute2 ;; taskset|nsenter|setsid|prlimit) pkg=util-linux ;;
		bpftool) pkg=bpftool ;; openssl) pkg=openssl ;; gcc) pkg=gcc ;;
		*) pkg=coreutils ;;
		esac
		bench_die "required tool '$t' not found (tools/install-deps.sh, or apt-get install -y $pkg)"
	done
}

# bench_start NAME LOGDIR CPU LIFETIME_S CMD... : background, own process
# group, pinned to CPU (empty: not pinned), killed after LIFETIME_S. Output
# goes to LOGDIR/NAME.log. Sets BENCH_LAST_PID (the setsid'd wrapper).
bench_start() {
	local name=$1 dir=$2 cpu=$3 life=$4
	shift 4
	# shellcheck disable=SC2016 # expanded by the inner bash
	setsid timeout --kill-after=3 "$life" bash -c \
		'cpu=$1; shift; if [[ -n $cpu ]]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi' \
		_ "$cpu" "$@" >"$dir/$name.log" 2>&1 </dev/null &
	BENCH_LAST_PID=$!
	BENCH_PGIDS+=("$BENCH_LAST_PID")
}

# bench_stop PGID : TERM, short grace, KILL of one process group.
bench_stop() {
	local pg=$1 i
	kill -TERM -- "-$pg" 2>/dev/null || return 0
	for ((i = 0; i < 30; i++)); do
		kill -0 -- "-$pg" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$pg" 2>/dev/null || true
}

bench_stop_all() {
	local pg
	for pg in "${BENCH_PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
	sleep 0.5
	for pg in "${BENCH_PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
	BENCH_PGIDS=()
}

bench_port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# bench_wait_listen PORT [TIMEOUT_S] : loopback listener up?
bench_wait_listen() {
	local p=$1 t=${2:-10} i
	for ((i = 0; i < t * 10; i++)); do
		bench_port_busy "$p" && return 0
		sleep 0.1
	done
	return 1
}

# bench_median V... : median of the numeric values, NA when none.
bench_median() {
	local vals
	vals=$(printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g || true)
	[[ -n $vals ]] || { echo NA; return; }
	awk '{a[NR] = $1} END{if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}' <<<"$vals"
}

# bench_ratio A B : A/B with 3 decimals, NA when either is NA or B is 0.
bench_ratio() {
	[[ $1 != NA && $2 != NA && -n $1 && -n $2 ]] || { echo NA; return; }
	awk -v a="$1" -v b="$2" 'BEGIN{if (b == 0) print "NA"; else printf "%.3f\n", a / b}'
}

# JSON number or null.
bench_jnum() { if [[ -z $1 || $1 == NA ]]; then echo null; else echo "$1"; fi; }

# /proc figures of one process.
bench_rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo NA; }
# utime + stime in clock ticks (fields 14 and 15; comm may hold spaces).
bench_cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo NA; return; }
	s=${s##*) }
	awk '{print $12 + $13}' <<<"$s"
}

# bench_build_tools OUTDIR : compile the kit's connrate and our nmbench.
bench_build_tools() {
	local out=$1
	mkdir -p "$out"
	gcc -O2 -Wall -o "$out/connrate" "$BENCH_KIT/connrate.c" ||
		bench_die "cannot compile $BENCH_KIT/connrate.c"
	gcc -O2 -Wall -Wextra -std=gnu11 -o "$out/nmbench" "$BENCH_DIR/nmbench.c" ||
		bench_die "cannot compile bench/nmbench.c"
}

# bench_nmtp_preamble PORT : the NMTP v1 preamble (docs/protocol.md) asking
# for 127.0.0.1:PORT, as printf escapes: "NMT1", u16 length 15, DST TLV.
bench_nmtp_preamble() {
	printf '\\x4e\\x4d\\x54\\x31\\x00\\x0f\\x01\\x07\\x04\\x7f\\x00\\x00\\x01\\x%02x\\x%02x' \
		$(($1 >> 8)) $(($1 & 255))
}
