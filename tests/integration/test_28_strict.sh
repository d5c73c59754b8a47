#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_28_strict - issue 9, strict and permissive inbound (docs/strict.md).
# The cluster file sets "mesh": {"defaultMode": "STRICT"}; client-2 (node-2)
# says "mode": "PERMISSIVE"; echo (node-2) and local-echo (node-1) inherit
# STRICT. Echo servers listen on 8080 in echo, local-echo and client-2.
#
#   strict-flags           nm_workloads carries NM_WL_STRICT for exactly the
#                          STRICT local pods on each node
#   strict-ingress-hooked  link_ingress is pinned and attached at each node's
#                          cgroup root (and nowhere above it)
#   strict-plain-*-dropped an unmeshed process (the client pod's netns, the
#                          `outside` cgroup) connects in plaintext to a STRICT
#                          pod on the same and on the other node: the connect
#                          times out and nm_strict_drops counts it for that
#                          workload on that node
#   strict-plain-permissive the same to the PERMISSIVE pod works
#   strict-meshed-cross-node / strict-meshed-same-node  the client pod's
#                          meshed connections to the STRICT pods (service
#                          VIPs; cross-node over mTLS, same-node through the
#                          local agent) carry their bytes, each admitted by a
#                          tuple in nm_mesh_conns (mesh_admits grows, no drop)
#   strict-mesh-conns-cleaned  the tuples leave nm_mesh_conns when the flows
#                          close
#   strict-prober-admitted a node-netns process bound to the node address (the
#                          default prober) reaches the STRICT pod; the same
#                          process from the bridge address is dropped
#   strict-ipv6-plain-dropped / strict-ipv6-meshed  the same for IPv6: echo
#                          gets a routed v6 address; an unmeshed v6 connect
#                          is dropped and counted, an NMTP flow through
#                          node-2's agent to [v6]:8081 carries its bytes
#   strict-reload-permissive  local-echo switched to PERMISSIVE by a reload:
#                          the plaintext connection from the unmeshed process
#                          works
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CONNECT=$NM_BUILD/tests/tools/nm_connect
name=strict
nm_require_bins "$name"
[[ -x $CONNECT ]] || { nm_fail "$name" "missing $CONNECT (run make)"; exit 1; }
command -v bpftool >/dev/null || { nm_fail "$name" "bpftool missing"; exit 1; }

nm_cluster_init
nm_cluster_create
set_modes() {
	python3 - "$NM_CLUSTER_JSON" "$@" <<'PY' || nm_die "cannot set modes in cluster.json"
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["mesh"]["defaultMode"] = "STRICT"
for arg in sys.argv[2:]:
    wl, mode = arg.split("=")
    for w in c["workloads"]:
        if w["name"] == wl:
            w["mode"] = mode
json.dump(c, open(p + ".tmp", "w"), indent=2)
PY
	mv "$NM_CLUSTER_JSON.tmp" "$NM_CLUSTER_JSON"
}
set_modes client-2=PERMISSIVE
nm_cluster_certs
{ nm_agent_start 1 && nm_agent_start 2; } || { nm_dump_logs; nm_fail "$name" "agents did not start"; exit 1; }
for p in echo local-echo client-2; do
	nm_start_echo "$p" 8080
done
log1=$(nm_agent_log 1)
ip_local=$(nm_pod_ip local-echo)
ip_echo=$(nm_pod_ip echo)
ip_perm=$(nm_pod_ip client-2)
pins() { echo "$NM_PIN_BASE/$(nm_instance "$1")"; }

