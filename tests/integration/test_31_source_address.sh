#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_31_source_address - the pod sees the real client (issue 9): the agent
# connects to a pod from the client's own address and port (IP_TRANSPARENT,
# nft `socket transparent` mark + policy routing for the replies).
#   src-preserved-status     both agents report source_address "preserved"
#   src-cross-node-*         client (node-1) -> echo (node-2), by VIP and by
#                            pod address: the echo server's getpeername() is
#                            the client's address:port, every byte echoed back
#   src-same-node            client -> local-echo (node-1), the same
#   src-reverse-cross-node   client-2 (node-2) -> local-echo (node-1)
#   src-*-halfclose          after the client's FIN the server still answers
#   src-strict-*             echo and local-echo STRICT: an unmeshed connect
#                            is dropped, preserved flows (the tuple the agent
#                            registers is the client's) still arrive; the
#                            checks below run against the STRICT pods
#   src-nmtp-own-src         a hand-made NMTP client with the client identity
#                            and SRC = the client pod's address: delivered,
#                            the pod sees that address
#   src-forged-refused       the same with SRC = local-echo's address (owned by
#                            the echo identity): NMTP status 1, nothing reaches
#                            the pod, a "forged SRC" refusal line and the
#                            forged_src count in agent.json
#   src-ipv6                 the same over IPv6 (IPV6_TRANSPARENT, the v6
#                            rule): echo at fd00:18:2::11 sees [fd00:18:1::11];
#                            echo's own v6 address as SRC is refused
#   src-routing-removed      after the agent stops, its nft table and fwmark
#                            rules are gone from the node netns
#   src-fallback-*           mesh.preserveSourceAddress false: agent.json and
#                            `nodemesh status` say "agent" with the reason, a
#                            warn line says so, and the pod sees node-2's own
#                            address; traffic still flows
# Pods are laid out as by a routed CNI (NM_POD_NET=routed): same-node pod
# traffic crosses the node's IP layer, which preservation needs (a pod on the
# client's link would answer it directly; the agent then uses its own
# address for such a flow, see docs/architecture.md).
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
[[ -x $CLOSER ]] || { nm_fail source-address "$CLOSER missing (run make)"; exit 1; }
NM_POD_NET=routed
nm_scenario_up source-address
log2=$(nm_agent_log 2)
client_ip=$(nm_pod_ip client)
client2_ip=$(nm_pod_ip client-2)
echo_ip=$(nm_pod_ip echo)
local_ip=$(nm_pod_ip local-echo)
certs=$NM_STATE/certs/default
echo_out=$NM_STATE/echo-echo.out
local_out=$NM_STATE/echo-local-echo.out

runstate() { cat "$NM_RUN_DIR_BASE/$(nm_instance "$1")/agent.json" 2>/dev/null; }
NM_RUN_DIR_BASE=${NM_RUN_DIR_BASE:-/run/nodemesh}
feature() { # NODE KEY
	runstate "$1" | jq -r --arg k "$2" '.features[$k] // empty'
}

# --- status ----------------------------------------------------------------
if [[ $(feature 1 source_address) == preserved && $(feature 2 source_address) == preserved ]]; then
	nm_pass src-preserved-status
else
	nm_fail src-preserved-status "node-1: $(feature 1 source_address) $(feature 1 source_address_reason); node-2: $(feature 2 source_address) $(feature 2 source_address_reason)"
fi

# check_seen NAME POD_OUT SENDER_POD TO BYTES: one exact echo through the mesh;
# the server logged accept and close with the sender's own address:port.
check_seen() {
	local name=$1 out=$2 pod=$3 to=$4 bytes=$5 res local
	res=$(nm_pod_exec "$pod" "$NM_PEER" send --to "$to" --bytes "$bytes" --timeout-ms 10000)
	local=$(nm_json "$res" local)
	if [[ $(nm_json "$res" result) != ok ]]; then
		nm_fail "$name" "send: $res"
	elif ! nm_wait_file_match "$out" "^accept peer=$local " 3; then
		nm_fail "$name" "server did not see $local; saw: $(grep '^accept' "$out" | tail -n 2 | tr '\n' ' ')"
	elif ! nm_wait_file_match "$out" "^close peer=$local bytes=$bytes " 3; then
		nm_fail "$name" "server did not echo $bytes bytes to $local: $(grep "peer=$local" "$out" | tr '\n' ' ')"
	else
		nm_pass "$name (server saw $local, $bytes bytes each way)"
	fi
}

check_seen src-cross-node-vip "$echo_out" client 198.19.0.10:80 1048576
check_seen src-cross-node-pod-address "$echo_out" client "$echo_ip:8080" 65536
check_seen src-same-node "$local_out" client 198.19.0.11:80 1048576
check_seen src-reverse-cross-node "$local_out" client-2 "$local_ip:8080" 65536
[[ $(nm_json "$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.11:80 --bytes 1)" local) == "$client_ip:"* ]] ||
	nm_fail src-same-node "the client's own address is not $client_ip"

