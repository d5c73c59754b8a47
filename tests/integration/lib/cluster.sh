# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# cluster.sh - a simulated two-node nodemesh cluster made of network
# namespaces, veth pairs, bridges and a private cgroup v2 subtree.
# Source this file; it defines functions and sets no traps until
# nm_cluster_init runs.
#
# Topology of one run (RUN = "nm" + 4 hex digits, unique per run):
#
#   RUN-n1 (node-1)                                  RUN-n2 (node-2)
#   198.18.0.1 RUNl1 ==================== RUNl2 198.18.0.2      node link
#   RUNbr 198.18.1.1/24                        RUNbr 198.18.2.1/24
#     |- RUNn1p1 -- RUN-n1p1 client     .11      |- RUNn2p1 -- RUN-n2p1 echo     .11
#     '- RUNn1p2 -- RUN-n1p2 local-echo .12      '- RUNn2p2 -- RUN-n2p2 client-2 .12
#
# Every pod netns has eth0 with 198.18.N.(10+P)/24 and a default route via
# its node's bridge; nodes forward and route the other node's pod subnet over
# the link. NM_POD_NET=routed (set before nm_cluster_create) gives every pod
# a /32 instead, with only an on-link route to its gateway, and the node a
# /32 route per pod on the bridge (the layout of routed CNIs such as
# Calico): pods of one node then reach each other through the node's IP
# layer, never on-link (the source-preservation test needs that). Service VIPs (198.19.0.0/16) are routed nowhere: without the
# mesh's redirection a connect to a VIP fails.
#
# cgroups (under the cgroup v2 mount found in /proc/self/mountinfo):
#   CG=<mount>/nodemesh-RUN
#   CG/node-N          node N's cgroupRoot: its agent attaches here
#   CG/node-N/pod-P    the pod's cgroup: every pod process runs in it
#   CG/outside         a cgroup outside every node root (never meshed)
#   CG/agent-N         the node agent process
#   CG/tools           helpers the tests start (tcpdump, probes)
#
# State: NM_STATE=$NM_STATE_BASE/RUN holds cluster.json, certs, logs and
# cluster.env (sourceable; lists namespaces, cgroups, instances, pids, logs)
# so that a later process can tear the run down (nm_cluster_down_from_env).
#
# Typical use:
#   . tests/integration/lib/cluster.sh
#   nm_cluster_init            # run id, state dir, cleanup trap
#   nm_cluster_create          # namespaces, links, cgroups, cluster.json
#   nm_cluster_certs           # CA + one certificate per service account
#   nm_agent_start 1; nm_agent_start 2
#   nm_pod_spawn echo echo-srv "$NM_PEER" serve --port 8080 --log-conns
#   nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 1M

NM_REPO=${NM_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
NM_BUILD=${NM_BUILD:-$NM_REPO/build}
NODEMESHD=${NODEMESHD:-$NM_BUILD/nodemeshd}
NODEMESH=${NODEMESH:-$NM_BUILD/nodemesh}
NM_PEER=${NM_PEER:-$NM_BUILD/tests/tools/nm_peer}
NM_STATE_BASE=${NM_STATE_BASE:-/run/nodemesh-test}
NM_AGENT_LOG_LEVEL=${NM_AGENT_LOG_LEVEL:-debug}
NM_BPFFS=${NM_BPFFS:-/sys/fs/bpf}
NM_PIN_BASE=${NM_PIN_BASE:-$NM_BPFFS/nodemesh}
# Where the agents keep their run state (lib/pins.h NM_RUN_DIR).
NM_AGENT_RUN_BASE=/run/nodemesh
NM_TRUST_DOMAIN=${NM_TRUST_DOMAIN:-cluster.local}
NM_VERBOSE=${NM_VERBOSE:-0}

# Fixed addressing plan.
NM_NODE_ADDR=([1]=198.18.0.1 [2]=198.18.0.2)
NM_BRIDGE_ADDR=([1]=198.18.1.1 [2]=198.18.2.1)
NM_OUTBOUND_PORT=15001
NM_INBOUND_PORT=15008
NM_ADMIN_PORT=15000

# Pods: name -> "node pod serviceAccount labelKey=labelValue".
declare -gA NM_PODS=(
	[client]="1 1 client app=client"
	[local-echo]="1 2 echo app=echo-local"
	[echo]="2 1 echo app=echo"
	[client-2]="2 2 client app=client"
)
NM_POD_ORDER=(client local-echo echo client-2)
NM_SERVICE_ACCOUNTS=(client echo)

# Services: name -> "vip port targetPort selectorKey=selectorValue".
declare -gA NM_SERVICES=(
	[echo]="198.19.0.10 80 8080 app=echo"
	[echo-local]="198.19.0.11 80 8080 app=echo-local"
)
NM_SERVICE_ORDER=(echo echo-local)

# --------------------------------------------------------------- messages

nm_log() { printf '[cluster %s] %s\n' "${NM_RUN:-?}" "$*" >&2; }
nm_vlog() { [[ $NM_VERBOSE == 1 ]] && nm_log "$@"; return 0; }
# In a test (NM_SCENARIO set), a fatal harness error is also that test's
# FAIL line, so the runner never sees a silent exit.
nm_die() {
	nm_log "error: $*"
	[[ -n ${NM_SCENARIO:-} ]] && printf 'FAIL %s: setup: %s\n' "$NM_SCENARIO" "$*"
	exit 1
}

# ----------------------------------------------------------------- lookup

# The first cgroup2 mount point in our mount namespace.
nm_cgroup2_mount() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
		/proc/self/mountinfo
}

