#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_24_k8s_agent - both agents of the simulated cluster run in Kubernetes
# mode (`nodemeshd --kubernetes`): nodes, pods and services come from the
# fixture API server (tests/k8s/apiserver.py), one copy in each node's
# network namespace (it binds 127.0.0.1) serving the same objects
# (tests/integration/k8s/objects), and every change is sent to both. The
# pods' cgroups are laid out as kubelet's cgroupfs driver does
# (NM_CG/node-N/kubepods[/burstable|/besteffort]/pod<uid>, by the pod's QoS
# class) and every pod process runs there; each agent is given its node's
# cgroup dir as --kube-cgroup-root.
#
#   k8s-start             both agents start from the API (no cluster file:
#                         the later --config names a settings-only file)
#   k8s-maps              pinned maps match the API objects: local meshed
#                         pods' cgroups in nm_workloads, meshed pods' IPs in
#                         nm_endpoints, and nothing of the hostNetwork,
#                         Pending, unmeshed-namespace pods; an annotation-
#                         meshed pod in an unmeshed namespace is an endpoint
#   k8s-traffic           client -> echo VIP 198.19.0.10:80 through the mesh,
#                         both agents log the exact SPIFFE identities
#   k8s-pod-added         a pod ADDED by a watch event (cgroup made first)
#                         is in nm_workloads within 1 s, its IP in the other
#                         node's nm_endpoints, and its connect is redirected
#   k8s-pod-deleted       DELETED: its cgroup leaves nm_workloads and its IP
#                         both nodes' nm_endpoints within 1 s; its connect
#                         to the VIP is no longer redirected
#   k8s-watch-cut-410     the pods watch cut mid-event, then 410 Gone on the
#                         resumed watch: both agents log it and relist, the
#                         cut event's pod arrives; traffic still works
#   k8s-cgroup-late       a local pod whose cgroup appears after its event is
#                         meshed within 1 s of the mkdir
#   k8s-api-down          the API servers stopped: the last good state stays
#                         (maps unchanged) and traffic works
#   k8s-relist-fails      restarted, the first two pods lists answer 500: the
#                         objects the agents had are kept
#   k8s-api-back          restarted without that pod: the agents relist and
#                         catch up; traffic works
#   k8s-stop-cleans       SIGTERM (the kubelet's stop): the agent shuts down
#                         and exits 0, and removes its run directory with the
#                         policies it copied from the API
#                         (authorizationpolicies/kubernetes.json). The API
#                         client's thread must not take the signal: it did,
#                         and the agent died of it with nothing cleaned up
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

NAME=k8s-agent
K8S_DIR=$NM_REPO/tests/integration/k8s
APISERVER=$NM_REPO/tests/k8s/apiserver.py
API_PORT=16443
ADMIN_PORT=16080
CLIENT_ID=spiffe://$NM_TRUST_DOMAIN/ns/default/sa/client
ECHO_ID=spiffe://$NM_TRUST_DOMAIN/ns/default/sa/echo

nm_require_bins "$NAME"
for b in python3 jq bpftool curl; do
	command -v "$b" >/dev/null || { nm_fail "$NAME" "$b missing"; exit 1; }
done

# Pod UIDs and QoS classes, from the objects the servers serve.
declare -A K_UID=() K_QOS=()
while read -r pod uid qos; do
	K_UID[$pod]=$uid
	K_QOS[$pod]=$qos
done < <(jq -r '(.items? // [.])[] | select(.metadata.namespace == "default") |
	"\(.metadata.name) \(.metadata.uid) \(.status.qosClass)"' \
	"$K8S_DIR/objects/20-pods.json" "$K8S_DIR"/events/pod-*.json)

# Two more pods the scenario adds: client-3 on node-1 (netns made by the
# harness, no cgroup until the test makes it) and idle-2 on node-2.
NM_PODS["client-3"]="1 3 client app=client"
NM_PODS["idle-2"]="2 3 echo app=idle"

# The harness's pod cgroup is NM_CG/node-N/pod-P; here it is where kubelet
# (cgroupfs driver) puts the pod: by QoS class, named by the pod's UID.
eval "k4_harness_pod_info() $(declare -f nm_pod_info | tail -n +2)"
nm_pod_info() {
	local qos
	k4_harness_pod_info "$1"
	case ${K_QOS[$1]:-} in
	Guaranteed) qos="" ;;
	Burstable) qos=burstable/ ;;
	*) qos=besteffort/ ;;
	esac
	NM_P_CG="$NM_CG/node-$NM_P_NODE/kubepods/${qos}pod${K_UID[$1]:?no uid for $1}"
}