# --- half-close still works -----------------------------------------------
for pod in echo local-echo; do
	nm_pod_spawn "$pod" "closer-$pod" "$CLOSER" serve --port 9000
	nm_pod_info "$pod"
	nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail source-address "closer in $pod did not listen"
done
for pair in "cross-node $echo_ip" "same-node $local_ip"; do
	read -r label ip <<<"$pair"
	if out=$(nm_pod_exec client "$CLOSER" halfclose --to "$ip:9000" --bytes 300000 2>&1) &&
		[[ $out == *'answer "got 300000"'* ]]; then
		nm_pass "src-$label-halfclose"
	else
		nm_fail "src-$label-halfclose" "$out"
	fi
done

# --- STRICT pods: the tuple registered before connect is the client's -------
# echo and local-echo turn STRICT (docs/strict.md): their cgroup_skb/ingress
# admits a SYN only when the agent registered its exact 4-tuple in
# nm_mesh_conns, here (client address, client port, pod, port). An unmeshed
# connect is dropped (the control), preserved flows still arrive. Everything
# below runs against the STRICT pods.
cfg=$NM_STATE/cluster.json
jq '(.workloads[] | select(.name == "echo" or .name == "local-echo") | .mode) = "STRICT"' \
	"$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
nm_agent_stop 1
nm_agent_stop 2
if nm_agent_start 1 && nm_agent_start 2; then
	out=$(nm_outside_exec client "$NM_PEER" connect --to "$echo_ip:8080" --timeout-ms 1000)
	rc=$?
	if ((rc == 0)); then
		nm_fail src-strict-control "an unmeshed connect reached the STRICT echo pod: $out"
	else
		nm_pass "src-strict-control (unmeshed connect to the STRICT pod: exit $rc)"
	fi
	check_seen src-strict-cross-node "$echo_out" client 198.19.0.10:80 65536
	check_seen src-strict-same-node "$local_out" client 198.19.0.11:80 65536
else
	nm_fail src-strict "agents did not restart with STRICT pods"
fi

# --- SRC from a hand-made NMTP client (node-1's netns, client identity) ---
nmtp() { # SRC
	nm_node_exec 1 "$NM_PEER" nmtp --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" \
		--dst "$echo_ip:8080" --src "$1" --cert "$certs/client/cert.pem" \
		--key "$certs/client/key.pem" --sni "echo.default.$NM_TRUST_DOMAIN" \
		--bytes 4K --timeout-ms 5000
}
out=$(nmtp "$client_ip:41731")
if [[ $(nm_json "$out" status) == 0 && $(nm_json "$out" echoed) == 4096 ]] &&
	nm_wait_file_match "$echo_out" "^close peer=$client_ip:41731 bytes=4096 " 3; then
	nm_pass "src-nmtp-own-src (pod saw $client_ip:41731)"
else
	nm_fail src-nmtp-own-src "client: $out; server: $(tail -n 2 "$echo_out" | tr '\n' ' ')"
fi

forged=$local_ip:41732
out=$(nmtp "$forged")
line=$(nm_log_line "$log2" "inbound flow refused" 3 "src=$forged")
sleep 0.2 # a leaking agent would have reached the pod by now
if [[ $(nm_json "$out" status) != 1 ]]; then
	nm_fail src-forged-refused "status is not 1 (denied): $out"
elif [[ $line != *'reason="forged SRC: SRC belongs to a workload of another identity"'* ]]; then
	nm_fail src-forged-refused "no forged-SRC refusal line: ${line:-none}"
elif grep -q "peer=$forged " "$echo_out"; then
	nm_fail src-forged-refused "the pod got a connection from $forged"
else
	for ((i = 0; i < 100; i++)); do
		(($(runstate 2 | jq -r '.features.source_address_counts.forged_src // 0') >= 1)) && break
		sleep 0.05
	done
	if (($(runstate 2 | jq -r '.features.source_address_counts.forged_src // 0') >= 1)); then
		nm_pass "src-forged-refused (status 1, logged, counted)"
	else
		nm_fail src-forged-refused "forged_src not counted: $(runstate 2 | jq -c .features)"
	fi
fi

# --- IPv6: IPV6_TRANSPARENT and the v6 rule ----------------------------------
# echo gets an IPv6 address (routed, as above) and client one in the cluster
# file only: the hand-made NMTP client speaks for it over node-2's IPv4
# tunnel port, so node-2's agent connects to echo from [c6]:port and the
# pod's v6 reply must come back through the v6 fwmark rule.
e6=fd00:18:2::11
c6=fd00:18:1::11
gw6=fd00:18:2::1
ns2=$(nm_node_ns 2)
nm_pod_info echo
v6ok=1
ip -n "$NM_P_NS" addr add "$e6/128" dev eth0 nodad &&
	ip -n "$NM_P_NS" -6 route add "$gw6" dev eth0 &&
	ip -n "$NM_P_NS" -6 route add default via "$gw6" dev eth0 &&
	ip -n "$ns2" addr add "$gw6/128" dev "${NM_RUN}br" nodad &&
	ip -n "$ns2" -6 route add "$e6/128" dev "${NM_RUN}br" || v6ok=0