# Map readers (bpftool prints BTF-typed JSON).
# wl_id N IP: the workload id of a pod address in node N's nm_endpoints.
wl_id() {
	bpftool -j map dump pinned "$(pins "$1")/nm_endpoints" | python3 -c '
import ipaddress, json, sys
want = ipaddress.ip_address(sys.argv[1])
for e in json.load(sys.stdin):
    a = ipaddress.ip_address(bytes(e["formatted"]["key"]["a"]))
    if getattr(a, "ipv4_mapped", None) == want or a == want:
        print(e["formatted"]["value"]["workload_id"]); break
' "$2"
}
# strict_count N WLID FIELD: nm_strict_drops[WLID].FIELD summed over CPUs.
strict_count() {
	bpftool -j map dump pinned "$(pins "$1")/nm_strict_drops" | python3 -c '
import json, sys
wl, field = int(sys.argv[1]), sys.argv[2]
n = 0
for e in json.load(sys.stdin):
    f = e["formatted"]
    if f["key"] == wl:
        n += sum(v["value"][field] for v in f["values"])
print(n)
' "$2" "$3"
}
# strict_flags N: how many nm_workloads entries carry NM_WL_STRICT, of all.
strict_flags() {
	bpftool -j map dump pinned "$(pins "$1")/nm_workloads" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(sum(1 for e in m if e["formatted"]["value"]["flags"] & 2), len(m))
'
}
mesh_conns() { bpftool -j map dump pinned "$(pins "$1")/nm_mesh_conns" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

id_local=$(wl_id 1 "$ip_local")
id_echo=$(wl_id 2 "$ip_echo")
id_perm=$(wl_id 2 "$ip_perm")
[[ -n $id_local && -n $id_echo && -n $id_perm ]] ||
	{ nm_fail "$name" "workload ids: local=$id_local echo=$id_echo perm=$id_perm"; exit 1; }

# node-1: client and local-echo, both STRICT (defaultMode); node-2: echo
# STRICT, client-2 PERMISSIVE.
f1=$(strict_flags 1)
f2=$(strict_flags 2)
nm_check strict-flags "node-1 strict/all: $f1, node-2: $f2" test "$f1" == "2 2" -a "$f2" == "1 2"

hooked=1
for n in 1 2; do
	[[ -e $(pins "$n")/link_ingress ]] || hooked=0
	# "cgroup_inet_ingress" in newer bpftool, "ingress" in older ones.
	bpftool -j cgroup show "$NM_CG/node-$n" | grep -Eq '"attach_type":"(cgroup_inet_)?ingress"' || hooked=0
	# Attached at the node root only: not at the run's cgroup above it.
	bpftool -j cgroup show "$NM_CG" | grep -q 'ingress' && hooked=0
done
nm_check strict-ingress-hooked "link_ingress pins and cgroup attachments: $(bpftool cgroup show "$NM_CG/node-1" 2>&1 | tr '\n' ' ')" test "$hooked" == 1

# plain N TARGETPOD IP TIMEOUT_MS: an unmeshed connect from the client's netns.
plain() { nm_outside_exec client "$CONNECT" --to "$1:8080" --send "plain" --timeout-ms "$2" 2>&1; }

# 1. Plaintext to STRICT pods: refused and counted where the pod lives.
d_local=$(strict_count 1 "$id_local" drops)
d_echo=$(strict_count 2 "$id_echo" drops)
out_local=$(plain "$ip_local" 1500)
rc_local=$?
out_echo=$(plain "$ip_echo" 1500)
rc_echo=$?
d_local2=$(strict_count 1 "$id_local" drops)
d_echo2=$(strict_count 2 "$id_echo" drops)
nm_check strict-plain-same-node-dropped "to local-echo: rc=$rc_local '$out_local', drops $d_local -> $d_local2" \
	test "$rc_local" != 0 -a "$d_local2" -gt "$d_local"
nm_check strict-plain-cross-node-dropped "to echo: rc=$rc_echo '$out_echo', drops $d_echo -> $d_echo2" \
	test "$rc_echo" != 0 -a "$d_echo2" -gt "$d_echo"
[[ $out_local == *ETIMEDOUT* && $out_echo == *ETIMEDOUT* ]] &&
	nm_pass strict-plain-timeout || nm_fail strict-plain-timeout "expected unanswered SYNs: '$out_local' '$out_echo'"

# 2. The same to the PERMISSIVE pod works.
out=$(plain "$ip_perm" 5000)
nm_check strict-plain-permissive "to client-2: $out, drops $(strict_count 2 "$id_perm" drops)" \
	test "$out" == "ok plain" -a "$(strict_count 2 "$id_perm" drops)" == 0

# 3. Meshed flows to the STRICT pods work, admitted by their tuples.
m_echo=$(strict_count 2 "$id_echo" mesh_admits)
m_local=$(strict_count 1 "$id_local" mesh_admits)
d_echo=$(strict_count 2 "$id_echo" drops)
d_local=$(strict_count 1 "$id_local" drops)
ok_cross=0 ok_same=0
for i in 1 2 3; do
	nm_pod_exec client "$CONNECT" --to 198.19.0.10:80 --send "cross-$i" --timeout-ms 5000 >/dev/null 2>&1 &&
		ok_cross=$((ok_cross + 1))
	nm_pod_exec client "$CONNECT" --to 198.19.0.11:80 --send "same-$i" --timeout-ms 5000 >/dev/null 2>&1 &&
		ok_same=$((ok_same + 1))
done
big=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 262144 --timeout-ms 20000)
m_echo2=$(strict_count 2 "$id_echo" mesh_admits)
m_local2=$(strict_count 1 "$id_local" mesh_admits)
nm_check strict-meshed-cross-node "3 connects ok=$ok_cross, 256 KiB: $big; echo mesh_admits $m_echo -> $m_echo2, drops $d_echo -> $(strict_count 2 "$id_echo" drops)" \
	test "$ok_cross" == 3 -a "$(nm_json "$big" match)" == true -a "$m_echo2" -ge $((m_echo + 4)) \
	-a "$(strict_count 2 "$id_echo" drops)" == "$d_echo"
