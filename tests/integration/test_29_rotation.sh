#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_29_rotation - issue 9: certificates rotate under load without a drop.
# The agents' certDir is moved (SIGHUP) to a folder in Kubernetes'
# atomic-writer layout (..data -> ..tsN, default -> ..data/default), so each
# rotation is one rename of ..data, as kubelet does for a secret volume.
# 50 paced streams (client pod on node-1 -> echo VIP, cross node) run for
# 30 s while the leaves of both identities are re-issued every 5 s and the
# root rotates once:
#   t=5  leaves from root 1, bundle root 1
#   t=10 leaves from root 1, bundle root 1 + root 2   (anchors 2)
#   t=15 leaves from root 2, bundle root 1 + root 2
#   t=20 leaves from root 2, bundle root 2            (anchors 1)
#   t=25 leaves from root 2, bundle root 2
# Checks:
#   certdir-moved          both agents watch the new certDir after SIGHUP
#   rotation-N             (N = 1..5) node-2's 15008 presents echo's new
#                          serial to a new handshake (openssl s_client, no
#                          session) within 1 s of the rename; both agents
#                          log the swap with the generation and the serials
#   bundle-anchors         the swaps at t=10 and t=20 say anchors_changed=yes
#                          with anchors=2 and then 1; the others say no
#   old-root-accepted      before t=20 a client with a root-1 leaf is served
#   old-root-refused       after t=20 the same client is refused
#   sessions-reset         before the bundle change a second meshed flow
#                          resumes; after it the next one is a full
#                          handshake on node-2 (no session from the old set
#                          resumes)
#   streams-no-drop        all 50 streams got every byte back, in order
# The write-to-new-handshake times are printed for the notes.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

command -v openssl >/dev/null || { nm_fail rotation "openssl missing"; exit 1; }
command -v jq >/dev/null || { nm_fail rotation "jq missing"; exit 1; }
nm_scenario_up rotation
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
node2=${NM_NODE_ADDR[2]}
echo_ip=$(nm_pod_ip echo)
sni=echo.default.$NM_TRUST_DOMAIN
K=$NM_STATE/certs-k8s
STREAMS=50
STREAM_BYTES=$((2 * 1024 * 1024))
DURATION_MS=30000

