#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# handshakes.sh -- new connections per second through the nodemesh hop
# (bench/candidate-hop.sh: two agents, static forwards, TLS 1.3 + NMTP on
# loopback, the tunnel pool at its default) with full handshakes and with
# resumption, in one run, beside direct connections, and what bounds them:
# the agents' CPU per connection and the part of it inside OpenSSL's
# handshake steps (nodemesh_tls_handshake_cpu_seconds_total); with
# --profile also where that CPU goes in OpenSSL (perf, DWARF call graphs).
#
#   bench/handshakes.sh [--seconds N] [--profile] [--json PATH]
#
# Uses the kit's certs.sh and connrate client (../shared/bench, BENCH_KIT=
# elsewhere); the agents run on CPU 1, the client and echo server on CPU 0,
# as in the kit's split pinning. connrate is sequential (connect, 1 byte
# each way, close), so with the pool refilling on the agents' core the
# rate is what that core can do per connection. Prints one line per mode:
#   mode=direct conns_per_s=<f>
#   mode=full conns_per_s=<f> x_direct=<f> core_busy=<pct>%
#     agents_us_per_conn=<f> handshake_us_per_conn=<f> handshake_share=<pct>%
#     ceiling_handshakes_only=<f>/s (<f>x direct)
#   mode=resumed ... (the same fields)
#   ratio resumed/full=<f>
# ceiling_handshakes_only is 1 s over the handshake CPU of one connection:
# the rate the agents' core could reach if nothing but the handshakes cost
# anything. With --profile, for resumed and for full handshakes (both
# agents each time), the share of CPU under each function named:
#   profile both agents (resumed) nm_tls_handshake_step=<pct>% ...
#   profile both agents (full) ASN1_item_d2i_ex=<pct>% ...
# --json writes the same figures (bench/run.sh puts them in its report).
# Ports 27100-27303 on 127.0.0.1. Not a test: nothing is asserted.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
KIT=${BENCH_KIT:-$REPO/../shared/bench}
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
SECS=10 PROFILE=0 JSON=""
while (($#)); do
	case $1 in
	--seconds) SECS=$2; shift 2 ;;
	--profile) PROFILE=1; shift ;;
	--json) JSON=$2; shift 2 ;;
	*) echo "usage: $0 [--seconds N] [--profile] [--json PATH]" >&2; exit 2 ;;
	esac
done
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "handshakes: --seconds must be a positive integer" >&2; exit 2; }
command -v curl >/dev/null || { echo "handshakes: needs curl (the agents' /metrics)" >&2; exit 1; }
[[ -x $NODEMESHD ]] || { echo "handshakes: no agent at $NODEMESHD (make, or NODEMESHD=)" >&2; exit 1; }
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
export NODEMESHD BENCH_CERT_DIR=$W/certs BENCH_PROXY_CPU=1
export BENCH_OUT_LAT=27101 BENCH_OUT_TPUT=27102 BENCH_OUT_CONN=27103
export BENCH_IN_LAT=27201 BENCH_IN_TPUT=27202 BENCH_IN_CONN=27203
export BENCH_SRV_LAT=27301 BENCH_SRV_TPUT=27302 BENCH_SRV_CONN=27303
taskset -c 0 "$W/connrate" server "$BENCH_SRV_CONN" $((4 * SECS + 120)) &
SRV=$!

