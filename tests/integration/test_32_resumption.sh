#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# TLS 1.3 resumption across nodes: one outbound agent (identity
# default/client) talks through static forwards to two inbound agents, "node
# A" on 127.0.0.2 and "node B" on 127.0.0.3, which present the same identity
# (default/server). Connections alternate A, B, A, B... With the session
# cache keyed by (source identity, destination node) each node's ticket has
# its own slot, so every connection after the first to each node resumes;
# keyed by peer identity alone they would evict each other and never resume.
#   resume-both-nodes    after the first full handshake to each node, every
#                        alternating connection is resumed, on both ends
#   resume-exact-ids     resumed flows still log the exact SPIFFE IDs
#   resume-bytes         every echo came back byte-exact
#   resume-off           with --tls-resumption off nothing resumes (control:
#                        the check can tell the difference)
set -uo pipefail

. "$(dirname "$0")/lib/standalone.sh" resume

for b in nodemeshd nodemesh tests/tools/nm_peer; do
	[[ -x $B/$b ]] || { fail resume-setup "$B/$b not built"; exit 1; }
done

OUTA=$BASE OUTB=$((BASE + 1)) INP=$((BASE + 2)) SRVP=$((BASE + 3))
ROUNDS=8
CLIENT_ID=spiffe://cluster.local/ns/default/sa/client
SERVER_ID=spiffe://cluster.local/ns/default/sa/server

cd "$WORK" || exit 1
"$B/nodemesh" ca init --dir ca --trust-domain cluster.local >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns default --sa client >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns default --sa server >/dev/null ||
	{ fail resume-setup "cannot create certificates"; exit 1; }

cat >out.json <<JSON
{ "trustDomain": "cluster.local", "certDir": "certs",
  "forwards": [
    { "name": "to-a", "mode": "outbound", "listen": "127.0.0.1:$OUTA",
      "peer": "127.0.0.2:$INP", "destination": "127.0.0.1:$SRVP",
      "identity": "default/client", "peerIdentity": "$SERVER_ID" },
    { "name": "to-b", "mode": "outbound", "listen": "127.0.0.1:$OUTB",
      "peer": "127.0.0.3:$INP", "destination": "127.0.0.1:$SRVP",
      "identity": "default/client", "peerIdentity": "$SERVER_ID" } ] }
JSON
for n in a b; do
	ip=127.0.0.2
	[[ $n == b ]] && ip=127.0.0.3
	cat >"in-$n.json" <<JSON
{ "trustDomain": "cluster.local", "certDir": "certs",
  "forwards": [
    { "name": "in-$n", "mode": "inbound", "listen": "$ip:$INP",
      "destination": "127.0.0.1:$SRVP", "identity": "default/server",
      "allowedPeers": [ "$CLIENT_ID" ] } ] }
JSON
done

timeout 120 "$B/tests/tools/nm_peer" serve --port "$SRVP" --addr 127.0.0.1 >srv.log 2>&1 &
PIDS+=($!)

# start_agents RESUMPTION: the three agents, fresh logs; 1 when one is not ready.
start_agents() {
	local f
	for f in a b out; do
		local cfg=in-$f.json
		[[ $f == out ]] && cfg=out.json
		: >"$f.log"
		"$B/nodemeshd" --config "$cfg" --instance "resume-$f-$$" --log-level debug \
			--tls-resumption "$1" 2>"$f.log" &
		AGENT[$f]=$!
		PIDS+=($!)
	done
	for _ in $(seq 100); do
		grep -q 'msg="ready"' a.log && grep -q 'msg="ready"' b.log &&
			grep -q 'msg="ready"' out.log && return 0
		sleep 0.1
	done
	return 1
}
stop_agents() {
	local f
	for f in a b out; do kill "${AGENT[$f]}" 2>/dev/null; done
	for f in a b out; do wait "${AGENT[$f]}" 2>/dev/null; done
}
declare -A AGENT=()

# alternate: ROUNDS connections, A then B then A...; BAD counts bad echoes.
alternate() {
	local i port
	BAD=0
	for ((i = 0; i < ROUNDS; i++)); do
		port=$OUTA
		((i % 2)) && port=$OUTB
		timeout 10 "$B/tests/tools/nm_peer" send --to "127.0.0.1:$port" --bytes 4096 \
			>"send-$i.json" 2>&1 && grep -q '"match":true' "send-$i.json" || BAD=$((BAD + 1))
	done
}
# tls_of LOG: the tls= field of each inbound "flow open" line, in order.
tls_of() { grep 'msg="flow open" dir=inbound' "$1" | sed -n 's/.* tls=\([a-z]*\).*/\1/p' | tr '\n' ' '; }
# Each flow's open line is logged once its handshake finished; wait for all.
wait_flows() {
	local want=$1
	for _ in $(seq 50); do
		(($(grep -c 'msg="flow open" dir=inbound' a.log) + $(grep -c 'msg="flow open" dir=inbound' b.log) >= want)) &&
			return 0
		sleep 0.1
	done
	return 1
}

if ! start_agents on; then
	fail resume-setup "agents not ready: $(tail -n 3 a.log b.log out.log)"
	exit 1
fi
alternate
wait_flows "$ROUNDS"
ta=$(tls_of a.log)
tb=$(tls_of b.log)
want="full $(printf 'resumed %.0s' $(seq $((ROUNDS / 2 - 1))))"
outres=$(grep -c 'msg="flow open" dir=outbound.* tls=resumed' out.log)
if [[ $ta == "$want" && $tb == "$want" ]] && ((outres == ROUNDS - 2)); then
	pass resume-both-nodes
else
	fail resume-both-nodes "node A saw '$ta', node B '$tb' (want '$want' on each); the outbound agent logged $outres resumed flows (want $((ROUNDS - 2)))"
fi
ids_ok=1
for n in a b; do
	grep 'msg="flow open" dir=inbound.* tls=resumed' "$n.log" | grep -qv "peer_id=$CLIENT_ID local_id=$SERVER_ID" &&
		ids_ok=0
done
grep 'msg="flow open" dir=outbound.* tls=resumed' out.log | grep -qv "peer_id=$SERVER_ID" && ids_ok=0
if ((ids_ok)) && grep -q "tls=resumed" a.log; then
	pass resume-exact-ids
else
	fail resume-exact-ids "a resumed flow logged other identities: $(grep -h 'tls=resumed' a.log b.log | head -n 2)"
fi
if ((BAD == 0)); then pass resume-bytes; else fail resume-bytes "$BAD of $ROUNDS echoes failed: $(cat send-0.json)"; fi
stop_agents

if ! start_agents off; then
	fail resume-off "agents not ready: $(tail -n 3 a.log b.log out.log)"
	exit 1
fi
alternate
wait_flows "$ROUNDS"
ta=$(tls_of a.log)
tb=$(tls_of b.log)
if ((BAD == 0)) && [[ $ta != *resumed* && $tb != *resumed* && $ta == full* && $tb == full* ]]; then
	pass resume-off
else
	fail resume-off "with resumption off: node A '$ta', node B '$tb', $BAD bad echoes"
fi
stop_agents
exit $((FAILS > 0))