after() { tail -n +"$(($2 + 1))" "$1"; }
wait_after() { # LOG MARK ERE SECONDS
	local i
	for ((i = 0; i < $4 * 20; i++)); do
		after "$1" "$2" | grep -Eq -- "$3" && return 0
		sleep 0.05
	done
	return 1
}
serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }
probe_serial() {
	nm_node_exec 1 openssl s_client -connect "$node2:$NM_INBOUND_PORT" \
		-servername "$sni" -alpn nmtp/1 -cert "$K/default/client/cert.pem" \
		-key "$K/default/client/key.pem" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
now_ms() { date +%s%3N; }

# --- the second root, and every tree prepared before the clock starts -------
"$NODEMESH" ca init --dir "$NM_STATE/ca2" --trust-domain "$NM_TRUST_DOMAIN" >>"$NM_STATE/ca.out" 2>&1 ||
	{ nm_fail rotation "ca init failed"; exit 1; }
cat "$NM_STATE/ca/ca.crt" "$NM_STATE/ca2/ca.crt" >"$NM_STATE/both.pem"
# tree N CA BUNDLE: $K/..tsN with a leaf per account from CA, BUNDLE as bundle.
tree() {
	local sa
	mkdir -p "$K/..ts$1"
	for sa in "${NM_SERVICE_ACCOUNTS[@]}"; do
		"$NODEMESH" ca issue --dir "$2" --out "$K/..ts$1" --ns default --sa "$sa" \
			>>"$NM_STATE/ca.out" 2>&1 || return 1
		cp "$3" "$K/..ts$1/default/$sa/bundle.pem" || return 1
	done
}
mkdir -p "$K"
tree 0 "$NM_STATE/ca" "$NM_STATE/ca/ca.crt" &&
	tree 1 "$NM_STATE/ca" "$NM_STATE/ca/ca.crt" &&
	tree 2 "$NM_STATE/ca" "$NM_STATE/both.pem" &&
	tree 3 "$NM_STATE/ca2" "$NM_STATE/both.pem" &&
	tree 4 "$NM_STATE/ca2" "$NM_STATE/ca2/ca.crt" &&
	tree 5 "$NM_STATE/ca2" "$NM_STATE/ca2/ca.crt" ||
	{ nm_fail rotation "could not issue the rotation trees"; exit 1; }
ln -s ..ts0 "$K/..data"
ln -s ..data/default "$K/default"
# A client leaf from root 1, kept aside for the old-root checks.
old=$NM_STATE/old-root-client
mkdir -p "$old"
cp "$K/..ts0/default/client/cert.pem" "$K/..ts0/default/client/key.pem" "$old/"

# --- move certDir (SIGHUP) ----------------------------------------------------
cfg=$NM_STATE/cluster.json
m1=$(wc -l <"$log1")
m2=$(wc -l <"$log2")
jq '.certDir = "certs-k8s"' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_1" "$NM_AGENT_PID_2"
s0=$(serial_of "$K/default/echo/cert.pem")
if wait_after "$log1" "$m1" 'msg="config reloaded"' 5 && wait_after "$log2" "$m2" 'msg="config reloaded"' 5 &&
	[[ $(probe_serial) == "$s0" ]]; then
	nm_pass "certdir-moved (node-2 presents $s0 from $K)"
else
	nm_fail certdir-moved "agents did not reload onto $K: $(after "$log2" "$m2" | grep -E 'reload|rejected' | tail -n 2)"
	nm_dump_logs
	exit 1
fi

# swap N: ..data -> ..tsN by one rename, and the old tree removed.
swap() {
	ln -sfn "..ts$1" "$K/..data_tmp" && mv -T "$K/..data_tmp" "$K/..data"
}

# --- streams ------------------------------------------------------------------
pids=()
for ((i = 0; i < STREAMS; i++)); do
	nm_pod_spawn client "stream-$i" "$NM_PEER" send --to 198.19.0.10:80 --bytes "$STREAM_BYTES" \
		--duration-ms "$DURATION_MS" --timeout-ms 120000
	pids+=("$NM_LAST_PID")
done
t0=$(now_ms)

oldroot() { # NAME: the root-1 client straight at node-2's 15008
	nm_node_exec 1 "$NM_PEER" nmtp --to "$node2:$NM_INBOUND_PORT" --dst "$echo_ip:8080" \
		--cert "$old/cert.pem" --key "$old/key.pem" --sni "$sni" --bytes 4K --timeout-ms 3000
}
flow_tls() { # a meshed flow client -> echo; prints node-2's tls= for it
	local out src line
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 4K --timeout-ms 10000)
	[[ $(nm_json "$out" match) == true ]] || { echo "failed"; return; }
	src=$(nm_json "$out" local)
	line=$(nm_flow_line "$log2" inbound src "$src" 3) || { echo "no-flow-line"; return; }
	nm_kv "$line" tls || echo "?"
}