# --------------------------------------------------------------- servers

declare -A API_PID=()
k4_cleanup() {
	local rc=$? n
	for n in "${!API_PID[@]}"; do
		api_stop "$n"
	done
	return "$rc"
}

# api_start N [serve options...]: the fixture server in node N's netns on
# 127.0.0.1:API_PORT (fixed: a restarted server must be where the agent's
# kubeconfig points), admin on ADMIN_PORT; waits for its ready file.
api_start() {
	local n=$1 dir i
	dir=$NM_STATE/apiserver-$n
	shift
	mkdir -p "$dir"
	rm -f "$dir/ready"
	nm_node_spawn "$n" "apiserver-$n" python3 "$APISERVER" serve --dir "$dir" \
		--port "$API_PORT" --admin-port "$ADMIN_PORT" --log "$dir/requests.log" "$@"
	API_PID[$n]=$NM_LAST_PID
	for ((i = 0; i < 150; i++)); do
		[[ -f $dir/ready ]] && return 0
		kill -0 "${API_PID[$n]}" 2>/dev/null || break
		sleep 0.05
	done
	nm_log "apiserver $n did not start: $(tail -n 5 "$NM_STATE/apiserver-$n.err" | tr '\n' ' ')"
	return 1
}

# alive PID: running (a zombie does not count).
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# api_stop N: SIGTERM node N's server and wait until it is gone.
api_stop() {
	local n=$1 pid=${API_PID[$1]:-} i
	[[ -n $pid ]] || return 0
	kill "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || break
		sleep 0.02
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
	API_PID[$n]=""
}

# api_ctl N STEPS-JSON: run admin steps on node N's server (POST to its
# admin port, as apiserver.py ctl does; curl starts in a few ms, which the
# 1 s bounds below would otherwise include); the answer in CTL_OUT_N.
api_ctl() {
	local out
	out=$(nm_node_exec "$1" curl -sf --max-time 30 -H 'Content-Type: application/json' \
		--data-binary "$2" "http://127.0.0.1:$ADMIN_PORT/steps") || return 1
	printf -v "CTL_OUT_$1" '%s' "$out"
}

# api_both STEPS-JSON: the same change on both servers, sent at once.
api_both() {
	local f=$NM_STATE/ctl-2.out rc1 rc2
	( api_ctl 2 "$1" && printf '%s' "$CTL_OUT_2" >"$f" ) &
	local pid=$!
	api_ctl 1 "$1"
	rc1=$?
	wait "$pid"
	rc2=$?
	CTL_OUT_2=$(cat "$f" 2>/dev/null)
	((rc1 == 0 && rc2 == 0))
}

# api_apply_file FILE: {"op":"apply","object":<FILE>} on both servers.
api_apply_file() {
	api_both "$(jq -c '{op: "apply", object: .}' "$1")"
}

# ------------------------------------------------------------------ maps

pins() { echo "$NM_PIN_BASE/$(nm_instance "$1")"; }

# workload_cgroups N: the cgroup ids (keys) of node N's nm_workloads, one a
# line, decimal.
workload_cgroups() {
	bpftool -j map dump pinned "$(pins "$1")/nm_workloads" 2>/dev/null |
		jq -r '.[] | .key | map(ltrimstr("0x")) | reverse | join("")' 2>/dev/null |
		while read -r hex; do [[ -n $hex ]] && printf '%d\n' "0x$hex"; done
}

