#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# mtls-check.sh -- before any measurement, prove that the benchmark's
# nodemesh hop really enforces mTLS on its inbound side. peers.sh checks its
# built-in peers itself but not a --candidate, so this does it for ours,
# against a separately started candidate pair (bench/candidate-hop.sh) with
# the kit's certificates, in front of an echo server:
#
#   via-outbound   plain client -> outbound forward -> tunnel -> echo   must echo
#   valid-cert     openssl s_client straight to the inbound listener with
#                  the client cert of the kit's CA, ALPN nmtp/1 and an NMTP
#                  preamble for the forward's destination               must echo
#   no-cert        same, without a client certificate                  no echo
#   foreign-ca     same, with a client cert (same SPIFFE ID) from another CA
#                                                                      no echo
#   wrong-id       same, with a client cert from the kit's CA for
#                  spiffe://cluster.local/ns/default/sa/other, which is
#                  not in the forward's allowedPeers                   no echo
#
# Usage: mtls-check.sh [--base-port P] [--json PATH] [--keep]
# Exit 0 when every case behaves, 1 otherwise. Loopback only; every process
# is time-bounded and killed on exit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE=31100
JSON=""
KEEP=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--base-port) BASE=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "mtls-check: unknown argument $1" ;;
	esac
done
bench_need openssl gcc ss timeout setsid jq
[[ -x $NODEMESHD ]] || bench_die "$NODEMESHD not built (run make)"
[[ -x $BENCH_KIT/certs.sh ]] || bench_die "peer kit not found at $BENCH_KIT"

SRV=$((BASE + 1))
OUTS=($((BASE + 11)) $((BASE + 12)) $((BASE + 13)))
INS=($((BASE + 16)) $((BASE + 17)) $((BASE + 18)))
for p in "$SRV" "${OUTS[@]}" "${INS[@]}"; do
	bench_port_busy "$p" && bench_die "port 127.0.0.1:$p in use; pick another --base-port"
done

