#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Static forwarding listeners on loopback: an outbound agent carries every
# connection on its listener through mTLS to an inbound agent, which delivers
# it to a fixed destination. Asserts, each on its own:
#   fwd_relay           1 MiB echoes back unchanged through the hop
#   fwd_identities      both agents logged the peer's exact SPIFFE ID
#   fwd_no_cert         a TLS client without a certificate gets no echo
#   fwd_foreign_ca      a client with a certificate from another CA gets no echo
#   fwd_not_allowed     a client with a valid cert not in allowedPeers is refused
#   fwd_bad_config      a malformed forward is rejected naming file and field
#   fwd_sigterm         SIGTERM makes both agents exit 0
set -uo pipefail

. "$(dirname "$0")/lib/standalone.sh" fwd

OUTP=$BASE INP=$((BASE + 1)) SRVP=$((BASE + 2)) OUT2P=$((BASE + 3))

cd "$WORK" || exit 1
"$B/nodemesh" ca init --dir ca --trust-domain cluster.local >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns default --sa client >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns default --sa server >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns other --sa intruder >/dev/null &&
	"$B/nodemesh" ca init --dir ca2 --trust-domain cluster.local >/dev/null &&
	"$B/nodemesh" ca issue --dir ca2 --out certs2 --ns default --sa client >/dev/null ||
	{ fail fwd_setup "cannot create certificates"; exit 1; }

cat >out.json <<JSON
{ "trustDomain": "cluster.local", "certDir": "certs",
  "forwards": [
    { "name": "echo", "mode": "outbound", "listen": "127.0.0.1:$OUTP",
      "peer": "127.0.0.1:$INP", "destination": "127.0.0.1:$SRVP",
      "identity": "default/client",
      "peerIdentity": "spiffe://cluster.local/ns/default/sa/server" },
    { "name": "intruder", "mode": "outbound", "listen": "127.0.0.1:$OUT2P",
      "peer": "127.0.0.1:$INP", "destination": "127.0.0.1:$SRVP",
      "identity": "other/intruder",
      "peerIdentity": "spiffe://cluster.local/ns/default/sa/server" } ] }
JSON
cat >in.json <<JSON
{ "trustDomain": "cluster.local", "certDir": "certs",
  "forwards": [
    { "name": "echo-in", "mode": "inbound", "listen": "127.0.0.1:$INP",
      "destination": "127.0.0.1:$SRVP", "identity": "default/server",
      "allowedPeers": [ "spiffe://cluster.local/ns/default/sa/client" ] } ] }
JSON

timeout 120 "$B/tests/tools/nm_peer" serve --port "$SRVP" --addr 127.0.0.1 >srv.log 2>&1 &
PIDS+=($!)
"$B/nodemeshd" --config in.json --instance "fwd-in-$$" --log-level debug 2>in.log &
INPID=$!
PIDS+=($INPID)
"$B/nodemeshd" --config out.json --instance "fwd-out-$$" --log-level debug 2>out.log &
OUTPID=$!
PIDS+=($OUTPID)
for _ in $(seq 50); do
	grep -q 'msg="ready"' in.log && grep -q 'msg="ready"' out.log && break
	sleep 0.1
done

if timeout 20 "$B/tests/tools/nm_peer" send --to "127.0.0.1:$OUTP" --bytes 1048576 >send.json 2>&1 &&
	grep -q '"match":true' send.json; then
	pass fwd_relay
else
	fail fwd_relay "$(cat send.json)"
fi

sleep 0.2
if grep -q 'dir=inbound .*peer_id=spiffe://cluster.local/ns/default/sa/client ' in.log &&
	grep -q 'dir=outbound .*peer_id=spiffe://cluster.local/ns/default/sa/server' out.log; then
	pass fwd_identities
else
	fail fwd_identities "flow lines without the expected peer IDs"
fi

# A raw TLS client: the server must not relay without a valid client cert.
probe_tls() { # extra s_client args...
	echo ping | timeout 5 openssl s_client -connect "127.0.0.1:$INP" -tls1_3 \
		-alpn nmtp/1 -quiet "$@" 2>/dev/null | head -c 100
}
if [[ -z $(probe_tls -CAfile certs/default/client/bundle.pem) ]] &&
	grep -q 'tls handshake failed' in.log; then
	pass fwd_no_cert
else
	fail fwd_no_cert "a client without a certificate was answered"
fi
if [[ -z $(probe_tls -cert certs2/default/client/cert.pem -key certs2/default/client/key.pem) ]]; then
	pass fwd_foreign_ca
else
	fail fwd_foreign_ca "a client with a foreign CA's certificate was answered"
fi

res=$(timeout 10 "$B/tests/tools/nm_peer" send --to "127.0.0.1:$OUT2P" --bytes 100 2>&1)
if [[ $res != *'"match":true'* ]] && grep -q 'inbound flow refused.*peer_id=spiffe://cluster.local/ns/other/sa/intruder .*status=denied' in.log; then
	pass fwd_not_allowed
else
	fail fwd_not_allowed "intruder identity reached the destination: $res"
fi

sed 's/"peer": "127.0.0.1:'"$INP"'"/"peer": "127.0.0.1:99999"/' out.json >bad.json
if ! timeout 5 "$B/nodemeshd" --config bad.json --instance "fwd-bad-$$" 2>bad.log &&
	grep -q 'bad.json: forwards\[0\].peer' bad.log; then
	pass fwd_bad_config
else
	fail fwd_bad_config "$(head -c 300 bad.log)"
fi

kill -TERM "$INPID" "$OUTPID"
rc_in=0 rc_out=0
wait "$INPID" || rc_in=$?
wait "$OUTPID" || rc_out=$?
if ((rc_in == 0 && rc_out == 0)); then
	pass fwd_sigterm
else
	fail fwd_sigterm "exit codes $rc_in $rc_out"
fi
