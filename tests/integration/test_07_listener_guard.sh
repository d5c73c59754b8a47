#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_07_listener_guard - scenario 7: the agent's listeners serve only the
# mesh.
#  - A direct TCP connection to node-1:15001 that connect4 did not redirect
#    (so no record exists) is closed by the agent at once, from another node
#    and from an unmeshed process in a pod's netns, and the agent logs
#    `no redirect record, closing` for that peer.
#  - On node-1:15008 a TLS 1.3 client without a certificate, and one with a
#    certificate from a different CA (same trust domain name, same SPIFFE
#    ID), fail: the agent logs `tls handshake failed` for them, never opens
#    an inbound flow, and the client sees a TLS alert.
#  - Control: the same client with the cluster's client certificate
#    completes the handshake (so the refusals are about the certificate).
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

command -v openssl >/dev/null || { nm_fail listener-guard "openssl missing (make deps)"; exit 1; }
nm_scenario_up listener-guard
log1=$(nm_agent_log 1)
node1=${NM_NODE_ADDR[1]}

# --- 15001 without a record -------------------------------------------------
guard_15001() { # NAME EXEC-PREFIX...
	local name=$1 out rc src closed
	shift
	out=$("$@" "$NM_PEER" connect --to "$node1:15001" --timeout-ms 2000 --wait-close-ms 2000)
	rc=$?
	src=$(nm_json "$out" local)
	closed=$(nm_json "$out" closed_by_peer)
	if [[ $rc -eq 0 && $closed != no && $closed != data ]] &&
		nm_wait_file_match "$log1" "msg=\"no redirect record, closing\".* peer=$src( |\$)" 2; then
		nm_pass "$name (closed: $closed after $(nm_json "$out" close_ms) ms)"
	else
		nm_fail "$name" "connect: $out; log: $(grep -F 'no redirect record' "$log1" | tail -n 1)"
	fi
}
guard_15001 guard-15001-from-node-2 nm_node_exec 2
guard_15001 guard-15001-from-unmeshed-pod-process nm_outside_exec client

# --- 15008 without a valid certificate ----------------------------------------
certs=$NM_STATE/certs/default
foreign=$(nm_cluster_foreign_cert)

# tls_probe TAG [openssl args...]: TLS 1.3 client from node-2 to node-1:15008
# that stays connected for a second (so a post-handshake alert arrives).
tls_probe() {
	local tag=$1
	shift
	nm_node_exec 2 timeout 10 openssl s_client -connect "$node1:15008" -tls1_3 \
		-alpn nmtp/1 -servername echo.default.cluster.local \
		-CAfile "$certs/echo/bundle.pem" "$@" \
		< <(sleep 1) >"$NM_STATE/s_client-$tag.out" 2>&1
}

count() { grep -cF "$1" "$log1"; }

tls_refused() { # NAME TAG [openssl args...]
	local name=$1 tag=$2 fails0 fails1 flows0 flows1 out
	shift 2
	fails0=$(count 'msg="tls handshake failed"')
	flows0=$(count 'msg="flow open" dir=inbound')
	tls_probe "$tag" "$@"
	sleep 0.2
	fails1=$(count 'msg="tls handshake failed"')
	flows1=$(count 'msg="flow open" dir=inbound')
	out=$NM_STATE/s_client-$tag.out
	if ((fails1 > fails0)) && ((flows1 == flows0)) &&
		grep -Eqi 'alert|handshake failure|errno=' "$out"; then
		nm_pass "$name ($(grep -F 'msg="tls handshake failed"' "$log1" | tail -n 1 | sed -n 's/.*reason=//p'))"
	else
		nm_fail "$name" "agent handshake failures $fails0 -> $fails1, inbound flows $flows0 -> $flows1; client: $(grep -Ei 'alert|error|verify return code' "$out" | head -n 3 | tr '\n' ' ')"
	fi
}

tls_refused guard-15008-no-client-cert nocert
tls_refused guard-15008-foreign-ca-cert foreign -cert "$foreign/cert.pem" -key "$foreign/key.pem"

# Control: the cluster's own client certificate is accepted.
fails0=$(count 'msg="tls handshake failed"')
tls_probe valid -cert "$certs/client/cert.pem" -key "$certs/client/key.pem"
fails1=$(count 'msg="tls handshake failed"')
out=$NM_STATE/s_client-valid.out
if grep -q 'Verify return code: 0 (ok)' "$out" && grep -q 'ALPN protocol: nmtp/1' "$out" &&
	((fails1 == fails0)); then
	nm_pass guard-15008-control-valid-cert
else
	nm_fail guard-15008-control-valid-cert "agent handshake failures $fails0 -> $fails1; client: $(grep -Ei 'alert|error|verify|alpn' "$out" | head -n 4 | tr '\n' ' ')"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
