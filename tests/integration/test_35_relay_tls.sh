#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_35_relay_tls - the tuned cross-node relay (64 KiB buffers, several
# TLS records per read and per write) and the kernel-TLS choice (issue 14):
#   relay-ktls-status     both agents report the ktls path as the kernel
#                         allows it: with the tls ULP registered
#                         (/proc/sys/net/ipv4/tcp_available_ulp) active,
#                         mode tx+rx; without it inactive, mode off, reason
#                         "no tls ULP in this kernel"
#   relay-bytes-exact     4 MiB through the tunnel and back (echo), byte
#                         for byte, three times in parallel
#   relay-small-writes    20,000 writes of 8 bytes (TCP_NODELAY) arrive
#                         intact and in order (the batching reorders nothing)
#   relay-halfclose       after the client's FIN the server's 300,000-byte
#                         answer still arrives
#   relay-server-reset    a server's RST reaches the client as ECONNRESET
#   relay-client-reset    a client's RST reaches the server as ECONNRESET
#   relay-ktls-flows      the ktls flow count: > 0 with kTLS, 0 without
#   relay-busy-poll       mesh.busyPoll 50 on node-1 (restarted): status
#                         says active with its value (socket option and
#                         the event loop's spin), and 1 MiB still echoes
#   relay-busy-poll-close the same close checks as above with busyPoll on
#   relay-agent-records   the agent's own record layer (mesh/tlsrec.h):
#                         without kTLS both agents report agent_records
#                         active, mode agent, and count the tunnels that
#                         switched to it (> 0); with kTLS it is off
#                         ("kernel TLS carries the records"), 0 flows
#   relay-records-openssl node-1 restarted with mesh.tlsRecords openssl:
#                         status says so (inactive, mode openssl) and no
#                         tunnel of node-1 switches
#   relay-records-mixed   node-1 on OpenSSL's records, node-2 on the
#                         agent's (the same TLS 1.3 on the wire): 4 MiB
#                         echo byte for byte, and the close checks above
#   relay-ec-builtin      certificate keys through OpenSSL 3.0's built-in
#                         EC code (mesh/ecmeth.h): on OpenSSL 3.0 both
#                         agents report ec_builtin active, mode builtin,
#                         and count full handshakes (> 0); on another
#                         OpenSSL inactive, mode provider
#   relay-ec-provider     node-1 restarted (with the openssl records above)
#                         with mesh.tlsEcMethods provider: status says so,
#                         and node-2, still on the built-in code, counts the
#                         new full handshakes of the mixed echo
#   relay-verify-cache    node-1's restart made it do full handshakes again
#                         with the client chain node-2 already verified:
#                         node-2's nodemesh_tls_verify_cache_lookups_total
#                         counts inbound hits for them, and never more
#                         lookups than full inbound handshakes
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
[[ -x $CLOSER ]] || { nm_fail relay-tls "$CLOSER missing (run make)"; exit 1; }
PY=$(command -v python3) || { nm_fail relay-tls "python3 missing"; exit 1; }
nm_scenario_up relay-tls
VIP=198.19.0.10:80

# One path's row of `nodemesh status`: NAME ACTIVE MODE FLOWS REASON...
path_row() { # NODE PATH
	"$NODEMESH" status --instance "$(nm_instance "$1")" 2>/dev/null |
		awk -v p="$2" '$1 == p { print; exit }'
}

# --- status: the kernel's word decides what the agent must say --------------
if grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; then
	have_ktls=1
else
	have_ktls=0
fi
bad=""
for n in 1 2; do
	row=$(path_row "$n" ktls)
	read -r _ active mode _ reason <<<"$row"
	if ((have_ktls)); then
		[[ $active == yes && $mode == tx+rx ]] || bad+=" node-$n: '$row'"
	else
		[[ $active == no && $mode == off && $reason == "no tls ULP in this kernel" ]] ||
			bad+=" node-$n: '$row'"
	fi
done
if [[ -z $bad ]]; then
	nm_pass relay-ktls-status
else
	nm_fail relay-ktls-status "kernel tls ULP=$have_ktls;$bad"
fi

# --- bytes: 4 MiB each way, three flows at once ------------------------------
pids=()
for i in 1 2 3; do
	nm_pod_exec client "$NM_PEER" send --to "$VIP" --bytes 4194304 --timeout-ms 60000 \
		>"$NM_STATE/send-$i.out" 2>&1 &
	pids+=("$!")
done
wait "${pids[@]}"
bad=""
for i in 1 2 3; do
	out=$(cat "$NM_STATE/send-$i.out")
	[[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == 4194304 ]] ||
		bad+=" flow $i: $out"
done
if [[ -z $bad ]]; then
	nm_pass relay-bytes-exact
