#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# handshakes.sh -- new connections per second through the nodemesh hop
# (bench/candidate-hop.sh: two agents, static forwards, TLS 1.3 + NMTP on
# loopback) with full handshakes and with resumption, in one run, and with
# --profile where the agents' CPU goes in OpenSSL (perf, DWARF call
# graphs): session and certificate decoding with resumption, and the parts
# of a full handshake.
#
#   bench/handshakes.sh [--seconds N] [--profile]
#
# Uses the kit's certs.sh and connrate client (../shared/bench, BENCH_KIT=
# elsewhere); the agents run on CPU 1, the client and echo server on CPU 0,
# as in the kit's split pinning. Prints one line per mode:
#   mode=full conns_per_s=<f>          mode=resumed conns_per_s=<f>
#   ratio resumed/full=<f>
# and with --profile, for the resumed mode (inbound agent) and for full
# handshakes (both agents), the share of CPU under each function named:
#   profile inbound (resumed) d2i_SSL_SESSION=<pct>% d2i_X509=<pct>%
#   profile both agents (full) ASN1_item_d2i_ex=<pct>% ...
# Ports 27101-27303 on 127.0.0.1. Not a test: nothing is asserted.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
KIT=${BENCH_KIT:-$REPO/../shared/bench}
SECS=10 PROFILE=0
while (($#)); do
	case $1 in
	--seconds) SECS=$2; shift 2 ;;
	--profile) PROFILE=1; shift ;;
	*) echo "usage: $0 [--seconds N] [--profile]" >&2; exit 2 ;;
	esac
done
[[ -x $REPO/${OUT:-build}/nodemeshd ]] || { echo "handshakes: build nodemeshd first (make)" >&2; exit 1; }
[[ -f $KIT/connrate.c && -f $KIT/certs.sh ]] || { echo "handshakes: the bench kit is not at $KIT" >&2; exit 1; }
((PROFILE)) && ! command -v perf >/dev/null && { echo "handshakes: --profile needs perf (linux-perf)" >&2; exit 1; }

W=$(mktemp -d /tmp/nm-handshakes.XXXXXX)
SRV="" HOP=""
cleanup() {
	[[ -n $HOP ]] && kill -- "-$HOP" 2>/dev/null
	[[ -n $SRV ]] && kill "$SRV" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
[[ ${NM_KEEP:-0} == 1 ]] && trap - EXIT
bash "$KIT/certs.sh" "$W/certs" >/dev/null || exit 1
gcc -O2 -o "$W/connrate" "$KIT/connrate.c" || exit 1
export NODEMESHD=$REPO/${OUT:-build}/nodemeshd BENCH_CERT_DIR=$W/certs BENCH_PROXY_CPU=1
export BENCH_OUT_LAT=27101 BENCH_OUT_TPUT=27102 BENCH_OUT_CONN=27103
export BENCH_IN_LAT=27201 BENCH_IN_TPUT=27202 BENCH_IN_CONN=27203
export BENCH_SRV_LAT=27301 BENCH_SRV_TPUT=27302 BENCH_SRV_CONN=27303
taskset -c 0 "$W/connrate" server "$BENCH_SRV_CONN" $((4 * SECS + 120)) &
SRV=$!

# run MODE RESUME: one hop, a warm-up connection, SECS of connrate.
run() {
	local mode=$1 dir=$W/$1 out inpid perfpid=""
	mkdir -p "$dir"
	BENCH_WORK_DIR=$dir BENCH_TLS_RESUME=$2 setsid bash "$HERE/candidate-hop.sh" >"$dir/hop.log" 2>&1 &
	HOP=$!
	for _ in $(seq 100); do
		[[ -s $dir/nodemesh-in.pid ]] && "$W/connrate" client "$BENCH_OUT_CONN" 0.2 >/dev/null 2>&1 && break
		sleep 0.1
	done
	inpid=$(cat "$dir/nodemesh-in.pid" 2>/dev/null)
	if [[ $mode == profiled* ]]; then
		[[ $mode == profiled-full ]] && inpid+=",$(cat "$dir/nodemesh-out.pid")"
		perf record -F 499 --call-graph dwarf,16384 -o "$dir/perf.data" -p "$inpid" \
			-- sleep "$SECS" >"$dir/perf.log" 2>&1 &
		perfpid=$!
	fi
	out=$(taskset -c 0 "$W/connrate" client "$BENCH_OUT_CONN" "$SECS" 2>&1)
	[[ -n $perfpid ]] && wait "$perfpid"
	echo "mode=$mode $(grep -o 'conns_per_s=[0-9.]*' <<<"$out") $(grep -o 'err=[0-9]*' <<<"$out")"
	kill -- "-$HOP" 2>/dev/null
	wait "$HOP" 2>/dev/null
	HOP=""
}
full=$(run full 0)
echo "$full"
resumed=$(run resumed 1)
echo "$resumed"
f=${full#*conns_per_s=} r=${resumed#*conns_per_s=}
awk -v f="${f%% *}" -v r="${r%% *}" 'BEGIN { if (f > 0) printf "ratio resumed/full=%.2f\n", r / f }'
# prof_line DIR LABEL FUNCTION...: each function's share of the profiled
# agents' CPU with what it calls (perf --children).
prof_line() {
	local rep fn pct line=$2
	rep=$(perf report -i "$1/perf.data" --children --sort symbol --stdio 2>/dev/null | grep -v '^ *|')
	shift 2
	for fn; do
		pct=$(awk -v fn="$fn" '$3 == "[.]" && $4 == fn { print $1; exit }' <<<"$rep")
		line+=" $fn=${pct:-0%}"
	done
	echo "$line"
}
if ((PROFILE)); then
	# More runs under perf, so the figures above are not slowed by it.
	run profiled 1 >/dev/null
	prof_line "$W/profiled" "profile inbound (resumed)" d2i_SSL_SESSION d2i_X509
	# Full handshakes, both agents: what a new connection's CPU goes to
	# (certificate decoding, OpenSSL 3.0's decoder set-up inside it, chain
	# verification, the EC arithmetic of signatures and key exchange).
	run profiled-full 0 >/dev/null
	prof_line "$W/profiled-full" "profile both agents (full)" ASN1_item_d2i_ex \
		OSSL_DECODER_CTX_new_for_pkey X509_verify_cert EVP_DigestVerifyFinal \
		EVP_DigestSignFinal EC_POINT_mul EVP_PKEY_generate
fi