HZ=$(getconf CLK_TCK)
# CPU 1's busy and total ticks (/proc/stat: user nice system idle iowait irq softirq steal).
core_ticks() { awk '$1 == "cpu1" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
# agent_figures DIR: "<cpu ticks> <handshake CPU s> <handshakes>" of both agents.
agent_figures() {
	local dir=$1 side pid port m ticks=0 hs=0 n=0 t
	for side in out in; do
		pid=$(cat "$dir/nodemesh-$side.pid" 2>/dev/null) || return 1
		t=$(bench_cpu_ticks "$pid")
		[[ $t == NA ]] && return 1
		ticks=$((ticks + t))
		port=$(cat "$dir/nodemesh-$side.metrics-port" 2>/dev/null)
		[[ -n $port && $port != 0 ]] || return 1
		m=$(curl -sf --max-time 2 "http://127.0.0.1:$port/metrics") || return 1
		read -r hs n < <(awk -v hs="$hs" -v n="$n" '
			/^nodemesh_tls_handshake_cpu_seconds_total[{ ]/ { hs += $NF }
			/^nodemesh_tls_handshakes_total\{.*result="success"/ { n += $NF }
			END { printf "%.9f %d\n", hs, n }' <<<"$m")
	done
	echo "$ticks $hs $n"
}

# run MODE RESUME: one hop, a warm-up connection, SECS of connrate; prints
# the mode's line and leaves its figures in $W/MODE/figures.
run() {
	local mode=$1 dir=$W/$1 out inpid perfpid="" c0 c1 a0 a1 ok
	mkdir -p "$dir"
	BENCH_WORK_DIR=$dir BENCH_TLS_RESUME=$2 setsid bash "$HERE/candidate-hop.sh" >"$dir/hop.log" 2>&1 &
	HOP=$!
	for _ in $(seq 100); do
		[[ -s $dir/nodemesh-in.pid ]] && "$W/connrate" client "$BENCH_OUT_CONN" 0.2 >/dev/null 2>&1 && break
		sleep 0.1
	done
	inpid=$(cat "$dir/nodemesh-in.pid" 2>/dev/null)
	if [[ $mode == profiled* ]]; then
		inpid+=",$(cat "$dir/nodemesh-out.pid")"
		perf record -F 499 --call-graph dwarf,16384 -o "$dir/perf.data" -p "$inpid" \
			-- sleep "$SECS" >"$dir/perf.log" 2>&1 &
		perfpid=$!
	fi
	c0=$(core_ticks) a0=$(agent_figures "$dir")
	out=$(taskset -c 0 "$W/connrate" client "$BENCH_OUT_CONN" "$SECS" 2>&1)
	c1=$(core_ticks) a1=$(agent_figures "$dir")
	[[ -n $perfpid ]] && wait "$perfpid"
	kill -- "-$HOP" 2>/dev/null
	wait "$HOP" 2>/dev/null
	HOP=""
	ok=$(grep -o 'ok=[0-9]*' <<<"$out") ok=${ok#ok=}
	# cps err core_busy agents_us handshake_us handshakes_per_conn (NA: unknown)
	awk -v out="$out" -v ok="${ok:-0}" -v hz="$HZ" -v c0="$c0" -v c1="$c1" \
		-v a0="${a0:-NA}" -v a1="${a1:-NA}" '
		function fig(k) { return match(out, k "=[0-9.]+") ? substr(out, RSTART + length(k) + 1, RLENGTH - length(k) - 1) : "NA" }
		BEGIN {
			split(c0, x); split(c1, y)
			busy = y[2] > x[2] ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : "NA"
			ag = hs = per = "NA"
			if (a0 != "NA" && a1 != "NA" && ok > 0) {
				split(a0, p); split(a1, q)
				ag = (q[1] - p[1]) * 1e6 / hz / ok
				hs = (q[2] - p[2]) * 1e6 / ok
				per = (q[3] - p[3]) / ok
			}
			print fig("conns_per_s"), fig("err"), busy, ag, hs, per
		}' >"$dir/figures"
}
# mode_line MODE DIRECT_CPS: the printed line of a mode's figures.
mode_line() {
	local cps err busy ag hs per
	read -r cps err busy ag hs per <"$W/$1/figures"
	awk -v m="$1" -v cps="$cps" -v err="$err" -v d="$2" -v busy="$busy" -v ag="$ag" \
		-v hs="$hs" -v per="$per" 'BEGIN {
		line = sprintf("mode=%s conns_per_s=%s err=%s", m, cps, err)
		if (d > 0 && cps != "NA") line = line sprintf(" x_direct=%.3f", cps / d)
		if (busy != "NA") line = line sprintf(" core_busy=%.0f%%", busy)
		if (ag != "NA") line = line sprintf(" agents_us_per_conn=%.0f", ag)
		if (hs != "NA" && hs > 0) {
			line = line sprintf(" handshake_us_per_conn=%.0f handshakes_per_conn=%.2f", hs, per)
			if (ag > 0) line = line sprintf(" handshake_share=%.0f%%", 100 * hs / ag)
			c = 1e6 / hs
			line = line sprintf(" ceiling_handshakes_only=%.0f/s", c)
			if (d > 0) line = line sprintf(" (%.3fx direct)", c / d)
		}
		print line }'
}
mode_json() { # mode_json MODE DIRECT_CPS
	local cps err busy ag hs per
	read -r cps err busy ag hs per <"$W/$1/figures"
	jq -n --argjson cps "$(bench_jnum "$cps")" --argjson d "$(bench_jnum "$2")" \
		--argjson busy "$(bench_jnum "$busy")" --argjson ag "$(bench_jnum "$ag")" \
		--argjson hs "$(bench_jnum "$hs")" --argjson per "$(bench_jnum "$per")" '
		def r(n): if . == null then null else (. * n | round / n) end;
		{conns_per_s: $cps, ratio_vs_direct: (if $cps and $d and $d > 0 then ($cps / $d | r(1000)) else null end),
		 core_busy_pct: ($busy | r(10)), agents_cpu_us_per_conn: ($ag | r(10)),
		 handshake_cpu_us_per_conn: ($hs | r(10)), handshakes_per_conn: ($per | r(100)),
		 handshake_share: (if $hs and $ag and $ag > 0 then ($hs / $ag | r(1000)) else null end),
		 ceiling_handshakes_only_cps: (if $hs and $hs > 0 then (1e6 / $hs | r(10)) else null end),
		 ceiling_handshakes_only_ratio: (if $hs and $hs > 0 and $d and $d > 0 then (1e6 / $hs / $d | r(1000)) else null end)}'
}

direct=$(taskset -c 0 "$W/connrate" client "$BENCH_SRV_CONN" "$SECS" 2>&1 | grep -o 'conns_per_s=[0-9.]*')
direct=${direct#conns_per_s=}
echo "mode=direct conns_per_s=${direct:-NA}"
run full 0
mode_line full "${direct:-0}"
run resumed 1
mode_line resumed "${direct:-0}"
read -r f _ <"$W/full/figures"
read -r r _ <"$W/resumed/figures"
awk -v f="$f" -v r="$r" 'BEGIN { if (f > 0) printf "ratio resumed/full=%.2f\n", r / f }'
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
	# Resumed, both agents: OpenSSL's handshake steps as a whole, the
	# X25519 key share in them (psk_dhe_ke), the switch to the agent's
	# records, SSL_new, the peer identity read from the session's
	# certificate, and the session decoding a stateless ticket would cost
	# (0: the server keeps parsed sessions).
	prof_line "$W/profiled" "profile both agents (resumed)" nm_tls_handshake_step \
		EVP_PKEY_generate nm_ktls_switch_agent SSL_new nm_x509_spiffe_id \
		d2i_SSL_SESSION | tee "$W/profile-resumed"
	# Full handshakes, both agents: what a new connection's CPU goes to
	# (certificate decoding, OpenSSL 3.0's decoder set-up inside it, chain
	# verification, the EC arithmetic of signatures and key exchange).
	run profiled-full 0 >/dev/null
	prof_line "$W/profiled-full" "profile both agents (full)" ASN1_item_d2i_ex \
		OSSL_DECODER_CTX_new_for_pkey X509_verify_cert EVP_DigestVerifyFinal \
		EVP_DigestSignFinal EC_POINT_mul EVP_PKEY_generate | tee "$W/profile-full"
fi
# profile_json FILE: {"function": percent, ...} of one prof_line, or null.
profile_json() {
	[[ -s $1 ]] || { echo null; return; }
	tr ' ' '\n' <"$1" | awk -F= 'NF == 2 { sub(/%$/, "", $2); printf "%s\"%s\": %s", n++ ? ", " : "{", $1, $2 } END { print n ? "}" : "null" }'
}
if [[ -n $JSON ]]; then
	jq -n --argjson secs "$SECS" --argjson direct "$(bench_jnum "${direct:-}")" \
		--argjson full "$(mode_json full "${direct:-0}")" \
		--argjson resumed "$(mode_json resumed "${direct:-0}")" \
		--argjson pr "$(profile_json "$W/profile-resumed")" \
		--argjson pf "$(profile_json "$W/profile-full")" \
		'{seconds: $secs, proxy_cpu: 1, direct_conns_per_s: $direct, full: $full, resumed: $resumed,
		  profile: (if $pr == null and $pf == null then null
			    else {both_resumed_pct: $pr, both_full_pct: $pf} end)}' >"$JSON" ||
		{ echo "handshakes: cannot write $JSON" >&2; exit 1; }
fi
