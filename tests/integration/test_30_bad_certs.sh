#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_30_bad_certs - issue 9: a bad certificate file in the watched certDir
# is refused with an error naming the file, the last good credential stays
# and traffic keeps flowing. One paced stream (client -> echo VIP, cross
# node) runs through all of it. For each kind the echo identity's files are
# replaced by rename while both agents watch:
#   bad-cert-unreadable     a FIFO in place of cert.pem
#   bad-cert-key-mismatch   the client's key.pem beside echo's cert.pem
#   bad-cert-expired        a leaf for echo that expired an hour ago
#   bad-cert-not-yet-valid  a leaf for echo valid from an hour from now
#   bad-cert-wrong-san      the client's credential in echo's folder
#   bad-cert-garbage-pem    a PEM block whose body is not base64
# each: node-2 logs `certificate file refused, keeping the last good one`
# naming the file, logs no rotation, a new meshed flow works and node-2's
# 15008 still presents the good serial (openssl s_client with SNI).
#   rotation-after-bad      a good re-issue afterwards is swapped in (the
#                           watcher still runs, the new serial is presented)
#   expiry-warning          mesh.certExpiryWarning raised to 400 days, above
#                           the leaves' 365 (SIGHUP): one "certificate expires soon"
#                           warning for echo naming file and serial, not
#                           repeated when the setting is touched again
#   stream-survives         the stream's bytes all came back, in order
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

command -v openssl >/dev/null || { nm_fail bad-certs "openssl missing"; exit 1; }
command -v jq >/dev/null || { nm_fail bad-certs "jq missing"; exit 1; }
nm_scenario_up bad-certs
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
certs=$NM_STATE/certs
echo_dir=$certs/default/echo
client_dir=$certs/default/client
node2=${NM_NODE_ADDR[2]}
sni=echo.default.$NM_TRUST_DOMAIN
echo_id=spiffe://$NM_TRUST_DOMAIN/ns/default/sa/echo
refused_msg='msg="certificate file refused, keeping the last good one"'

serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }
# The serial node-2's inbound port presents for echo's SNI.
probe_serial() {
	nm_node_exec 1 openssl s_client -connect "$node2:$NM_INBOUND_PORT" \
		-servername "$sni" -alpn nmtp/1 -cert "$client_dir/cert.pem" \
		-key "$client_dir/key.pem" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
# put SRC DST: replace DST by rename, as certificate writers do.
put() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }
# after LOG MARK: the lines LOG got after line MARK.
after() { tail -n +"$(($2 + 1))" "$1"; }
# wait_after LOG MARK ERE SECONDS
wait_after() {
	local i
	for ((i = 0; i < $4 * 20; i++)); do
		after "$1" "$2" | grep -Eq -- "$3" && return 0
		sleep 0.05
	done
	return 1
}
flow_ok() {
	local out
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000)
	[[ $(nm_json "$out" match) == true ]] || { echo "$out"; return 1; }
}
mint() { # KIND DIR
	"$NM_PEER" mkcert --ca-dir "$NM_STATE/ca" --out "$2" --kind "$1" --id "$echo_id" \
		>>"$NM_STATE/mkcert.out" 2>&1 || nm_die "nm_peer mkcert $1 failed"
}

good=$NM_STATE/echo-good
cp -a "$echo_dir" "$good"
good_serial=$(serial_of "$good/cert.pem")
s=$(probe_serial)
[[ $s == "$good_serial" ]] || nm_log "probe before the test: '$s', file: $good_serial"

stream_bytes=$((4 * 1024 * 1024))
nm_pod_spawn client stream "$NM_PEER" send --to 198.19.0.10:80 --bytes "$stream_bytes" \
	--duration-ms 25000 --timeout-ms 90000
stream_pid=$NM_LAST_PID

# restore: the good files back; waits until node-2 read them again.
restore() {
	local mark n0
	mark=$(wc -l <"$log2")
	rm -f "$echo_dir/cert.pem.tmp" "$echo_dir/key.pem.tmp"
	[[ -p $echo_dir/cert.pem ]] && rm -f "$echo_dir/cert.pem"
	put "$good/key.pem" "$echo_dir/key.pem"
	put "$good/cert.pem" "$echo_dir/cert.pem"
	wait_after "$log2" "$mark" 'msg="certificate folder changed, credentials did not"' 5 ||
		nm_log "restore: node-2 did not re-read the folder"
}

# bad KIND FILE(echo's file the error must name) REASON-ERE: break, check.
check_bad() {
	local name=$1 file=$2 reason=$3 mark=$4 s out
	if ! wait_after "$log2" "$mark" "$refused_msg err=\"$echo_dir/$file: $reason" 5; then
		nm_fail "$name" "node-2 did not refuse $echo_dir/$file ($reason): $(after "$log2" "$mark" | grep -E 'refused|rotated' | tail -n 3)"
		return
	fi
	if after "$log2" "$mark" | grep -q 'msg="certificates rotated"'; then
		nm_fail "$name" "node-2 swapped credentials: $(after "$log2" "$mark" | grep 'rotated')"
		return
	fi
	if ! out=$(flow_ok); then
		nm_fail "$name" "meshed flow failed with the bad file in place: $out"
		return
	fi
	s=$(probe_serial)
	if [[ $s != "$good_serial" ]]; then
		nm_fail "$name" "node-2 presents serial '$s', the last good one is $good_serial"
		return
	fi
	nm_pass "$name (refused naming $file, serial $s kept, flow ok)"
}