# endpoint_ips N: the addresses (keys) of node N's nm_endpoints, sorted, on
# one line: IPv4-mapped ones as a.b.c.d, others as eight uncompressed
# groups without leading zeros (fd00:198:18:1:0:0:0:20).
endpoint_ips() {
	bpftool -j map dump pinned "$(pins "$1")/nm_endpoints" 2>/dev/null |
		jq -r '.[] | .key | map(ltrimstr("0x") | if length == 1 then "0" + . else . end) | join("")' 2>/dev/null |
		while read -r hex; do
			((${#hex} == 32)) || continue
			if [[ $hex == 00000000000000000000ffff* ]]; then
				printf '%d.%d.%d.%d\n' "0x${hex:24:2}" "0x${hex:26:2}" "0x${hex:28:2}" "0x${hex:30:2}"
			else
				printf '%x:%x:%x:%x:%x:%x:%x:%x\n' "0x${hex:0:4}" "0x${hex:4:4}" "0x${hex:8:4}" \
					"0x${hex:12:4}" "0x${hex:16:4}" "0x${hex:20:4}" "0x${hex:24:4}" "0x${hex:28:4}"
			fi
		done | sort -V | tr '\n' ' ' | sed 's/ $//'
}

cgid() { stat -c %i "$1"; }
pod_cgid() { nm_pod_info "$1"; cgid "$NM_P_CG"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_for TIMEOUT_MS CMD...: poll CMD until it succeeds; prints the ms it
# took; 1 on timeout.
wait_for() {
	local t=$1 start now
	shift
	start=$(now_ms)
	while :; do
		if "$@"; then
			echo $(($(now_ms) - start))
			return 0
		fi
		now=$(now_ms)
		((now - start > t)) && return 1
		sleep 0.02
	done
}

has_workload() { workload_cgroups "$1" | grep -qx "$2"; }
no_workload() { ! has_workload "$@"; }
has_endpoint() { [[ " $(endpoint_ips "$1") " == *" $2 "* ]]; }
no_endpoint() { ! has_endpoint "$@"; }

# ------------------------------------------------------------ log checks

count() { grep -c -- "$2" "$1" 2>/dev/null; }

# flow_ok NAME POD: one flow POD -> echo VIP; both agents log the exact
# identities (node-1 outbound: src_id, peer_id; node-2 inbound: peer_id,
# local_id). Sets FLOW_ERR on failure.
flow_ok() {
	local pod=$1 out src out_line in_line flow
	FLOW_ERR=""
	out=$(nm_pod_exec "$pod" "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000)
	if [[ $(nm_json "$out" match) != true ]]; then
		FLOW_ERR="$pod -> 198.19.0.10:80 failed: $out"
		return 1
	fi
	src=$(nm_json "$out" local)
	out_line=$(nm_flow_line "$log1" outbound src "$src") || out_line=""
	flow=$(nm_kv "$out_line" flow) || flow=""
	in_line=""
	[[ -n $flow ]] && { in_line=$(nm_flow_line "$log2" inbound flow "$flow") || in_line=""; }
	if [[ $(nm_kv "$out_line" path) == remote &&
		$(nm_kv "$out_line" src_id) == "$CLIENT_ID" && $(nm_kv "$out_line" peer_id) == "$ECHO_ID" &&
		$(nm_kv "$in_line" peer_id) == "$CLIENT_ID" && $(nm_kv "$in_line" local_id) == "$ECHO_ID" ]]; then
		return 0
	fi
	FLOW_ERR="identities: node-1 '${out_line:-no line}' node-2 '${in_line:-no line}'"
	return 1
}

# ----------------------------------------------------------------- setup

nm_cluster_init
trap 'k4_cleanup; nm_cluster_cleanup' EXIT
nm_cluster_create
nm_cluster_certs
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)

# client-3's and idle-2's cgroups come later, in the scenario. (The harness
# made a netns for neither: client-3 needs one, on node-1's bridge.)
nm_pod_info client-3
c3_ns=$NM_P_NS
c3_cg=$NM_P_CG
nm_env_add NM_NETNS "$c3_ns"
ip netns add "$c3_ns" || nm_die "netns $c3_ns"
ip -n "$c3_ns" link set lo up
ip -n "$(nm_node_ns 1)" link add "${NM_RUN}n1p3" type veth peer name eth0 netns "$c3_ns" || nm_die "veth client-3"
ip -n "$(nm_node_ns 1)" link set "${NM_RUN}n1p3" master "${NM_RUN}br" up
ip -n "$c3_ns" addr add "$NM_P_IP/24" dev eth0
ip -n "$c3_ns" link set eth0 up
ip -n "$c3_ns" route add default via "${NM_BRIDGE_ADDR[1]}" || nm_die "client-3 route"
nm_pod_info idle-2
idle_cg=$NM_P_CG

# The settings-only file: what --config holds in Kubernetes mode.
mesh_json=$NM_STATE/mesh.json
# Its healthPort differs from the harness's cluster.json (default 15021):
# the agent listening there shows the later --config was the one read.
HEALTH_PORT=15121
jq --argjson hp "$HEALTH_PORT" '{trustDomain, certDir, mesh: (.mesh + {healthPort: $hp})}' \
	"$NM_STATE/cluster.json" >"$mesh_json" || nm_die "mesh.json"

for n in 1 2; do
	ip -n "$(nm_node_ns "$n")" link show lo | grep -q 'state UNKNOWN\|UP' || ip -n "$(nm_node_ns "$n")" link set lo up
	api_start "$n" --objects "$K8S_DIR/objects" || nm_die "apiserver on node-$n"
done

t0=$(now_ms)
for n in 1 2; do
	# The harness passes --config cluster.json first; the later one wins.
	if ! nm_agent_start "$n" --kubernetes --kubeconfig "$NM_STATE/apiserver-$n/kubeconfig" \
		--kube-cgroup-root "${NM_CG#"$NM_CGROUP2"/}/node-$n" --config "$mesh_json"; then
		nm_dump_logs 40
		nm_die "agent node-$n did not start in Kubernetes mode"
	fi
done
start_ms=$(($(now_ms) - t0))
nm_start_echo echo 8080
nm_start_echo local-echo 8080

# ------------------------------------------------------------- 0. start

bad=""
for n in 1 2; do
	log=$(nm_agent_log "$n")
	grep -q 'msg="kubernetes source started".*auth=token' "$log" || bad+=" node-$n: no 'kubernetes source started ... auth=token';"
	for k in pods services endpointslices nodes namespaces authorizationpolicies; do
		grep -q "msg=\"listed\" kind=$k " "$log" || bad+=" node-$n: $k not listed;"
	done
	grep -q "msg=\"kubepods cgroup found\" cgroup_root=$NM_CG/node-$n/kubepods\$" "$log" ||
		bad+=" node-$n: kubepods root not $NM_CG/node-$n/kubepods;"
	grep -q "msg=\"datapath attached\" cgroup_root=$NM_CG/node-$n/kubepods " "$log" ||
		bad+=" node-$n: datapath not attached at the kubepods root;"
	grep -q "msg=\"listening\" role=health addr=${NM_NODE_ADDR[$n]}:$HEALTH_PORT " "$log" ||
		bad+=" node-$n: not listening on mesh.json's healthPort $HEALTH_PORT (the first --config read?);"
done
if [[ -z $bad ]]; then
	nm_pass k8s-start
	echo "    both agents ready from the API in ${start_ms} ms" >&2
else
	nm_fail k8s-start "$bad"
fi

# libcurl is loaded by the Kubernetes source itself (agent/k8s/curl_dl.h):
# not a NEEDED entry of the agent, mapped in these two agents that use it.
bad=""
readelf -d "$NODEMESHD" | grep -q 'NEEDED.*libcurl' && bad+=" nodemeshd has libcurl in NEEDED;"
for n in 1 2; do
	pid_var=NM_AGENT_PID_$n
	grep -q 'libcurl\.so' "/proc/${!pid_var}/maps" 2>/dev/null || bad+=" node-$n: libcurl not mapped;"
done
if [[ -z $bad ]]; then nm_pass k8s-curl-loaded-on-start; else nm_fail k8s-curl-loaded-on-start "$bad"; fi

# --------------------------------------------------------------- 1. maps

want1="$(pod_cgid client) $(pod_cgid local-echo)"
want2="$(pod_cgid echo) $(pod_cgid client-2)"
got1=$(workload_cgroups 1 | sort -n | tr '\n' ' ' | sed 's/ $//')
got2=$(workload_cgroups 2 | sort -n | tr '\n' ' ' | sed 's/ $//')
sorted() { tr ' ' '\n' <<<"$1" | sort -n | tr '\n' ' ' | sed 's/ $//'; }
ep1=$(endpoint_ips 1)
ep2=$(endpoint_ips 2)
# legacy-db-0 (namespace legacy, unmeshed, but the pod's annotation meshes
# it) runs on node-1 without a cgroup there: left out on node-1, an
# endpoint on node-2, with its second (IPv6) address. kube-proxy (hostNetwork), legacy-web (unmeshed) and
# batch (Pending) are nowhere.
want_ep1="198.18.1.11 198.18.1.12 198.18.2.11 198.18.2.12"
want_ep2="198.18.1.11 198.18.1.12 198.18.1.20 198.18.2.11 198.18.2.12 fd00:198:18:1:0:0:0:20"
if [[ $got1 == "$(sorted "$want1")" && $got2 == "$(sorted "$want2")" &&
	$ep1 == "$want_ep1" && $ep2 == "$want_ep2" ]]; then
	nm_pass k8s-maps
else
	nm_fail k8s-maps "nm_workloads node-1 '$got1' (want $(sorted "$want1")) node-2 '$got2' (want $(sorted "$want2")); nm_endpoints node-1 '$ep1' (want $want_ep1) node-2 '$ep2' (want $want_ep2)"
fi

# ------------------------------------------------------------ 2. traffic

if flow_ok client; then nm_pass k8s-traffic; else nm_fail k8s-traffic "$FLOW_ERR"; fi

# ---------------------------------------------------------- 3. pod added

mkdir -p "$c3_cg"
c3_id=$(cgid "$c3_cg")
# The request is built before the clock starts and one poll checks both
# nodes' maps: the bound is the agents' latency, not jq's or bpftool's.
c3_apply=$(jq -c '{op: "apply", object: .}' "$K8S_DIR/events/pod-client-3.json")
c3_meshed() { has_workload 1 "$c3_id" && has_endpoint 2 198.18.1.13; }
t0=$(now_ms)
api_both "$c3_apply" || nm_fail k8s-pod-added "apply client-3 failed"
if wait_for 3000 c3_meshed >/dev/null; then
	ms=$(($(now_ms) - t0))
	if ((ms <= 1000)) && flow_ok client-3; then
		nm_pass k8s-pod-added
	else
		nm_fail k8s-pod-added "meshed after ${ms} ms (limit 1000); flow: ${FLOW_ERR:-ok}"
	fi
	echo "    client-3 in node-1 nm_workloads and node-2 nm_endpoints ${ms} ms after the event was sent" >&2
else
	nm_fail k8s-pod-added "client-3 (cgroup $c3_id) not in node-1 nm_workloads ($(workload_cgroups 1 | tr '\n' ' ')) or 198.18.1.13 not in node-2 nm_endpoints ($(endpoint_ips 2)) after 3 s"
fi

# -------------------------------------------------------- 4. pod deleted

c3_gone() { no_workload 1 "$c3_id" && no_endpoint 1 198.18.1.13 && no_endpoint 2 198.18.1.13; }
t0=$(now_ms)
api_both '{"op":"delete","kind":"Pod","namespace":"default","name":"client-3"}' ||
	nm_fail k8s-pod-deleted "delete client-3 failed"
if wait_for 3000 c3_gone >/dev/null; then
	ms=$(($(now_ms) - t0))
	echo "    client-3 gone from node-1 nm_workloads and both nm_endpoints ${ms} ms after the delete" >&2
	# No longer meshed: the VIP is routed nowhere, the connect fails.
	out=$(nm_pod_exec client-3 "$NM_PEER" send --to 198.19.0.10:80 --bytes 1K --timeout-ms 1500 2>&1)
	if ((ms <= 1000)) && [[ $(nm_json "$out" match) != true ]]; then
		nm_pass k8s-pod-deleted
	else
		nm_fail k8s-pod-deleted "gone after ${ms} ms (limit 1000); connect from the deleted pod: $out"
	fi
else
	nm_fail k8s-pod-deleted "client-3 still in maps after 3 s: node-1 nm_workloads $(workload_cgroups 1 | tr '\n' ' '); endpoints node-1 '$(endpoint_ips 1)' node-2 '$(endpoint_ips 2)'"
fi

# ------------------------------------------------- 5. watch cut, then 410

cut1=$(count "$log1" 'msg="watch cut, resuming" kind=pods ')
cut2=$(count "$log2" 'msg="watch cut, resuming" kind=pods ')
gone1=$(count "$log1" 'msg="watch expired (410 Gone), relisting" kind=pods')
gone2=$(count "$log2" 'msg="watch expired (410 Gone), relisting" kind=pods')
# The next pods watch answers ERROR 410; the open one is cut in the middle
# of the next event, which adds idle-2 (node-2, its cgroup not made yet).
steps=$(jq -c '{steps: [{op: "gone", resource: "pods", count: 1}, {op: "cut", resource: "pods", mode: "half"},
	{op: "apply", object: .}]}' "$K8S_DIR/events/pod-idle-2.json")
api_both "$steps" || nm_fail k8s-watch-cut-410 "scenario steps failed"
# Each server cut exactly one pods watch: the agent's.
for n in 1 2; do
	v="CTL_OUT_$n"
	[[ $(jq -c '[.results[] | select(.op == "cut") | .watches]' <<<"${!v:-{\}}" 2>/dev/null) == "[1]" ]] ||
		nm_fail k8s-watch-cut-410 "node-$n server: the cut did not hit one pods watch: ${!v:-}"
done
logged() {
	(($(count "$log1" 'msg="watch cut, resuming" kind=pods ') > cut1 &&
		$(count "$log2" 'msg="watch cut, resuming" kind=pods ') > cut2 &&
		$(count "$log1" 'msg="watch expired (410 Gone), relisting" kind=pods') > gone1 &&
		$(count "$log2" 'msg="watch expired (410 Gone), relisting" kind=pods') > gone2))
}
if ! wait_for 5000 logged >/dev/null; then
	nm_fail k8s-watch-cut-410 "cut/410 not logged by both agents: $(grep -h 'kind=pods' "$log1" "$log2" | grep -E 'cut|410|relist' | tail -n 4)"
elif ! wait_for 3000 has_endpoint 1 198.18.2.13 >/dev/null; then
	nm_fail k8s-watch-cut-410 "after the relist idle-2 (198.18.2.13) is not in node-1 nm_endpoints: $(endpoint_ips 1)"
elif ! flow_ok client; then
	nm_fail k8s-watch-cut-410 "after the relist: $FLOW_ERR"
else
	nm_pass k8s-watch-cut-410
fi

# ------------------------------------------- 6. cgroup after the pod event

# idle-2 is known to node-2 but waits for its cgroup.
if has_endpoint 2 198.18.2.13; then
	nm_fail k8s-cgroup-late "idle-2 is in node-2's nm_endpoints before its cgroup exists"
else
	mkdir -p "$idle_cg"
	idle_id=$(cgid "$idle_cg")
	if ms=$(wait_for 3000 has_workload 2 "$idle_id"); then
		if ((ms <= 1000)) && has_endpoint 2 198.18.2.13; then
			nm_pass k8s-cgroup-late
		else
			nm_fail k8s-cgroup-late "meshed ${ms} ms after the mkdir (limit 1000); node-2 endpoints $(endpoint_ips 2)"
		fi
		echo "    idle-2 meshed ${ms} ms after its cgroup appeared" >&2
	else
		nm_fail k8s-cgroup-late "idle-2 (cgroup $idle_id) not in node-2 nm_workloads 3 s after its cgroup appeared"
	fi
fi

# ---------------------------------------------- 7. API server down, back

w1=$(workload_cgroups 1 | sort -n | tr '\n' ' ')
w2=$(workload_cgroups 2 | sort -n | tr '\n' ' ')
ep1=$(endpoint_ips 1)
ep2=$(endpoint_ips 2)
refused='msg="watch refused, retrying" kind=pods http=0'
ref1=$(count "$log1" "$refused")
ref2=$(count "$log2" "$refused")
api_stop 1
api_stop 2
# Down long enough for the agents to have retried and backed off (200,
# 400, 800 ms...): three refused pods watches each.
noticed() { (($(count "$log1" "$refused") >= ref1 + 3 && $(count "$log2" "$refused") >= ref2 + 3)); }
if ! wait_for 8000 noticed >/dev/null; then
	nm_fail k8s-api-down "the agents did not retry against the stopped API servers: $(grep -h 'kind=pods' "$log1" | grep -v debug | tail -n 3)"
elif [[ $(workload_cgroups 1 | sort -n | tr '\n' ' ') != "$w1" || $(workload_cgroups 2 | sort -n | tr '\n' ' ') != "$w2" ||
	$(endpoint_ips 1) != "$ep1" || $(endpoint_ips 2) != "$ep2" ]]; then
	nm_fail k8s-api-down "maps changed while the API was down: endpoints node-1 '$(endpoint_ips 1)' (was '$ep1') node-2 '$(endpoint_ips 2)' (was '$ep2')"
elif ! flow_ok client; then
	nm_fail k8s-api-down "API down: $FLOW_ERR"
else
	nm_pass k8s-api-down
fi

# Back, with history of its own (a restarted server's watch cache starts
# at a newer revision than the agents resume from: 410, relist), without
# idle-2, and answering the first two pods lists with 500: a failed relist
# keeps the objects the agent had while the other kinds relist. The kept
# state lasts two backoffs (0.3 s at the very least) after an agent's first
# failure.
failed='msg="list failed, keeping the last good objects" kind=pods http=500'
fail1=$(count "$log1" "$failed")
fail2=$(count "$log2" "$failed")
gone1=$(count "$log1" 'msg="watch expired (410 Gone), relisting" kind=pods')
gone2=$(count "$log2" 'msg="watch expired (410 Gone), relisting" kind=pods')
t0=$(now_ms)
for n in 1 2; do
	api_start "$n" --objects "$K8S_DIR/objects" --rv-start 50000 \
		--scenario "$K8S_DIR/scenarios/restart-list-fails.json" || nm_fail k8s-api-back "apiserver $n restart"
done
# Each node is looked at as soon as its own failed list is logged: the two
# agents come back from their backoff at different times, and a node whose
# lists failed early may already have relisted (without idle-2) by the time
# the other one logs its failure.
kept1=unseen kept2=unseen
kept_after_failure() {
	if [[ $kept1 == unseen ]] && (($(count "$log1" "$failed") > fail1)); then
		has_endpoint 1 198.18.2.13 && kept1=yes || kept1="no (node-1 endpoints '$(endpoint_ips 1)')"
	fi
	if [[ $kept2 == unseen ]] && (($(count "$log2" "$failed") > fail2)); then
		has_workload 2 "$idle_id" && has_endpoint 2 198.18.2.13 && kept2=yes ||
			kept2="no (node-2 endpoints '$(endpoint_ips 2)', workloads '$(workload_cgroups 2 | tr '\n' ' ')')"
	fi
	[[ $kept1 != unseen && $kept2 != unseen ]]
}
if ! wait_for 10000 kept_after_failure >/dev/null; then
	nm_fail k8s-relist-fails "no failed pods relist logged after the restart (node-1 $kept1, node-2 $kept2)"
elif [[ $kept1 != yes || $kept2 != yes ]]; then
	nm_fail k8s-relist-fails "a failed relist dropped idle-2: node-1 $kept1, node-2 $kept2"
else
	nm_pass k8s-relist-fails
fi
relisted() {
	(($(count "$log1" 'msg="watch expired (410 Gone), relisting" kind=pods') > gone1 &&
		$(count "$log2" 'msg="watch expired (410 Gone), relisting" kind=pods') > gone2))
}
# Each agent's pods stream backed off while the servers were down and
# again on each failed list (doubling, up to 30 s): allow for that.
idle_gone() { no_endpoint 1 198.18.2.13 && no_workload 2 "$idle_id" && no_endpoint 2 198.18.2.13; }
if ! wait_for 40000 idle_gone >/dev/null; then
	nm_fail k8s-api-back "idle-2 still in the maps after the restart: node-1 endpoints '$(endpoint_ips 1)' node-2 '$(endpoint_ips 2)'"
elif ! relisted; then
	nm_fail k8s-api-back "caught up without a logged 410 relist of pods"
else
	ms=$(($(now_ms) - t0))
	echo "    caught up ${ms} ms after the restart (after a failed pods list)" >&2
	if flow_ok client; then nm_pass k8s-api-back; else nm_fail k8s-api-back "after the restart: $FLOW_ERR"; fi
fi

rundir=$NM_AGENT_RUN_BASE/$(nm_instance 1)
if [[ ! -f $rundir/authorizationpolicies/kubernetes.json ]]; then
	nm_fail k8s-stop-cleans "no policy copy in $rundir while running: $(find "$rundir" 2>&1 | tr '\n' ' ')"
else
	nm_agent_stop 1 5
	if [[ $NM_AGENT_RC != 0 ]]; then
		nm_fail k8s-stop-cleans "SIGTERM: exit $NM_AGENT_RC, not a clean shutdown (0)"
	elif [[ -e $rundir ]]; then
		nm_fail k8s-stop-cleans "after SIGTERM (exit $NM_AGENT_RC) $rundir holds: $(find "$rundir" | tr '\n' ' ')"
	else
		nm_pass k8s-stop-cleans
	fi
fi

((NM_FAILS)) && nm_dump_logs 40
exit $((NM_FAILS > 0))