else
	nm_fail relay-bytes-exact "$bad"
fi

# --- many small writes: order and content -----------------------------------
small='
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
n = 20000
s = socket.create_connection((host, int(port)), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
want = b"".join(b"%07d\n" % i for i in range(n))
for i in range(n):
    s.sendall(b"%07d\n" % i)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    c = s.recv(65536)
    if not c:
        break
    got += c
if got == want:
    print("ok %d" % len(got))
else:
    i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
    print("mismatch: got %d bytes, want %d, first difference at %d" % (len(got), len(want), i))
'
out=$(nm_pod_exec client "$PY" -c "$small" "$VIP" 2>&1)
if [[ $out == "ok 160000" ]]; then
	nm_pass relay-small-writes
else
	nm_fail relay-small-writes "$out"
fi

# --- close semantics through the tuned relay ---------------------------------
nm_pod_spawn echo closer-echo "$CLOSER" serve --port 9000
nm_pod_info echo
nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail relay-tls "closer in echo did not listen"
to="$(nm_pod_ip echo):9000"
# close_checks: a half-close, a server reset and a client reset through the
# relay to $to. Sets HC_OK/HC (half-close answered, its output), RST_OK/RST
# and CLIENT_RST_OK (the server logged one more ECONNRESET within 5 s).
resets() { grep -c '^wait: ECONNRESET' "$NM_STATE/closer-echo.out" 2>/dev/null; }
close_checks() {
	local before i
	HC_OK=0 RST_OK=0 CLIENT_RST_OK=0
	HC=$(nm_pod_exec client "$CLOSER" halfclose --to "$to" --bytes 300000 2>&1) &&
		[[ $HC == *'answer "got 300000"'* ]] && HC_OK=1
	RST=$(nm_pod_exec client "$CLOSER" reset --to "$to" 2>&1)
	[[ $RST == *ECONNRESET* ]] && RST_OK=1
	before=$(resets)
	nm_pod_exec client "$CLOSER" client-reset --to "$to" >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do
		(($(resets) > before)) && { CLIENT_RST_OK=1; break; }
		sleep 0.05
	done
}
close_checks
nm_check relay-halfclose "$HC" test "$HC_OK" -eq 1
nm_check relay-server-reset "$RST" test "$RST_OK" -eq 1
nm_check relay-client-reset "server saw: $(tail -n 1 "$NM_STATE/closer-echo.out")" \
	test "$CLIENT_RST_OK" -eq 1

# --- flows that switched to kTLS (agent.json is rewritten within a second) ---
sleep 1.5
bad=""
for n in 1 2; do
	row=$(path_row "$n" ktls)
	read -r _ _ _ flows _ <<<"$row"
	if ((have_ktls)); then
		[[ $flows =~ ^[0-9]+$ ]] && ((flows > 0)) || bad+=" node-$n: '$row'"
	else
		[[ $flows == 0 ]] || bad+=" node-$n: '$row'"
	fi
done
if [[ -z $bad ]]; then
	nm_pass relay-ktls-flows
else
	nm_fail relay-ktls-flows "kernel tls ULP=$have_ktls;$bad"
fi

# --- the agent's record layer where the kernel has no kTLS ----------------------
bad=""
for n in 1 2; do
	row=$(path_row "$n" agent_records)
	read -r _ active mode flows reason <<<"$row"
	if ((have_ktls)); then
		[[ $active == no && $mode == off && $flows == 0 &&
			$reason == "kernel TLS carries the records" ]] || bad+=" node-$n: '$row'"
	else
		[[ $active == yes && $mode == agent && $flows =~ ^[0-9]+$ ]] && ((flows > 0)) ||
			bad+=" node-$n: '$row'"
	fi
done
if [[ -z $bad ]]; then
	nm_pass relay-agent-records
else
	nm_fail relay-agent-records "kernel tls ULP=$have_ktls;$bad"
fi

# --- certificate keys through OpenSSL 3.0's built-in EC code ---------------------
ossl_30=0
[[ $(openssl version 2>/dev/null) == *"Library: OpenSSL 3.0."* ||
	$(openssl version 2>/dev/null) == "OpenSSL 3.0."* ]] && ossl_30=1
bad=""
for n in 1 2; do
	row=$(path_row "$n" ec_builtin)
	read -r _ active mode flows reason <<<"$row"
	if ((ossl_30)); then
		[[ $active == yes && $mode == builtin && $flows =~ ^[0-9]+$ ]] && ((flows > 0)) ||
			bad+=" node-$n: '$row'"
	else
		[[ $active == no && $mode == provider ]] || bad+=" node-$n: '$row'"
	fi
done
if [[ -z $bad ]]; then
	nm_pass relay-ec-builtin
else
	nm_fail relay-ec-builtin "OpenSSL 3.0=$ossl_30;$bad"
fi
read -r _ _ _ ec2_before _ <<<"$(path_row 2 ec_builtin)"
# node-2's inbound verify-cache lookups with RESULT (hit, miss).
vc_in() { nm_metric 2 nodemesh_tls_verify_cache_lookups_total "direction=\"inbound\",result=\"$1\""; }
vc_hit_before=$(vc_in hit)

# --- busy polling on node-1 ----------------------------------------------------
sed 's/"failMode": "closed"/"failMode": "closed", "busyPoll": 50/' "$NM_STATE/cluster.json" \
	>"$NM_STATE/cluster-bp.json"
nm_agent_stop 1
nm_agent_start 1 --config "$NM_STATE/cluster-bp.json" ||
	nm_fail relay-busy-poll "node-1 did not restart with busyPoll"
row=$(path_row 1 busy_poll)
read -r _ active mode _ reason <<<"$row"
out=$(nm_pod_exec client "$NM_PEER" send --to "$VIP" --bytes 1048576 --timeout-ms 30000 2>&1)
if [[ $active == yes && $mode == busy_poll* && $reason == "SO_BUSY_POLL 50 us"* &&
	$reason == *"event loop spins 50 us"* &&
	$(nm_json "$out" match) == true ]]; then
	nm_pass relay-busy-poll
else
	nm_fail relay-busy-poll "status '$row'; send: $out"
fi
# The spinning loop keeps the close semantics: half-close, both resets.
close_checks
if ((HC_OK && RST_OK && CLIENT_RST_OK)); then
	nm_pass relay-busy-poll-close
else
	nm_fail relay-busy-poll-close "halfclose: $HC; reset: $RST; server: $(tail -n 1 "$NM_STATE/closer-echo.out")"
fi

# --- node-1 on OpenSSL's records, node-2 on the agent's --------------------------
sed 's/"failMode": "closed"/"failMode": "closed", "tlsRecords": "openssl", "tlsEcMethods": "provider"/' \
	"$NM_STATE/cluster.json" >"$NM_STATE/cluster-ossl.json"
nm_agent_stop 1
nm_agent_start 1 --config "$NM_STATE/cluster-ossl.json" ||
	nm_fail relay-records-openssl "node-1 did not restart with tlsRecords openssl"
out=$(nm_pod_exec client "$NM_PEER" send --to "$VIP" --bytes 4194304 --timeout-ms 60000 2>&1)
close_checks
sleep 1.5
row=$(path_row 1 agent_records)
read -r _ active mode flows reason <<<"$row"
if [[ $active == no && $mode == openssl && $flows == 0 && $reason == "mesh.tlsRecords is openssl" ]]; then
	nm_pass relay-records-openssl
else
	nm_fail relay-records-openssl "node-1: '$row'"
fi
if [[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == 4194304 ]] &&
	((HC_OK && RST_OK && CLIENT_RST_OK)); then
	nm_pass relay-records-mixed
else
	nm_fail relay-records-mixed "send: $out; halfclose: $HC; reset: $RST; server: $(tail -n 1 "$NM_STATE/closer-echo.out")"
fi
row=$(path_row 1 ec_builtin)
read -r _ active mode flows reason <<<"$row"
row2=$(path_row 2 ec_builtin)
read -r _ _ _ ec2_after _ <<<"$row2"
if [[ $active == no && $mode == provider && $flows == 0 &&
	$reason == "mesh.tlsEcMethods is provider" ]] &&
	{ ((!ossl_30)) || ((ec2_after > ec2_before)); }; then
	nm_pass relay-ec-provider
else
	nm_fail relay-ec-provider "node-1: '$row'; node-2: '$row2' (before: $ec2_before)"
fi
# node-1 came back with no sessions to resume: its new tunnels are full
# handshakes presenting the client chain node-2 verified before.
vc_hit=$(vc_in hit) vc_miss=$(vc_in miss)
full2=$(($(nm_metric 2 nodemesh_tls_handshakes_total 'direction="inbound",result="success",resumed="false"') +
	$(nm_metric 2 nodemesh_tls_handshakes_total 'direction="inbound",result="failure",resumed="false"')))
if ((vc_hit > vc_hit_before && vc_hit + vc_miss <= full2 && vc_miss >= 1)); then
	nm_pass "relay-verify-cache (node-2 inbound: hits $vc_hit_before -> $vc_hit, misses $vc_miss, full handshakes $full2)"
else
	nm_fail relay-verify-cache "node-2 inbound hits $vc_hit_before -> $vc_hit, misses $vc_miss, full handshakes $full2"
fi

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