times=()
anchors_ok=1
anchors_msg=""
for n in 1 2 3 4 5; do
	# Sleep to t = 5 n s.
	while (($(now_ms) - t0 < n * 5000)); do sleep 0.05; done
	want=$(serial_of "$K/..ts$n/default/echo/cert.pem")
	m1=$(wc -l <"$log1")
	m2=$(wc -l <"$log2")
	prev=$(readlink "$K/..data")
	w=$(now_ms)
	swap "$n"
	got="" took=-1
	while (($(now_ms) - w < 3000)); do
		got=$(probe_serial)
		if [[ $got == "$want" ]]; then
			took=$(($(now_ms) - w))
			break
		fi
	done
	rm -rf "${K:?}/$prev"
	re="msg=\"certificates rotated\" .*generation=[0-9]+ .*default/echo=$want\\*"
	if ! wait_after "$log2" "$m2" "$re" 3 || ! wait_after "$log1" "$m1" "$re" 3; then
		nm_fail "rotation-$n" "a node logged no swap to $want: $(after "$log2" "$m2" | grep -E 'rotated|refused' | tail -n 2)"
		continue
	fi
	line=$(after "$log2" "$m2" | grep -E "$re" | head -n 1)
	agent_ms=$(nm_kv "$line" since_change_ms)
	if ((took >= 0 && took <= 1000)); then
		nm_pass "rotation-$n (new serial presented $took ms after the rename; node-2 swapped $agent_ms ms after the event, generation $(nm_kv "$line" generation))"
	else
		nm_fail "rotation-$n" "node-2 presented '$got' (want $want) $took ms after the rename (limit 1000)"
	fi
	times+=("$took")
	case $n in
	2) want_a="anchors=2 anchors_changed=yes" ;;
	4) want_a="anchors=1 anchors_changed=yes" ;;
	*) want_a="anchors=[0-9]+ anchors_changed=no" ;;
	esac
	if ! grep -Eq "$want_a" <<<"$line"; then
		anchors_ok=0
		anchors_msg+=" t=$((n * 5)): $(grep -Eo 'anchors=[0-9]+ anchors_changed=[a-z]+' <<<"$line")"
	fi
	if ((n == 3)); then
		out=$(oldroot)
		if [[ $(nm_json "$out" status) == 0 && $(nm_json "$out" echoed) == 4096 ]]; then
			nm_pass "old-root-accepted (root 1 still in the bundle)"
		else
			nm_fail old-root-accepted "the root-1 client was not served while root 1 was trusted: $out"
		fi
		# Node-1's session cache toward node-2 under the old set: the
		# second flow resumes, so a full handshake later means reset.
		flow_tls >/dev/null
		before_tls=$(flow_tls)
	fi
	if ((n == 4)); then
		tls=$(flow_tls)
		if [[ $before_tls == resumed && $tls == full ]]; then
			nm_pass "sessions-reset (before the bundle change tls=$before_tls, first flow after it tls=$tls)"
		else
			nm_fail sessions-reset "before the bundle change tls=$before_tls (want resumed), after it tls=$tls (want full)"
		fi
		out=$(oldroot)
		if [[ $(nm_json "$out" status) != 0 && $(nm_json "$out" echoed) == 0 ]]; then
			nm_pass "old-root-refused (handshake=$(nm_json "$out" handshake) error=$(nm_json "$out" error))"
		else
			nm_fail old-root-refused "the root-1 client was served after root 1 left the bundle: $out"
		fi
	fi
done
if ((anchors_ok)); then
	nm_pass "bundle-anchors (changed at t=10 to 2 roots and at t=20 to 1, nowhere else)"
else
	nm_fail bundle-anchors "unexpected:$anchors_msg"
fi
nm_log "write -> new serial at node-2 (ms): ${times[*]}"

# --- the streams --------------------------------------------------------------
for pid in "${pids[@]}"; do
	for ((i = 0; i < 1200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
done
ok=0 bad=""
for ((i = 0; i < STREAMS; i++)); do
	out=$(cat "$NM_STATE/stream-$i.out" 2>/dev/null)
	if [[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == "$STREAM_BYTES" ]] &&
		(($(nm_json "$out" elapsed_ms) >= DURATION_MS)); then
		ok=$((ok + 1))
	else
		bad+=" [$i: $out]"
	fi
done
if ((ok == STREAMS)); then
	nm_pass "streams-no-drop ($STREAMS streams x $STREAM_BYTES bytes over ${DURATION_MS} ms, every byte echoed)"
else
	nm_fail streams-no-drop "$((STREAMS - ok)) of $STREAMS streams failed:${bad:0:800}"
fi

((NM_FAILS == 0)) || nm_dump_logs
exit $((NM_FAILS > 0))