jq --arg e "$e6" --arg c "$c6" '(.workloads[] | select(.name == "echo") | .ip6) = $e |
	(.workloads[] | select(.name == "client") | .ip6) = $c' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
nm_agent_stop 2
nm_agent_start 2 || v6ok=0
nm_pod_spawn echo echo6 "$NM_PEER" serve --port 8081 --addr :: --log-conns
nm_wait_listen "$NM_P_NS" 8081 5 || v6ok=0
if ((!v6ok)); then
	nm_fail src-ipv6 "IPv6 set-up failed"
else
	out=$(nm_node_exec 1 "$NM_PEER" nmtp --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" \
		--dst "[$e6]:8081" --src "[$c6]:41733" --cert "$certs/client/cert.pem" \
		--key "$certs/client/key.pem" --sni "echo.default.$NM_TRUST_DOMAIN" \
		--bytes 4K --timeout-ms 5000)
	if [[ $(nm_json "$out" status) == 0 && $(nm_json "$out" echoed) == 4096 ]] &&
		nm_wait_file_match "$NM_STATE/echo6.out" "^close peer=\\[$c6\\]:41733 bytes=4096 " 3; then
		nm_pass "src-ipv6 (pod saw [$c6]:41733)"
	else
		nm_fail src-ipv6 "client: $out; server: $(tail -n 2 "$NM_STATE/echo6.out" | tr '\n' ' ')"
	fi
	# echo's own v6 address claimed by the client identity
	out=$(nm_node_exec 1 "$NM_PEER" nmtp --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" \
		--dst "[$e6]:8081" --src "[$e6]:41734" --cert "$certs/client/cert.pem" \
		--key "$certs/client/key.pem" --sni "echo.default.$NM_TRUST_DOMAIN" \
		--bytes 4K --timeout-ms 5000)
	line=$(nm_log_line "$log2" "inbound flow refused" 3 "src=[$e6]:41734")
	if [[ $(nm_json "$out" status) == 1 && $line == *'forged SRC'* ]] &&
		! grep -q "41734" "$NM_STATE/echo6.out"; then
		nm_pass src-ipv6-forged-refused
	else
		nm_fail src-ipv6-forged-refused "client: $out; log: ${line:-none}"
	fi
fi

# --- routing is removed with the agent --------------------------------------
nm_agent_stop 2
rules=$(ip -n "$ns2" rule show; ip -n "$ns2" -6 rule show)
tables=$(ip netns exec "$ns2" nft list tables 2>&1)
if [[ $rules != *"lookup 15008"* && $tables != *nodemesh* ]]; then
	nm_pass src-routing-removed
else
	nm_fail src-routing-removed "left behind: rules: $(grep 15008 <<<"$rules" | tr '\n' ' ') tables: $tables"
fi

# --- fallback: preserveSourceAddress false ----------------------------------
jq '.mesh.preserveSourceAddress = false' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
nm_agent_start 2 || { nm_fail src-fallback-status "agent did not restart"; nm_dump_logs; exit 1; }
reason=$(feature 2 source_address_reason)
status_json=$("$NODEMESH" status --json --instance "$(nm_instance 2)" 2>&1)
status_text=$("$NODEMESH" status --instance "$(nm_instance 2)" 2>&1)
if [[ $(feature 2 source_address) == agent && $reason == *preserveSourceAddress* &&
	$(jq -r '.. | objects | .source_address? // empty' <<<"$status_json" | head -n 1) == agent &&
	$status_text == *"source address seen by pods: agent"* ]] &&
	grep -q 'msg="source address not preserved' "$log2"; then
	nm_pass "src-fallback-status (reason: $reason)"
else
	nm_fail src-fallback-status "agent.json: $(runstate 2 | jq -c .features); status: $(grep -i source <<<"$status_text")"
fi
res=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 65536 --timeout-ms 10000)
local=$(nm_json "$res" local)
seen=$(grep "^close .* bytes=65536 " "$echo_out" | tail -n 1)
seen=$(nm_kv "$seen" peer)
addrs=$(ip -n "$ns2" -o addr show) # not piped into grep -q: pipefail and SIGPIPE
if [[ $(nm_json "$res" result) == ok && -n $seen && ${seen%:*} != "$client_ip" &&
	$addrs == *" ${seen%:*}/"* ]]; then
	nm_pass "src-fallback-agent-address (client $local, pod saw $seen, node-2's)"
else
	nm_fail src-fallback-agent-address "send: $res; pod saw: ${seen:-nothing}"
fi

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
