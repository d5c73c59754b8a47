#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_15_reload - reload is all or nothing, and identities never come from
# a position in the file (foundation faults 1, 2). After each edit of the
# cluster file both agents reload (SIGHUP), then one cross-node flow from the
# client pod must work and both agents must log the exact identities for it
# (node-1: src_id=client, peer_id=echo; node-2: peer_id=client,
# local_id=echo):
#   reload-reorder        workloads reversed
#   reload-insert-first   a new workload inserted before all others
#   reload-delete-middle  a workload in the middle removed
#   reload-ports          outboundPort and inboundPort changed: the agents
#                         listen on the new ports and no longer on the old
#   reload-trust-domain   trustDomain and certDir changed to a new CA:
#                         identities are logged in the new trust domain
#   reload-restart-field  a node address change is refused naming the
#                         field, and traffic keeps flowing
#   generations           each applied state has a higher generation, and
#                         nm_agent_state carries it
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up reload
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)
cfg=$NM_STATE/cluster.json
td=$NM_TRUST_DOMAIN

# apply JQ-FILTER: rewrite the cluster file, SIGHUP both agents and wait
# until each logged one more "config reloaded" line than before.
apply() {
	local before1 before2
	before1=$(grep -c 'msg="config reloaded"' "$log1")
	before2=$(grep -c 'msg="config reloaded"' "$log2")
	jq "$1" "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg" || return 1
	kill -HUP "$NM_AGENT_PID_1" "$NM_AGENT_PID_2"
	local i
	for ((i = 0; i < 100; i++)); do
		if (($(grep -c 'msg="config reloaded"' "$log1") > before1 &&
			$(grep -c 'msg="config reloaded"' "$log2") > before2)); then
			return 0
		fi
		sleep 0.05
	done
	nm_log "reload did not complete: $(grep -h 'config' "$log1" "$log2" | tail -n 4)"
	return 1
}

# flow_identities NAME: one flow client -> echo VIP, then the identity check.
flow_identities() {
	local name=$1 out src out_line in_line flow
	local client_id=spiffe://$td/ns/default/sa/client echo_id=spiffe://$td/ns/default/sa/echo
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000)
	if [[ $(nm_json "$out" match) != true ]]; then
		nm_fail "$name" "client -> 198.19.0.10:80 failed: $out"
		return
	fi
	src=$(nm_json "$out" local)
	out_line=$(nm_flow_line "$log1" outbound src "$src") || out_line=""
	flow=$(nm_kv "$out_line" flow) || flow=""
	in_line=""
	[[ -n $flow ]] && { in_line=$(nm_flow_line "$log2" inbound flow "$flow") || in_line=""; }
	if [[ $(nm_kv "$out_line" src_id) == "$client_id" && $(nm_kv "$out_line" peer_id) == "$echo_id" &&
		$(nm_kv "$in_line" peer_id) == "$client_id" && $(nm_kv "$in_line" local_id) == "$echo_id" ]]; then
		nm_pass "$name"
	else
		nm_fail "$name" "identities: node-1 '${out_line:-no line}' node-2 '${in_line:-no line}'"
	fi
}

gen_of() { grep -o 'msg="config reloaded".*generation=[0-9]*' "$1" | tail -n 1 | sed 's/.*generation=//'; }

flow_identities reload-baseline

apply '.workloads |= reverse' && flow_identities reload-reorder ||
	nm_fail reload-reorder "reload failed"
g1=$(gen_of "$log1")

apply '.workloads |= [{"name": "extra", "namespace": "default", "serviceAccount": "extra",
	"labels": {"app": "extra"}, "ip": "198.18.1.200", "node": "node-1"}] + .' &&
	flow_identities reload-insert-first || nm_fail reload-insert-first "reload failed"

# The middle of the list: drop local-echo (not part of the checked flow).
apply '.workloads |= map(select(.name != "local-echo"))' &&
	flow_identities reload-delete-middle || nm_fail reload-delete-middle "reload failed"
g2=$(gen_of "$log1")

apply '.mesh.outboundPort = 15101 | .mesh.inboundPort = 15108' || nm_fail reload-ports "reload failed"
listens() { nm_node_exec "$1" ss -Hltn "sport = :$2" | grep -q LISTEN; }
if listens 1 15101 && listens 2 15108 && ! listens 1 15001 && ! listens 2 15008; then
	flow_identities reload-ports
else
	nm_fail reload-ports "listeners: $(nm_node_exec 1 ss -Hltn) / $(nm_node_exec 2 ss -Hltn)"
fi

# A new CA in a new trust domain, with certificates for every account.
newtd=reload.example
"$NODEMESH" ca init --dir "$NM_STATE/ca2" --trust-domain "$newtd" >>"$NM_STATE/ca.out" 2>&1 &&
	for sa in "${NM_SERVICE_ACCOUNTS[@]}"; do
		"$NODEMESH" ca issue --dir "$NM_STATE/ca2" --out "$NM_STATE/certs2" --ns default --sa "$sa" \
			>>"$NM_STATE/ca.out" 2>&1 || exit 1
	done || nm_fail reload-trust-domain "could not issue certificates"
if apply ".trustDomain = \"$newtd\" | .certDir = \"certs2\""; then
	td=$newtd
	flow_identities reload-trust-domain
else
	nm_fail reload-trust-domain "reload failed"
fi

# A field that cannot change live: refused by name, nothing applied.
before=$(grep -c 'field needs a restart' "$log1")
jq '.nodes[0].address = "198.18.0.9"' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_1"
if nm_wait_file_match "$log1" 'field needs a restart.*field=nodes\[0\]\.address' 5 &&
	(($(grep -c 'field needs a restart' "$log1") > before)); then
	flow_identities reload-restart-field
else
	nm_fail reload-restart-field "no refusal naming nodes[0].address: $(grep config "$log1" | tail -n 2)"
fi

# Generations only go up, and the datapath carries the current one.
gmap=$(bpftool -j map lookup pinned "$NM_PIN_BASE/$(nm_instance 1)/nm_agent_state" key 0 0 0 0 2>/dev/null |
	jq -r '.formatted.value.config_generation // .value.config_generation // empty' 2>/dev/null)
glast=$(gen_of "$log1")
if [[ -n $g1 && -n $g2 && -n $glast ]] && ((g1 < g2 && g2 < glast)) && [[ $gmap == "$glast" ]]; then
	nm_pass "generations ($g1 < $g2 < $glast, map $gmap)"
else
	nm_fail generations "g1=$g1 g2=$g2 last=$glast map=$gmap"
fi

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
