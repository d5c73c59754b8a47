#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# demo.sh - the nodemesh two-node demo on a simulated cluster.
#
#   demo.sh run    build the cluster, start both agents, send traffic
#                  cross-node and same-node, print what the mesh did with
#                  each connection (from the agents' flow logs), tear down
#   demo.sh up     build the same cluster and leave it running; prints how to
#                  reach every node and pod; state in /run/nodemesh-demo
#   demo.sh down   remove the cluster `up` made, completely
#   demo.sh status show the recorded demo cluster, if any
#
# `make demo`, `make demo-up` and `make demo-down` call these (as root).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

export NM_STATE_BASE=${NM_DEMO_STATE_BASE:-/run/nodemesh-demo}
export NM_INDEX=$NM_STATE_BASE/current
# Per-flow lines are debug-level (a busy agent must not log one per flow);
# the demo reads them to explain each connection.
export NM_AGENT_LOG_LEVEL=${NM_AGENT_LOG_LEVEL:-debug}
# shellcheck source=lib/cluster.sh
. "$here/lib/cluster.sh"

say() { printf '%s\n' "$*"; }
hr() { say "------------------------------------------------------------------------"; }

need_root_and_bins() {
	[[ $(id -u) -eq 0 ]] || { echo "demo.sh: must run as root (in a root shell: make demo)" >&2; exit 1; }
	local b
	for b in "$NODEMESHD" "$NODEMESH" "$NM_PEER"; do
		[[ -x $b ]] || { echo "demo.sh: $b missing; run make first" >&2; exit 1; }
	done
}

# pod_by_ip IP -> pod name (or the IP itself when no pod has it)
pod_by_ip() {
	local name
	for name in "${NM_POD_ORDER[@]}"; do
		nm_pod_info "$name"
		[[ $NM_P_IP == "$1" ]] && { echo "$name"; return; }
	done
	echo "$1"
}

svc_by_vip() { # VIP:PORT -> service name
	local svc vip port rest
	for svc in "${NM_SERVICE_ORDER[@]}"; do
		read -r vip port rest <<<"${NM_SERVICES[$svc]}"
		[[ "$vip:$port" == "$1" ]] && { echo "$svc"; return; }
	done
	echo "?"
}

fmt_bytes() {
	local b=$1
	if ((b >= 1048576 && b % 1048576 == 0)); then echo "$((b / 1048576)) MiB"
	elif ((b >= 1024 && b % 1024 == 0)); then echo "$((b / 1024)) KiB"
	else echo "$b bytes"; fi
}