WORK=$(mktemp -d /tmp/nm-mtls.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	bench_stop_all
	if ((KEEP)); then bench_log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BENCH_KIT/certs.sh" "$WORK/certs" >/dev/null
"$BENCH_KIT/certs.sh" "$WORK/foreign" >/dev/null
# A valid client cert of the kit's CA whose identity is not allowed.
(
	cd "$WORK/certs"
	openssl ecparam -name prime256v1 -genkey -noout -out other.key 2>/dev/null
	openssl req -new -key other.key -subj "/O=bench/CN=other" -out other.csr 2>/dev/null
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=clientAuth" "subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/other" >other.ext
	openssl x509 -req -in other.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 1 \
		-extfile other.ext -out other.crt 2>/dev/null
) || bench_die "cannot issue the wrong-identity test certificate"
bench_build_tools "$WORK/bin" 2>"$WORK/build.log" || { cat "$WORK/build.log" >&2; exit 1; }

bench_start echo "$WORK" "" 120 "$WORK/bin/nmbench" echo 127.0.0.1 "$SRV" 110
bench_wait_listen "$SRV" 5 || bench_die "echo server did not start"
bench_start hop "$WORK" "" 120 env \
	BENCH_CERT_DIR="$WORK/certs" BENCH_WORK_DIR="$WORK" BENCH_PROXY_CPU="" \
	BENCH_TLS_RESUME=0 BENCH_HOP_NAME=nodemesh-mtls BENCH_HOP_LIFETIME=110 \
	BENCH_OUT_LAT="${OUTS[0]}" BENCH_OUT_TPUT="${OUTS[1]}" BENCH_OUT_CONN="${OUTS[2]}" \
	BENCH_IN_LAT="${INS[0]}" BENCH_IN_TPUT="${INS[1]}" BENCH_IN_CONN="${INS[2]}" \
	BENCH_SRV_LAT="$SRV" BENCH_SRV_TPUT="$SRV" BENCH_SRV_CONN="$SRV" \
	"$BENCH_DIR/candidate-hop.sh"
for p in "${OUTS[@]}" "${INS[@]}"; do
	bench_wait_listen "$p" 10 || {
		tail -n 20 "$WORK"/nodemesh-mtls-*.log "$WORK/hop.log" >&2 2>/dev/null
		bench_die "candidate pair not listening on 127.0.0.1:$p"
	}
done

PRE=$(bench_nmtp_preamble "$SRV")
# s_client_echo NAME [openssl args...] -> "echo" when the byte came back.
s_client_echo() {
	local name=$1 got
	shift
	# shellcheck disable=SC2059 # PRE holds printf escapes on purpose
	(printf "$PRE"; printf Z; sleep 1) |
		timeout 6 openssl s_client -quiet -no_ign_eof -alpn nmtp/1 \
			-connect "127.0.0.1:${INS[2]}" -CAfile "$WORK/certs/ca.crt" "$@" \
			2>"$WORK/s_client-$name.err" | tr -d '\000' >"$WORK/s_client-$name.out" || true
	got=$(cat "$WORK/s_client-$name.out")
	# The answer is "NMT1" + status 0, then the echo.
	if [[ $got == *Z* ]]; then echo echo; else echo none; fi
}

declare -A RES=() WANT=([via-outbound]=echo [valid-cert]=echo [no-cert]=none [foreign-ca]=none [wrong-id]=none)
out=$("$WORK/bin/nmbench" connrate 127.0.0.1 "${OUTS[2]}" 0.3 || true)
if [[ $out == *" err=0 "* && $out != conns_per_s=0.0* ]]; then RES[via-outbound]="echo"; else RES[via-outbound]="none"; fi
RES[valid-cert]=$(s_client_echo valid-cert -cert "$WORK/certs/client.crt" -key "$WORK/certs/client.key")
RES[no-cert]=$(s_client_echo no-cert)
RES[foreign-ca]=$(s_client_echo foreign-ca -cert "$WORK/foreign/client.crt" -key "$WORK/foreign/client.key")
RES[wrong-id]=$(s_client_echo wrong-id -cert "$WORK/certs/other.crt" -key "$WORK/certs/other.key")
sleep 0.2
INLOG=$WORK/nodemesh-mtls-in.log
refusals=$(grep -cE 'tls handshake failed|inbound flow refused' "$INLOG" 2>/dev/null || true)

ok=1
for c in via-outbound valid-cert no-cert foreign-ca wrong-id; do
	if [[ ${RES[$c]} == "${WANT[$c]}" ]]; then
		bench_log "mtls check $c: ${RES[$c]} (expected ${WANT[$c]}) ok"
	else
		bench_log "mtls check $c: ${RES[$c]} (expected ${WANT[$c]}) FAILED"
		ok=0
	fi
done
((refusals >= 3)) || { bench_log "mtls check: inbound agent logged only $refusals refusals (want >= 3)"; ok=0; }
if ((!ok)); then
	bench_log "inbound agent log tail:"
	tail -n 20 "$INLOG" >&2 || true
fi

result=$(jq -n --argjson ok "$([[ $ok == 1 ]] && echo true || echo false)" \
	--arg via "${RES[via-outbound]}" --arg valid "${RES[valid-cert]}" \
	--arg nocert "${RES[no-cert]}" --arg foreign "${RES[foreign-ca]}" \
	--arg wrongid "${RES[wrong-id]}" --argjson refusals "${refusals:-0}" \
	--arg reasons "$(grep -oE 'reason="[^"]*"|status=[a-z_ ]+' "$INLOG" 2>/dev/null | sort | uniq -c | sed 's/^ *//' | paste -sd ';' -)" \
	'{enforced: $ok, cases: {"via-outbound": $via, "valid-cert": $valid, "no-cert": $nocert,
	  "foreign-ca": $foreign, "wrong-id": $wrongid}, inbound_refusals_logged: $refusals,
	  inbound_log_reasons: $reasons}')
if [[ -n $JSON ]]; then printf '%s\n' "$result" >"$JSON"; else printf '%s\n' "$result"; fi
((ok))