tmp=$NM_STATE/bad
mkdir -p "$tmp"

mark=$(wc -l <"$log2")
mkfifo "$tmp/fifo" && mv -f "$tmp/fifo" "$echo_dir/cert.pem"
check_bad bad-cert-unreadable cert.pem 'not a regular file' "$mark"
restore

mark=$(wc -l <"$log2")
put "$client_dir/key.pem" "$echo_dir/key.pem"
check_bad bad-cert-key-mismatch key.pem 'key does not match' "$mark"
restore

for kind in expired not-yet-valid; do
	mint "$kind" "$tmp/$kind"
	mark=$(wc -l <"$log2")
	put "$tmp/$kind/key.pem" "$echo_dir/key.pem"
	put "$tmp/$kind/cert.pem" "$echo_dir/cert.pem"
	if [[ $kind == expired ]]; then
		check_bad bad-cert-expired cert.pem 'certificate has expired' "$mark"
	else
		check_bad bad-cert-not-yet-valid cert.pem 'certificate is not yet valid' "$mark"
	fi
	restore
done

mark=$(wc -l <"$log2")
put "$client_dir/key.pem" "$echo_dir/key.pem"
put "$client_dir/cert.pem" "$echo_dir/cert.pem"
check_bad bad-cert-wrong-san cert.pem 'SPIFFE ID spiffe://[^ ]*/sa/client does not match its folder' "$mark"
restore

mark=$(wc -l <"$log2")
printf -- '-----BEGIN CERTIFICATE-----\nthis is not base64!\n-----END CERTIFICATE-----\n' >"$tmp/garbage.pem"
put "$tmp/garbage.pem" "$echo_dir/cert.pem"
check_bad bad-cert-garbage-pem cert.pem 'not a PEM certificate' "$mark"
restore

# --- a good rotation still applies -------------------------------------------
mark=$(wc -l <"$log2")
"$NODEMESH" ca issue --dir "$NM_STATE/ca" --out "$certs" --ns default --sa echo >>"$NM_STATE/ca.out" 2>&1
new_serial=$(serial_of "$echo_dir/cert.pem")
if wait_after "$log2" "$mark" "msg=\"certificates rotated\" .*default/echo=$new_serial\\*" 5 &&
	[[ $(probe_serial) == "$new_serial" ]] && out=$(flow_ok); then
	nm_pass "rotation-after-bad (node-2 presents $new_serial)"
else
	nm_fail rotation-after-bad "new serial $new_serial not swapped in: $(after "$log2" "$mark" | grep -E 'rotated|refused' | tail -n 2) probe=$(probe_serial) ${out:-}"
fi

# --- expiry warning ----------------------------------------------------------
cfg=$NM_STATE/cluster.json
sighup_to() { # WARNING-SECONDS: both agents reload with it
	local m1 m2
	m1=$(wc -l <"$log1")
	m2=$(wc -l <"$log2")
	jq ".mesh.certExpiryWarning = $1" "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
	kill -HUP "$NM_AGENT_PID_1" "$NM_AGENT_PID_2"
	wait_after "$log1" "$m1" 'msg="config reloaded"' 5 && wait_after "$log2" "$m2" 'msg="config reloaded"' 5
}
year=$((365 * 86400))
warn_re="msg=\"certificate expires soon\" id=$echo_id file=$echo_dir/cert.pem serial=$new_serial seconds_to_expiry="
mark=$(wc -l <"$log2")
if sighup_to 34560000 && wait_after "$log2" "$mark" "$warn_re" 5; then
	line=$(after "$log2" "$mark" | grep -E "$warn_re" | head -n 1)
	left=$(nm_kv "$line" seconds_to_expiry)
	sighup_to 34560001 || true
	sleep 1
	n=$(after "$log2" "$mark" | grep -Ec "$warn_re")
	if ((left > year - 3600 && left <= year && n == 1)); then
		nm_pass "expiry-warning (seconds_to_expiry=$left, warned once)"
	else
		nm_fail expiry-warning "seconds_to_expiry=$left (want about 365 days, as nodemesh ca issue makes them), warnings=$n (want 1)"
	fi
else
	nm_fail expiry-warning "no warning for echo after certExpiryWarning=34560000: $(after "$log2" "$mark" | grep -E 'expires|reload' | tail -n 3)"
fi

# --- the stream -------------------------------------------------------------
for ((i = 0; i < 1200; i++)); do
	kill -0 "$stream_pid" 2>/dev/null || break
	sleep 0.05
done
out=$(cat "$NM_STATE/stream.out")
if [[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == "$stream_bytes" ]]; then
	nm_pass "stream-survives ($stream_bytes bytes echoed over $(nm_json "$out" elapsed_ms) ms)"
else
	nm_fail stream-survives "stream: $out $(cat "$NM_STATE/stream.err" 2>/dev/null)"
fi

((NM_FAILS == 0)) || nm_dump_logs
exit $((NM_FAILS > 0))