# account N POD TARGET BYTES: send BYTES from POD to TARGET, then describe
# the connection from both agents' flow lines. Returns 1 if anything is off.
account() {
	local idx=$1 pod=$2 target=$3 bytes=$4 out src node line flow path backend
	local bpod bnode svc peer_id src_id in_line close_line up down ok=0
	nm_pod_info "$pod"
	node=$NM_P_NODE
	svc=$(svc_by_vip "$target")
	out=$(nm_pod_exec "$pod" "$NM_PEER" send --to "$target" --bytes "$bytes" --timeout-ms 20000)
	src=$(nm_json "$out" local)
	say ""
	say "[$idx] pod $pod (node-$node, $src) connects to service $svc at $target"
	if [[ $(nm_json "$out" match) != true ]]; then
		say "    FAILED: $out"
		return 1
	fi
	if ! line=$(nm_flow_line "$(nm_agent_log "$node")" outbound src "$src" 3); then
		say "    FAILED: the node-$node agent logged no flow for $src"
		return 1
	fi
	flow=$(nm_kv "$line" flow) path=$(nm_kv "$line" path) backend=$(nm_kv "$line" backend)
	src_id=$(nm_kv "$line" src_id) peer_id=$(nm_kv "$line" peer_id)
	bpod=$(pod_by_ip "${backend%:*}")
	bnode=node-$node
	[[ $bpod != "${backend%:*}" ]] && { nm_pod_info "$bpod"; bnode=node-$NM_P_NODE; }
	say "    redirect  connect4 on node-$node sent it to the node-$node agent (${NM_NODE_ADDR[$node]}:$NM_OUTBOUND_PORT)"
	say "    backend   pod $bpod at $backend on $bnode"
	if [[ $path == remote ]]; then
		local other=${bnode#node-}
		say "    path      remote: TLS 1.3 tunnel node-$node -> $bnode (${NM_NODE_ADDR[$other]}:$NM_INBOUND_PORT)"
		say "    identity  node-$node agent presented $src_id"
		say "              node-$node agent verified the server is $peer_id"
		if in_line=$(nm_flow_line "$(nm_agent_log "$other")" inbound flow "$flow" 3); then
			say "              $bnode agent verified the client is $(nm_kv "$in_line" peer_id)"
			say "              $bnode agent presented $(nm_kv "$in_line" local_id)"
		else
			say "              ($bnode agent logged no inbound flow $flow)"
			ok=1
		fi
	else
		say "    path      $path: plaintext relay inside node-$node, no TLS (the source identity is $src_id)"
	fi
	if close_line=$(nm_close_line "$(nm_agent_log "$node")" "$flow" 3); then
		up=$(nm_kv "$close_line" bytes_up) down=$(nm_kv "$close_line" bytes_down)
		say "    bytes     $(fmt_bytes "$up") up, $(fmt_bytes "$down") down (flow $flow, $(nm_kv "$close_line" duration_ms) ms); echo verified byte for byte"
	else
		say "    bytes     $(fmt_bytes "$bytes") each way, echo verified (flow $flow not closed in the log yet)"
	fi
	return $ok
}

topology() {
	say "cluster $NM_RUN: 2 nodes x 2 pods in network namespaces, cgroup subtree $NM_CG"
	say "  node-1 ${NM_NODE_ADDR[1]}: client 198.18.1.11 (sa client), local-echo 198.18.1.12 (sa echo, app=echo-local)"
	say "  node-2 ${NM_NODE_ADDR[2]}: echo 198.18.2.11 (sa echo, app=echo), client-2 198.18.2.12 (sa client)"
	say "  services: echo 198.19.0.10:80 -> app=echo :8080; echo-local 198.19.0.11:80 -> app=echo-local :8080"
	say "  (service VIPs are routed nowhere: only the mesh's connect4 redirection reaches them)"
}

cmd_run() {
	local bad=0
	need_root_and_bins
	# Not beside `up` clusters: `down` must never sweep a running demo run.
	NM_STATE_BASE=$NM_STATE_BASE/run
	nm_cluster_init
	say "nodemesh demo: building the simulated cluster"
	if ! nm_cluster_up; then
		nm_dump_logs 30
		say "demo FAILED: the cluster did not come up"
		exit 1
	fi
	topology
	hr
	account 1 client 198.19.0.10:80 262144 || bad=1
	account 2 client 198.19.0.11:80 262144 || bad=1
	account 3 client-2 198.19.0.11:80 65536 || bad=1
	say ""
	hr
	if ((bad)); then
		nm_dump_logs 30
		say "demo FAILED (logs above); tearing down"
		exit 1
	fi
	say "tearing down (agents, pods, namespaces, cgroups, pinned maps)"
	nm_cluster_cleanup
	say "demo OK"
}

print_access() {
	local n ns name adm pid
	say "nodemesh demo cluster $NM_RUN is up (state: $NM_STATE)"
	topology
	say ""
	for n in 1 2; do
		ns=$(nm_node_ns "$n")
		pid=NM_AGENT_PID_$n
		if nsenter --net="/run/netns/$ns" -- ss -Hltn "sport = :$NM_ADMIN_PORT" 2>/dev/null | grep -q .; then
			adm="admin ${NM_NODE_ADDR[$n]}:$NM_ADMIN_PORT"
		else
			adm="admin port $NM_ADMIN_PORT configured, not served by this build"
		fi
		say "node-$n  netns $ns  address ${NM_NODE_ADDR[$n]}  agent pid ${!pid}  instance $(nm_instance "$n")"
		say "        listeners: outbound ${NM_NODE_ADDR[$n]}:$NM_OUTBOUND_PORT, inbound ${NM_NODE_ADDR[$n]}:$NM_INBOUND_PORT; $adm"
		say "        log:   $(nm_agent_log "$n")"
		say "        maps:  $NODEMESH maps --instance $(nm_instance "$n")"
		say "        shell: ip netns exec $ns bash"
	done
	say ""
	for name in "${NM_POD_ORDER[@]}"; do
		nm_pod_info "$name"
		say "pod $name  node-$NM_P_NODE  $NM_P_IP  netns $NM_P_NS  cgroup $NM_P_CG"
		say "        shell (meshed, in the pod's cgroup):"
		say "          sh -c 'echo \$\$ > $NM_P_CG/cgroup.procs && exec ip netns exec $NM_P_NS bash'"
	done
	say ""
	say "try, in the client pod shell:"
	say "  $NM_PEER send --to 198.19.0.10:80 --bytes 1M      # cross-node via the mesh"
	say "  $NM_PEER send --to 198.19.0.11:80 --bytes 1M      # same node"
	say "echo servers listen on :8080 in the echo and local-echo pods."
	say "remove it with: make demo-down   (or $0 down)"
}

cmd_up() {
	need_root_and_bins
	mkdir -p "$NM_STATE_BASE"
	if [[ -f $NM_INDEX ]]; then
		local prev
		prev=$(cat "$NM_INDEX")
		if [[ -d $prev ]]; then
			echo "demo.sh: a demo cluster is already up ($prev); run 'make demo-down' first" >&2
			exit 1
		fi
		rm -f "$NM_INDEX"
	fi
	nm_cluster_init
	echo "$NM_STATE" >"$NM_INDEX"
	if ! nm_cluster_up; then
		nm_dump_logs 30
		echo "demo.sh: the cluster did not come up; removing it" >&2
		exit 1
	fi
	# The cluster outlives this shell: no cleanup on a normal exit.
	trap - EXIT INT TERM HUP
	print_access
}

cmd_down() {
	local state removed=0
	[[ $(id -u) -eq 0 ]] || { echo "demo.sh: must run as root" >&2; exit 1; }
	if [[ -f $NM_INDEX ]]; then
		state=$(cat "$NM_INDEX")
		if [[ -d $state ]]; then
			nm_cluster_down_from_env "$state"
			removed=1
			say "removed demo cluster ${state##*/}"
		fi
		rm -f "$NM_INDEX"
	fi
	# Runs whose index was lost (e.g. an `up` killed mid-way).
	for state in "$NM_STATE_BASE"/nm*; do
		[[ -d $state ]] || continue
		nm_cluster_down_from_env "$state"
		removed=1
		say "removed demo cluster ${state##*/}"
	done
	((removed)) || say "no demo cluster is up"
	return 0
}

cmd_status() {
	local state
	if [[ -f $NM_INDEX ]] && state=$(cat "$NM_INDEX") && [[ -f $state/cluster.env ]]; then
		# shellcheck disable=SC1091
		. "$state/cluster.env"
		print_access
	else
		say "no demo cluster is up"
	fi
}

case ${1:-} in
run) cmd_run ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 run|up|down|status" >&2
	exit 2
	;;
esac