nm_check strict-meshed-same-node "3 connects ok=$ok_same; local-echo mesh_admits $m_local -> $m_local2, drops $d_local -> $(strict_count 1 "$id_local" drops)" \
	test "$ok_same" == 3 -a "$m_local2" -ge $((m_local + 3)) -a "$(strict_count 1 "$id_local" drops)" == "$d_local"
# A same-node flow line shows it took the agent path (plaintext relay).
nm_check strict-meshed-same-node-path "node-1 flow lines to $ip_local:8080: $(grep -c "backend=$ip_local:8080" "$log1")" \
	grep -q "backend=$ip_local:8080 path=local" "$log1"

for ((i = 0; i < 40; i++)); do
	[[ $(mesh_conns 1) == 0 && $(mesh_conns 2) == 0 ]] && break
	sleep 0.05
done
nm_check strict-mesh-conns-cleaned "nm_mesh_conns entries left: node-1 $(mesh_conns 1), node-2 $(mesh_conns 2)" \
	test "$(mesh_conns 1)" == 0 -a "$(mesh_conns 2)" == 0

# 4. The node address is the default prober (kubelet probes come from the
# node); the bridge address the node otherwise uses is not.
p_local=$(strict_count 1 "$id_local" prober_admits)
d_local=$(strict_count 1 "$id_local" drops)
probe=$(nm_node_exec 1 "$CONNECT" --bind "${NM_NODE_ADDR[1]}:0" --to "$ip_local:8080" --send probe --timeout-ms 5000 2>&1)
nobind=$(nm_node_exec 1 "$CONNECT" --to "$ip_local:8080" --send probe --timeout-ms 1500 2>&1)
nm_check strict-prober-admitted "from ${NM_NODE_ADDR[1]}: $probe (prober_admits $p_local -> $(strict_count 1 "$id_local" prober_admits)); from the bridge: $nobind (drops $d_local -> $(strict_count 1 "$id_local" drops))" \
	test "$probe" == "ok probe" -a "$(strict_count 1 "$id_local" prober_admits)" -gt "$p_local" \
	-a "$nobind" != "ok probe" -a "$(strict_count 1 "$id_local" drops)" -gt "$d_local"

