#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# srcaddr.sh -- what source preservation costs: sequential new connections
# per second (bench/nmbench connrate) from the client pod, cross-node (echo
# on node-2 by pod address) and same-node (local-echo), with
# mesh.preserveSourceAddress on and off, rounds interleaved so that a loaded
# machine hurts both alike. Pods are laid out routed (NM_POD_NET=routed) so
# that same-node flows are preserved too. Prints one line per measurement and
# the median per (mode, path).
#
# Usage: bench/srcaddr.sh [--rounds N] [--seconds S]   (root)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=3
SECS=5
while [[ $# -gt 0 ]]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	*) echo "srcaddr.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9]$ && $SECS =~ ^[1-9][0-9]?$ ]] || { echo "srcaddr.sh: --rounds 1..9, --seconds 1..99" >&2; exit 2; }
. "$BENCH_DIR/../tests/integration/lib/cluster.sh"
NM_AGENT_LOG_LEVEL=info
NM_POD_NET=routed
nm_cluster_init
TMP=$NM_STATE/bench
mkdir -p "$TMP"
gcc -O2 -Wall -Wextra -std=gnu11 -o "$TMP/nmbench" "$BENCH_DIR/nmbench.c"
nm_cluster_up >/dev/null
cfg=$NM_STATE/cluster.json
declare -A R
for ((r = 0; r < ROUNDS; r++)); do
	for mode in on off; do
		v=true
		[[ $mode == off ]] && v=false
		jq --argjson v "$v" '.mesh.preserveSourceAddress = $v' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
		nm_agent_stop 1
		nm_agent_stop 2
		nm_agent_start 1 >/dev/null
		nm_agent_start 2 >/dev/null
		for p in "cross $(nm_pod_ip echo)" "same $(nm_pod_ip local-echo)"; do
			read -r path ip <<<"$p"
			out=$(nm_pod_exec client "$TMP/nmbench" connrate "$ip" 8080 "$SECS" 2>&1)
			cps=$(sed -n 's/^conns_per_s=\([0-9.]*\) .*/\1/p' <<<"$out")
			[[ $out == *" err=0 "* ]] || echo "warning: $mode $path: $out" >&2
			echo "round=$r preserve=$mode path=$path $out"
			R[$mode.$path]+="${cps:-0} "
		done
	done
done
for mode in on off; do
	for path in cross same; do
		# shellcheck disable=SC2086
		med=$(printf '%s\n' ${R[$mode.$path]} | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
		echo "median preserve=$mode path=$path conns_per_s=$med"
	done
done