# nm_pod_info NAME -> sets NM_P_NODE NM_P_IDX NM_P_SA NM_P_LABEL NM_P_NS
#                     NM_P_CG NM_P_IP
nm_pod_info() {
	local spec=${NM_PODS[$1]:-}

	[[ -n $spec ]] || nm_die "unknown pod '$1'"
	read -r NM_P_NODE NM_P_IDX NM_P_SA NM_P_LABEL <<<"$spec"
	NM_P_NS="$NM_RUN-n${NM_P_NODE}p${NM_P_IDX}"
	NM_P_CG="$NM_CG/node-$NM_P_NODE/pod-$NM_P_IDX"
	NM_P_IP="198.18.$NM_P_NODE.$((10 + NM_P_IDX))"
}

nm_pod_ip() { nm_pod_info "$1"; echo "$NM_P_IP"; }
nm_node_ns() { echo "$NM_RUN-n$1"; }
nm_agent_log() { echo "$NM_STATE/agent-node-$1.log"; }
nm_instance() { echo "$NM_RUN-n$1"; }

# ------------------------------------------------------------------ state

# Append KEY=VALUE to cluster.env (later lines win when it is sourced).
nm_env_set() {
	printf -v "$1" '%s' "$2"
	printf '%s=%q\n' "$1" "$2" >>"$NM_STATE/cluster.env"
}

# Append a word to a space-separated list variable in cluster.env.
nm_env_add() {
	local cur=${!1:-}

	nm_env_set "$1" "${cur:+$cur }$2"
}

# ------------------------------------------------------------------- init