# 5. IPv6: echo (STRICT, node-2) gets a routed v6 address and a v6 server.
# An unmeshed process of node-2's netns (source: the bridge's v6 address,
# no prober) is dropped and counted; a meshed connection (an NMTP client
# with the client identity, through node-2's inbound agent, which binds to
# the bridge's v6 address and registers that tuple first) gets through.
e6=fd00:18:2::11
gw6=fd00:18:2::1
ns2=$(nm_node_ns 2)
nm_pod_info echo
v6ok=1
ip -n "$NM_P_NS" addr add "$e6/128" dev eth0 nodad &&
	ip -n "$NM_P_NS" -6 route add "$gw6" dev eth0 &&
	ip -n "$NM_P_NS" -6 route add default via "$gw6" dev eth0 &&
	ip -n "$ns2" addr add "$gw6/128" dev "${NM_RUN}br" nodad &&
	ip -n "$ns2" -6 route add "$e6/128" dev "${NM_RUN}br" || v6ok=0
log2=$(nm_agent_log 2)
before=$(grep -c 'msg="config reloaded"' "$log2")
jq --arg e "$e6" '(.workloads[] | select(.name == "echo") | .ip6) = $e' "$NM_CLUSTER_JSON" \
	>"$NM_CLUSTER_JSON.tmp" && mv "$NM_CLUSTER_JSON.tmp" "$NM_CLUSTER_JSON" || v6ok=0
kill -HUP "$NM_AGENT_PID_2"
for ((i = 0; i < 100; i++)); do
	(($(grep -c 'msg="config reloaded"' "$log2") > before)) && break
	sleep 0.05
done
nm_pod_spawn echo echo6 "$NM_PEER" serve --port 8081 --addr :: --log-conns
nm_wait_listen "$NM_P_NS" 8081 5 || v6ok=0
if ((!v6ok)); then
	nm_fail strict-ipv6 "IPv6 set-up failed"
else
	certs=$NM_STATE/certs/default
	d6=$(strict_count 2 "$id_echo" drops)
	m6=$(strict_count 2 "$id_echo" mesh_admits)
	plain6=$(nm_node_exec 2 "$CONNECT" --to "[$e6]:8081" --send plain6 --timeout-ms 1500 2>&1)
	d6b=$(strict_count 2 "$id_echo" drops)
	nm_check strict-ipv6-plain-dropped "unmeshed [$gw6] -> [$e6]:8081: $plain6, drops $d6 -> $d6b" \
		test "$plain6" != "ok plain6" -a "$d6b" -gt "$d6"
	meshed6=$(nm_node_exec 1 "$NM_PEER" nmtp --to "${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT" \
		--dst "[$e6]:8081" --cert "$certs/client/cert.pem" --key "$certs/client/key.pem" \
		--sni "echo.default.$NM_TRUST_DOMAIN" --bytes 4K --timeout-ms 5000)
	m6b=$(strict_count 2 "$id_echo" mesh_admits)
	nm_check strict-ipv6-meshed "NMTP to [$e6]:8081: $meshed6; mesh_admits $m6 -> $m6b, drops $d6b -> $(strict_count 2 "$id_echo" drops)" \
		test "$(nm_json "$meshed6" status)" == 0 -a "$(nm_json "$meshed6" echoed)" == 4096 \
		-a "$m6b" -gt "$m6" -a "$(strict_count 2 "$id_echo" drops)" == "$d6b"
fi

# 6. A reload turns local-echo PERMISSIVE: plaintext reaches it again.
before=$(grep -c 'msg="config reloaded"' "$log1")
set_modes client-2=PERMISSIVE local-echo=PERMISSIVE
kill -HUP "$NM_AGENT_PID_1"
for ((i = 0; i < 100; i++)); do
	(($(grep -c 'msg="config reloaded"' "$log1") > before)) && break
	sleep 0.05
done
f1=$(strict_flags 1)
out=$(plain "$ip_local" 5000)
nm_check strict-reload-permissive "after reload: flags $f1, plaintext to local-echo: $out" \
	test "$f1" == "1 2" -a "$out" == "ok plain"

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