# nm_cluster_init: pick a run id, make the state dir, install the cleanup
# trap (EXIT, INT, TERM). NM_NO_TRAP=1 leaves traps to the caller.
nm_cluster_init() {
	local hex

	[[ $(id -u) -eq 0 ]] || nm_die "must run as root"
	hex=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
	NM_RUN=${NM_RUN_ID:-nm$hex}
	(( ${#NM_RUN} <= 6 )) || nm_die "run id '$NM_RUN' longer than 6 characters"
	NM_STATE=$NM_STATE_BASE/$NM_RUN
	[[ ! -e $NM_STATE ]] || nm_die "state dir $NM_STATE already exists"
	mkdir -p "$NM_STATE"
	chmod 0700 "$NM_STATE"
	: >"$NM_STATE/cluster.env"
	NM_CLEANED=0
	nm_env_set NM_RUN "$NM_RUN"
	# While this shell lives, the run is in progress (its trap will clean).
	nm_env_set NM_OWNER_PID "$BASHPID"
	nm_env_set NM_STATE "$NM_STATE"
	nm_env_set NM_CREATED "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	if [[ ${NM_NO_TRAP:-0} != 1 ]]; then
		trap 'nm_cluster_cleanup' EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
		trap 'exit 129' HUP
	fi
}

nm_ensure_bpffs() {
	if ! findmnt -n -t bpf "$NM_BPFFS" >/dev/null 2>&1; then
		nm_log "mounting bpffs at $NM_BPFFS"
		mount -t bpf bpf "$NM_BPFFS" || nm_die "cannot mount bpffs at $NM_BPFFS"
	fi
}

# ----------------------------------------------------------------- create

nm__ip() { ip "$@" || nm_die "ip $*: failed"; }

nm_cluster_create() {
	local mnt n p name ns nns br

	[[ -n ${NM_RUN:-} ]] || nm_die "nm_cluster_init first"
	command -v ip >/dev/null || nm_die "iproute2 (ip) missing"
	command -v nsenter >/dev/null || nm_die "util-linux (nsenter) missing"
	mnt=$(nm_cgroup2_mount)
	[[ -n $mnt && -f $mnt/cgroup.procs ]] || nm_die "no cgroup v2 mount in /proc/self/mountinfo"
	nm_env_set NM_CGROUP2 "$mnt"
	nm_env_set NM_CG "$mnt/nodemesh-$NM_RUN"
	nm_ensure_bpffs

	# cgroups first: the cleanup trap finds them through cluster.env.
	mkdir "$NM_CG" || nm_die "cannot create $NM_CG"
	for n in 1 2; do
		mkdir -p "$NM_CG/node-$n" "$NM_CG/agent-$n"
	done
	mkdir -p "$NM_CG/outside" "$NM_CG/tools"
	for name in "${NM_POD_ORDER[@]}"; do
		nm_pod_info "$name"
		mkdir -p "$NM_P_CG"
	done

	mkdir -p /run/netns
	for n in 1 2; do
		ns=$(nm_node_ns "$n")
		nm_env_add NM_NETNS "$ns"
		nm__ip netns add "$ns"
		nm__ip -n "$ns" link set lo up
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 ||
			nm_die "ip_forward in $ns"
		nm_env_add NM_INSTANCES "$(nm_instance "$n")"
	done

	# The node-to-node link.
	nm__ip -n "$NM_RUN-n1" link add "${NM_RUN}l1" type veth peer name "${NM_RUN}l2" netns "$NM_RUN-n2"
	for n in 1 2; do
		ns=$(nm_node_ns "$n")
		nm__ip -n "$ns" addr add "${NM_NODE_ADDR[$n]}/24" dev "${NM_RUN}l$n"
		nm__ip -n "$ns" link set "${NM_RUN}l$n" up
		br="${NM_RUN}br"
		nm__ip -n "$ns" link add "$br" type bridge
		if [[ ${NM_POD_NET:-bridged} == routed ]]; then
			nm__ip -n "$ns" addr add "${NM_BRIDGE_ADDR[$n]}/32" dev "$br"
			# Same-node pod traffic goes in and out of the bridge.
			ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.send_redirects=0 \
				net.ipv4.conf.default.send_redirects=0 || nm_die "send_redirects in $ns"
		else
			nm__ip -n "$ns" addr add "${NM_BRIDGE_ADDR[$n]}/24" dev "$br"
		fi
		nm__ip -n "$ns" link set "$br" up
	done
	nm__ip -n "$NM_RUN-n1" route add 198.18.2.0/24 via "${NM_NODE_ADDR[2]}"
	nm__ip -n "$NM_RUN-n2" route add 198.18.1.0/24 via "${NM_NODE_ADDR[1]}"

	# Pods.
	for name in "${NM_POD_ORDER[@]}"; do
		nm_pod_info "$name"
		nns=$(nm_node_ns "$NM_P_NODE")
		nm_env_add NM_NETNS "$NM_P_NS"
		nm__ip netns add "$NM_P_NS"
		nm__ip -n "$NM_P_NS" link set lo up
		nm__ip -n "$nns" link add "${NM_RUN}n${NM_P_NODE}p${NM_P_IDX}" type veth peer name eth0 netns "$NM_P_NS"
		nm__ip -n "$nns" link set "${NM_RUN}n${NM_P_NODE}p${NM_P_IDX}" master "${NM_RUN}br" up
		if [[ ${NM_POD_NET:-bridged} == routed ]]; then
			nm__ip -n "$NM_P_NS" addr add "$NM_P_IP/32" dev eth0
			nm__ip -n "$NM_P_NS" link set eth0 up
			nm__ip -n "$NM_P_NS" route add "${NM_BRIDGE_ADDR[$NM_P_NODE]}" dev eth0 scope link
			nm__ip -n "$NM_P_NS" route add default via "${NM_BRIDGE_ADDR[$NM_P_NODE]}" dev eth0
			nm__ip -n "$nns" route add "$NM_P_IP/32" dev "${NM_RUN}br"
		else
			nm__ip -n "$NM_P_NS" addr add "$NM_P_IP/24" dev eth0
			nm__ip -n "$NM_P_NS" link set eth0 up
			nm__ip -n "$NM_P_NS" route add default via "${NM_BRIDGE_ADDR[$NM_P_NODE]}"
		fi
	done

	# Inode numbers of every namespace: the leak check looks for processes
	# still holding any of them after the run.
	local inodes=()
	for ns in $NM_NETNS; do
		inodes+=("$(stat -L -c %i "/run/netns/$ns")")
	done
	nm_env_set NM_NETNS_INODES "${inodes[*]}"

	nm_write_cluster_json
	nm_vlog "cluster created: state $NM_STATE"
}

nm_write_cluster_json() {
	local f=$NM_STATE/cluster.json name first=1 svc vip port tport sel

	{
		printf '{\n  "trustDomain": "%s",\n  "certDir": "certs",\n' "$NM_TRUST_DOMAIN"
		# NM_MESH_EXTRA: more "mesh" keys (a JSON fragment) for a test
		# (not kernelPath: duplicate keys are refused; set NM_KERNEL_PATH).
		# The scenarios test the agent path, same-node flows too, so the
		# same-node kernel path (on by default in the agent) is off here
		# unless a test asks for it (NM_KERNEL_PATH=true, test_33).
		printf '  "mesh": { "outboundPort": %d, "inboundPort": %d, "adminPort": %d, "failMode": "closed", "kernelPath": %s%s },\n' \
			"$NM_OUTBOUND_PORT" "$NM_INBOUND_PORT" "$NM_ADMIN_PORT" "${NM_KERNEL_PATH:-false}" "${NM_MESH_EXTRA:+, $NM_MESH_EXTRA}"
		printf '  "nodes": [\n'
		printf '    { "name": "node-1", "address": "%s", "cgroupRoot": "%s" },\n' \
			"${NM_NODE_ADDR[1]}" "$NM_CG/node-1"
		printf '    { "name": "node-2", "address": "%s", "cgroupRoot": "%s" }\n' \
			"${NM_NODE_ADDR[2]}" "$NM_CG/node-2"
		printf '  ],\n  "workloads": [\n'
		for name in "${NM_POD_ORDER[@]}"; do
			nm_pod_info "$name"
			((first)) || printf ',\n'
			first=0
			printf '    { "name": "%s", "namespace": "default", "serviceAccount": "%s",\n' "$name" "$NM_P_SA"
			printf '      "labels": { "%s": "%s" }, "ip": "%s", "node": "node-%s",\n' \
				"${NM_P_LABEL%%=*}" "${NM_P_LABEL#*=}" "$NM_P_IP" "$NM_P_NODE"
			printf '      "cgroup": "%s" }' "$NM_P_CG"
		done
		printf '\n  ],\n  "services": [\n'
		first=1
		for svc in "${NM_SERVICE_ORDER[@]}"; do
			read -r vip port tport sel <<<"${NM_SERVICES[$svc]}"
			((first)) || printf ',\n'
			first=0
			printf '    { "name": "%s", "namespace": "default", "vip": "%s",\n' "$svc" "$vip"
			printf '      "ports": [ { "port": %d, "targetPort": %d } ],\n' "$port" "$tport"
			printf '      "selector": { "%s": "%s" } }' "${sel%%=*}" "${sel#*=}"
		done
		printf '\n  ]\n}\n'
	} >"$f"
	nm_env_set NM_CLUSTER_JSON "$f"
}

# nm_cluster_certs: development CA plus one certificate per service account,
# in the layout certs/<ns>/<sa>/{cert,key,bundle}.pem that cluster.json names.
nm_cluster_certs() {
	local sa

	[[ -x $NODEMESH ]] || nm_die "$NODEMESH missing (run make)"
	"$NODEMESH" ca init --dir "$NM_STATE/ca" --trust-domain "$NM_TRUST_DOMAIN" \
		>"$NM_STATE/ca.out" 2>&1 || { cat "$NM_STATE/ca.out" >&2; nm_die "nodemesh ca init failed"; }
	for sa in "${NM_SERVICE_ACCOUNTS[@]}"; do
		"$NODEMESH" ca issue --dir "$NM_STATE/ca" --out "$NM_STATE/certs" --ns default --sa "$sa" \
			>>"$NM_STATE/ca.out" 2>&1 || { cat "$NM_STATE/ca.out" >&2; nm_die "nodemesh ca issue $sa failed"; }
	done
}

# A second, unrelated CA and a client certificate from it (for the tests
# that check a foreign certificate is refused). Prints the cert directory.
nm_cluster_foreign_cert() {
	"$NODEMESH" ca init --dir "$NM_STATE/foreign-ca" --trust-domain "$NM_TRUST_DOMAIN" \
		>>"$NM_STATE/ca.out" 2>&1 || nm_die "foreign ca init failed"
	"$NODEMESH" ca issue --dir "$NM_STATE/foreign-ca" --out "$NM_STATE/foreign-certs" \
		--ns default --sa client >>"$NM_STATE/ca.out" 2>&1 || nm_die "foreign ca issue failed"
	echo "$NM_STATE/foreign-certs/default/client"
}

# -------------------------------------------------------------- processes

# nm__run_in CGROUPDIR NETNS CMD...: exec CMD in that cgroup and netns. The
# subshell joins the cgroup before exec, so CMD and all its children are
# born there; nsenter (not `ip netns exec`) keeps /sys/fs/cgroup and
# /sys/fs/bpf visible.
nm__run_in() {
	local cg=$1 ns=$2
	shift 2
	(
		echo "$BASHPID" >"$cg/cgroup.procs" || exit 126
		exec nsenter --net="/run/netns/$ns" -- "$@"
	)
}

# nm_pod_exec POD CMD...: run CMD in the pod (its netns and cgroup).
nm_pod_exec() {
	nm_pod_info "$1"
	shift
	nm__run_in "$NM_P_CG" "$NM_P_NS" "$@"
}

# nm_outside_exec POD CMD...: run CMD in the pod's netns but in the
# `outside` cgroup, i.e. not in any meshed subtree.
nm_outside_exec() {
	nm_pod_info "$1"
	shift
	nm__run_in "$NM_CG/outside" "$NM_P_NS" "$@"
}

# nm_node_exec N CMD...: run CMD in node N's netns (tools cgroup).
nm_node_exec() {
	local n=$1
	shift
	nm__run_in "$NM_CG/tools" "$(nm_node_ns "$n")" "$@"
}

# nm__spawn TAG CGROUP NETNS CMD...: background; stdout -> TAG.out, stderr ->
# TAG.err in the state dir. Sets NM_LAST_PID.
nm__spawn() {
	local tag=$1 cg=$2 ns=$3
	shift 3
	# Not through nm__run_in: a function run with & would add a subshell
	# level and $! would not be the process that execs CMD.
	(
		echo "$BASHPID" >"$cg/cgroup.procs" || exit 126
		exec nsenter --net="/run/netns/$ns" -- "$@"
	) </dev/null >"$NM_STATE/$tag.out" 2>"$NM_STATE/$tag.err" &
	NM_LAST_PID=$!
	disown "$NM_LAST_PID" 2>/dev/null || true
	nm_env_add NM_PIDS "$NM_LAST_PID"
}

nm_pod_spawn() {
	local pod=$1 tag=$2
	shift 2
	nm_pod_info "$pod"
	nm__spawn "$tag" "$NM_P_CG" "$NM_P_NS" "$@"
}

nm_node_spawn() {
	local n=$1 tag=$2
	shift 2
	nm__spawn "$tag" "$NM_CG/tools" "$(nm_node_ns "$n")" "$@"
}

# nm_wait_listen NETNS PORT [TIMEOUT_S]: wait until something listens there.
nm_wait_listen() {
	local ns=$1 port=$2 t=${3:-5} i

	for ((i = 0; i < t * 20; i++)); do
		if nsenter --net="/run/netns/$ns" -- ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# nm_start_echo POD [PORT]: echo server in the pod, logging connections to
# $NM_STATE/echo-POD.out. Waits until it listens.
nm_start_echo() {
	local pod=$1 port=${2:-8080}

	[[ -x $NM_PEER ]] || nm_die "$NM_PEER missing (run make)"
	nm_pod_spawn "$pod" "echo-$pod" "$NM_PEER" serve --port "$port" --log-conns
	nm_pod_info "$pod"
	nm_wait_listen "$NM_P_NS" "$port" 5 || nm_die "echo server in $pod did not listen on $port"
}

# nm_wait_file_match FILE REGEX [TIMEOUT_S]: wait for an ERE to match a line.
nm_wait_file_match() {
	local f=$1 re=$2 t=${3:-5} i

	for ((i = 0; i < t * 20; i++)); do
		grep -Eq -- "$re" "$f" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# ----------------------------------------------------------------- agents

# nm_agent_start N [EXTRA ARGS...]: start node N's agent in its netns and
# wait for msg="ready".
nm_agent_start() {
	local n=$1 log pid i
	shift
	[[ -x $NODEMESHD ]] || nm_die "$NODEMESHD missing (run make)"
	log=$(nm_agent_log "$n")
	: >>"$log"
	# A restarted agent appends to the same log: wait for its own line.
	local ready_before
	ready_before=$(grep -c 'msg="ready"' "$log" 2>/dev/null)
	local cg=$NM_CG/agent-$n ns
	ns=$(nm_node_ns "$n")
	(
		echo "$BASHPID" >"$cg/cgroup.procs" || exit 126
		exec nsenter --net="/run/netns/$ns" -- "$NODEMESHD" \
			--config "$NM_STATE/cluster.json" --node "node-$n" \
			--instance "$(nm_instance "$n")" --log-level "$NM_AGENT_LOG_LEVEL" "$@"
	) </dev/null >>"$log" 2>&1 &
	pid=$!
	nm_env_set "NM_AGENT_PID_$n" "$pid"
	nm_env_set "NM_AGENT_LOG_$n" "$log"
	nm_env_add NM_AGENT_PIDS "$pid"
	for ((i = 0; i < 200; i++)); do
		if (($(grep -c 'msg="ready"' "$log" 2>/dev/null) > ready_before)); then
			nm_vlog "agent node-$n ready (pid $pid)"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			nm_log "agent node-$n exited before ready; log tail:"
			tail -n 20 "$log" >&2
			return 1
		fi
		sleep 0.05
	done
	nm_log "agent node-$n not ready after 10 s; log tail:"
	tail -n 20 "$log" >&2
	return 1
}

# nm_agent_stop N [TIMEOUT_S]: SIGTERM, wait, SIGKILL. Sets NM_AGENT_RC to
# the agent's exit status when this shell started it (else "?").
nm_agent_stop() {
	local n=$1 t=${2:-3} var pid i
	var="NM_AGENT_PID_$n"
	pid=${!var:-}
	NM_AGENT_RC="?"
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < t * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		# A zombie of ours counts as stopped.
		[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
		nm_log "agent node-$n ignored SIGTERM for ${t}s, killing"
		kill -KILL "$pid" 2>/dev/null
	fi
	if wait "$pid" 2>/dev/null; then
		NM_AGENT_RC=0
	else
		NM_AGENT_RC=$?
		# 127: not our child (started by another shell).
		[[ $NM_AGENT_RC == 127 ]] && NM_AGENT_RC="?"
	fi
	return 0
}

# ------------------------------------------------------------- log helpers

# nm_kv "LINE" KEY -> value of key=value or key="value" in LINE.
nm_kv() {
	local line=$1 key=$2 re1 re2
	re1="(^|[[:space:]])$key=\"([^\"]*)\""
	re2="(^|[[:space:]])$key=([^[:space:]]*)"
	if [[ $line =~ $re1 ]]; then
		printf '%s\n' "${BASH_REMATCH[2]}"
	elif [[ $line =~ $re2 ]]; then
		printf '%s\n' "${BASH_REMATCH[2]}"
	else
		return 1
	fi
}

# nm_json "JSON" KEY -> value of a flat JSON field (strings unquoted).
nm_json() {
	local re1="\"$2\":\"([^\"]*)\"" re2="\"$2\":([^,}]*)"
	if [[ $1 =~ $re1 ]]; then
		printf '%s\n' "${BASH_REMATCH[1]}"
	elif [[ $1 =~ $re2 ]]; then
		printf '%s\n' "${BASH_REMATCH[1]}"
	else
		return 1
	fi
}

# nm_metric N NAME [LABEL-MATCH] -> the sum of the samples of metric NAME on
# node N's :15020/metrics whose label text contains LABEL-MATCH (an integer;
# 0 when the agent does not answer). Published every 250 ms.
nm_metric() {
	nm_node_exec "$1" curl -sf "http://${NM_NODE_ADDR[$1]}:15020/metrics" 2>/dev/null |
		awk -v n="$2" -v m="${3:-}" '$1 ~ "^"n"([{]|$)" && index($1, m) { s += $2 } END { printf "%d\n", s }'
}

# nm_log_line LOG MSG TIMEOUT_S KEY=VALUE...: the first `msg="MSG"` line in
# LOG whose KEYs all equal their VALUEs exactly (waits up to TIMEOUT_S).
nm_log_line() {
	local log=$1 msg=$2 t=$3 i line kv
	shift 3
	for ((i = 0; i < t * 20; i++)); do
		while IFS= read -r line; do
			for kv; do
				[[ $(nm_kv "$line" "${kv%%=*}") == "${kv#*=}" ]] || continue 2
			done
			printf '%s\n' "$line"
			return 0
		done < <(grep -F "msg=\"$msg\"" "$log" 2>/dev/null)
		sleep 0.05
	done
	return 1
}

# nm_flow_line LOG DIR KEY VALUE [TIMEOUT_S]: the first `msg="flow open"`
# line of direction DIR whose KEY equals VALUE exactly (waits for it).
nm_flow_line() { nm_log_line "$1" "flow open" "${5:-3}" "dir=$2" "$3=$4"; }

# nm_close_line LOG FLOWID [TIMEOUT_S]: the `msg="flow close"` line of a flow.
nm_close_line() { nm_log_line "$1" "flow close" "${3:-3}" "flow=$2"; }

# nm_dump_logs [LINES]: tail of every agent log to stderr (for failures).
nm_dump_logs() {
	local n=${1:-25} f
	for f in "$NM_STATE"/agent-node-*.log; do
		[[ -f $f ]] || continue
		printf -- '--- %s (last %d lines)\n' "${f##*/}" "$n" >&2
		tail -n "$n" "$f" >&2
	done
}

# ---------------------------------------------------------------- cleanup

# nm_cluster_cleanup: remove everything the run created. Idempotent; safe to
# call from any state (partially created clusters, twice, from a trap).
nm_cluster_cleanup() {
	local rc=$?

	[[ -n ${NM_STATE:-} ]] || return "$rc"
	[[ ${NM_CLEANED:-0} == 1 ]] && return "$rc"
	# Subshells do not run EXIT traps, but a sourced helper might: only the
	# shell that created the run tears it down.
	[[ -z ${NM_OWNER_PID:-} || $NM_OWNER_PID == "$BASHPID" ]] || return "$rc"
	NM_CLEANED=1
	# Callers may run under set -e; a cleanup step that finds nothing to do
	# must not end the cleanup.
	set +e
	trap - INT TERM HUP
	nm_cluster_down_from_env "$NM_STATE"
	return "$rc"
}

# Kill every process in a cgroup subtree and wait until it is empty.
nm__cg_kill_tree() {
	local cg=$1 i pids

	[[ -d $cg ]] || return 0
	if [[ -e $cg/cgroup.kill ]]; then
		echo 1 >"$cg/cgroup.kill" 2>/dev/null
	fi
	for ((i = 0; i < 100; i++)); do
		pids=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
		[[ -z $pids ]] && return 0
		# Older kernels without cgroup.kill, or processes that forked
		# while we were killing: SIGKILL each one we see.
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		sleep 0.05
	done
	nm_log "warning: processes left in $cg: $(echo $pids)"
}

# Remove a bpffs pin directory (pinned links cannot be removed by rm -rf).
nm__unpin() {
	local inst=$1 dir=$NM_PIN_BASE/$1

	[[ -e $dir ]] || return 0
	if [[ -x $NODEMESH ]]; then
		"$NODEMESH" cleanup --instance "$inst" >/dev/null 2>&1 || true
	fi
	if [[ -e $dir ]]; then
		find "$dir" -mindepth 1 -delete 2>/dev/null
		rmdir "$dir" 2>/dev/null
	fi
	[[ ! -e $dir ]] || nm_log "warning: could not remove $dir"
}

# nm_cluster_down_from_env STATE_DIR: tear down the run recorded there. Also
# works from a fresh shell (demo.sh down): everything comes from cluster.env,
# plus a sweep for names carrying the run id in case the env is partial.
nm_cluster_down_from_env() (
	# A subshell: sourcing the run's cluster.env must not change the
	# caller's variables (demo.sh down, or a test inspecting another run).
	local state=$1 env=$1/cluster.env pid i ns inst
	NM_RUN="" NM_CG="" NM_NETNS="" NM_INSTANCES="" NM_AGENT_PIDS="" NM_PIDS=""
	set +e

	if [[ -f $env ]]; then
		# shellcheck disable=SC1090
		. "$env"
	fi
	[[ -n $NM_RUN ]] || NM_RUN=${state##*/}
	[[ $NM_RUN =~ ^[a-z0-9]+$ ]] || { nm_log "refusing odd run id '$NM_RUN'"; return 1; }

	# 1. Agents: SIGTERM first so they close connections cleanly.
	for pid in $NM_AGENT_PIDS; do
		kill -TERM "$pid" 2>/dev/null
	done
	for ((i = 0; i < 60; i++)); do
		local alive=0
		for pid in $NM_AGENT_PIDS; do
			if kill -0 "$pid" 2>/dev/null &&
				[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
				alive=1
			fi
		done
		((alive)) || break
		sleep 0.05
	done
	for pid in $NM_AGENT_PIDS; do
		kill -KILL "$pid" 2>/dev/null
	done

	# 2. Everything else we started lives in the run's cgroup subtree.
	if [[ -z $NM_CG ]]; then
		local mnt
		mnt=$(nm_cgroup2_mount)
		[[ -n $mnt ]] && NM_CG=$mnt/nodemesh-$NM_RUN
	fi
	[[ -n $NM_CG ]] && nm__cg_kill_tree "$NM_CG"
	for pid in $NM_PIDS $NM_AGENT_PIDS; do
		kill -KILL "$pid" 2>/dev/null
	done

	# 3. Network namespaces (deleting a node netns removes its veths).
	for ns in $NM_NETNS $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NM_RUN-" ); do
		[[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
	done

	# 4. cgroups, deepest first.
	if [[ -n $NM_CG && -d $NM_CG ]]; then
		for ((i = 0; i < 40; i++)); do
			find "$NM_CG" -depth -type d -exec rmdir {} \; 2>/dev/null
			[[ -d $NM_CG ]] || break
			sleep 0.05
		done
		[[ ! -d $NM_CG ]] || nm_log "warning: could not remove $NM_CG"
	fi

	# 5. Pinned maps, programs and links of the run's agent instances.
	for inst in $NM_INSTANCES; do
		nm__unpin "$inst"
	done
	for inst in "$NM_PIN_BASE/$NM_RUN"-*; do
		[[ -e $inst ]] && nm__unpin "${inst##*/}"
	done
	# An agent removes its run directory on SIGTERM (test_12 checks
	# that); one killed with SIGKILL cannot.
	for inst in "$NM_AGENT_RUN_BASE/$NM_RUN"-*; do
		[[ -d $inst ]] && rm -rf "$inst"
	done

	# 6. Keep logs if asked, then drop the state dir and any index entry.
	if [[ -n ${NM_ARTIFACTS:-} && -d $state ]]; then
		mkdir -p "$NM_ARTIFACTS"
		cp -a "$state"/*.log "$state"/*.out "$state"/*.err "$state"/cluster.json \
			"$state"/cluster.env "$NM_ARTIFACTS"/ 2>/dev/null
	fi
	if [[ -n ${NM_INDEX:-} && -f $NM_INDEX && $(cat "$NM_INDEX" 2>/dev/null) == "$state" ]]; then
		rm -f "$NM_INDEX"
	fi
	case $state in
	/*/nm*) rm -rf "$state" ;;
	esac
	return 0
)

# nm_cluster_leftovers ENVFILE: print whatever of that run still exists;
# return 1 when anything does. ENVFILE is a copy of the run's cluster.env.
nm_cluster_leftovers() (
	local env=$1 bad=0 ns inode pid p link
	NM_RUN="" NM_CG="" NM_NETNS="" NM_INSTANCES="" NM_AGENT_PIDS="" NM_PIDS=""
	NM_NETNS_INODES="" NM_STATE=""
	set +e

	# shellcheck disable=SC1090
	. "$env"
	[[ -n $NM_RUN ]] || { echo "no run id in $env"; return 1; }
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ $ns == "$NM_RUN"-* ]] && { echo "netns $ns"; bad=1; }
	done
	for ns in $NM_NETNS; do
		[[ -e /run/netns/$ns ]] && { echo "netns file /run/netns/$ns"; bad=1; }
	done
	for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}'); do
		[[ ${link%%@*} == "$NM_RUN"* ]] && { echo "link ${link%%@*} in the root netns"; bad=1; }
	done
	[[ -n $NM_CG && -e $NM_CG ]] && { echo "cgroup $NM_CG"; bad=1; }
	for p in "$NM_PIN_BASE/$NM_RUN"-* "$NM_AGENT_RUN_BASE/$NM_RUN"-*; do
		[[ -e $p ]] && { echo "agent dir $p"; bad=1; }
	done
	[[ -n $NM_STATE && -e $NM_STATE ]] && { echo "state dir $NM_STATE"; bad=1; }
	# Any process still inside one of the run's network namespaces.
	if [[ -n $NM_NETNS_INODES ]]; then
		for p in /proc/[0-9]*; do
			inode=$(readlink "$p/ns/net" 2>/dev/null) || continue
			inode=${inode#net:[}
			inode=${inode%]}
			for ns in $NM_NETNS_INODES; do
				[[ $inode == "$ns" ]] && { echo "process ${p#/proc/} ($(tr '\0' ' ' 2>/dev/null <"$p/cmdline")) in a run netns"; bad=1; }
			done
		done
	fi
	# Recorded pids still alive and still ours (same binary family).
	for pid in $NM_PIDS $NM_AGENT_PIDS; do
		[[ -r /proc/$pid/cmdline ]] || continue
		if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -Eq 'nodemeshd|nm_peer|tcpdump|openssl|socat'; then
			echo "process $pid still running: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
			bad=1
		fi
	done
	# Anything whose command line names the run's state dir (agents).
	if [[ -n $NM_STATE ]]; then
		local cmd
		for p in /proc/[0-9]*; do
			cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
			if [[ $cmd == *"$NM_STATE/"* ]]; then
				echo "process ${p#/proc/} mentions $NM_STATE: $cmd"
				bad=1
			fi
		done
	fi
	exit $((bad))
)

# ------------------------------------------------------------ test helpers

NM_FAILS=${NM_FAILS:-0}
nm_pass() { printf 'PASS %s\n' "$1"; }
nm_fail() {
	printf 'FAIL %s: %s\n' "$1" "$2"
	NM_FAILS=$((NM_FAILS + 1))
}
# nm_check NAME REASON CMD...: PASS when CMD succeeds, else FAIL with REASON.
nm_check() {
	local name=$1 reason=$2
	shift 2
	if "$@"; then nm_pass "$name"; else nm_fail "$name" "$reason"; fi
}

# nm_cluster_up [--no-agents]: the full cluster of the tests and the demo:
# topology, certificates, both agents, echo servers in `echo` (node-2) and
# `local-echo` (node-1). Returns non-zero (with a log message) on failure.
nm_cluster_up() {
	local agents=1
	[[ ${1:-} == --no-agents ]] && agents=0
	nm_cluster_create
	if ((agents)); then
		nm_cluster_certs
		nm_agent_start 1 || return 1
		nm_agent_start 2 || return 1
	fi
	nm_start_echo echo 8080
	nm_start_echo local-echo 8080
}

# nm_require_bins: every binary the agent tests need, or a FAIL line.
nm_require_bins() {
	local name=$1 b missing=()
	NM_SCENARIO=$name
	for b in "$NODEMESHD" "$NODEMESH" "$NM_PEER"; do
		[[ -x $b ]] || missing+=("$b")
	done
	if ((${#missing[@]})); then
		nm_fail "$name" "missing binaries: ${missing[*]} (run make)"
		exit 1
	fi
}

# nm_scenario_up NAME: the start of every agent scenario: the binaries, a
# run with its cleanup trap, the full cluster (nm_cluster_up). Exits with a
# FAIL line (and the agent logs) when any of it is missing.
nm_scenario_up() {
	nm_require_bins "$1"
	nm_cluster_init
	nm_cluster_up || { nm_dump_logs; nm_fail "$1" "cluster setup failed"; exit 1; }
}
