#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_10_agent_hardening - what the agent keeps and what it refuses:
#   caps-after-setup      the running agent holds no capability, except
#                         CAP_BPF on kernels that need it for map fds and
#                         CAP_NET_ADMIN while it preserves the client's
#                         address (effective, permitted and bounding),
#                         no_new_privs
#   fd-limit-raised       the open-file soft limit was raised to the hard one
#   keys-0600             every private key the CA tool wrote is mode 0600
#   bad-config-kept       a broken cluster file on SIGHUP is rejected with an
#                         error naming the file and field; traffic still flows
#   reload-adds-service   a good file on SIGHUP adds a service VIP that then
#                         works through the mesh
#   health-ready          GET /healthz/ready on the node address :15021
#                         answers 200 "ready" (kubelet's probe); another
#                         path answers 404
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_require_bins hardening
nm_cluster_init
nm_cluster_up || { nm_dump_logs; nm_fail hardening "cluster setup failed"; exit 1; }
. "$NM_STATE/cluster.env"
pid=$NM_AGENT_PID_1
log1=$(nm_agent_log 1)

# Nothing for the datapath (no socket marks any more); CAP_BPF (39)
# only where the kernel checks it on every bpf() call, as the agent's own
# probe recorded.
feat=/run/nodemesh/$(nm_instance 1)/features.json
if grep -q '"map_fd_unpriv": true' "$feat"; then
	want=$(printf '%016x' 0)
elif grep -q '"map_fd_unpriv": false' "$feat"; then
	want=$(printf '%016x' $((1 << 39)))
else
	nm_fail caps-after-setup "no map_fd_unpriv in $feat"
	want=unknown
fi
# CAP_NET_ADMIN (12) while source preservation is active (IP_TRANSPARENT on
# each upstream socket to a pod, and removing its nft table and rules at
# exit), as the agent reports in agent.json; never otherwise.
srcmode=$(jq -r '.features.source_address // empty' "/run/nodemesh/$(nm_instance 1)/agent.json" 2>/dev/null)
case $srcmode in
preserved) [[ $want != unknown ]] && want=$(printf '%016x' $((0x$want | (1 << 12)))) ;;
agent) ;;
*) nm_fail caps-after-setup "no features.source_address in agent.json"; want=unknown ;;
esac
st=/proc/$pid/status
eff=$(awk '/^CapEff/ {print $2}' "$st")
prm=$(awk '/^CapPrm/ {print $2}' "$st")
bnd=$(awk '/^CapBnd/ {print $2}' "$st")
nnp=$(awk '/^NoNewPrivs/ {print $2}' "$st")
if [[ $eff == "$want" && $prm == "$want" && $bnd == "$want" && $nnp == 1 ]]; then
	nm_pass caps-after-setup
else
	nm_fail caps-after-setup "CapEff=$eff CapPrm=$prm CapBnd=$bnd NoNewPrivs=$nnp, want $want"
fi

# Two fds per flow: the agent raises its open-file soft limit to the hard one.
read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' "/proc/$pid/limits")
nm_check fd-limit-raised "open files soft=$soft hard=$hard" test "$soft" == "$hard"

bad=$(find "$NM_STATE" -name 'key.pem' -o -name 'ca.key' | while read -r k; do
	m=$(stat -c %a "$k")
	[[ $m == 600 ]] || echo "$k:$m"
done)
nkeys=$(find "$NM_STATE" -name 'key.pem' -o -name 'ca.key' | wc -l)
if [[ -z $bad ]] && ((nkeys >= 3)); then
	nm_pass "keys-0600 ($nkeys keys)"
else
	nm_fail keys-0600 "keys: $nkeys, wrong modes: $bad"
fi

cfg=$NM_STATE/cluster.json
cp "$cfg" "$NM_STATE/cluster.good.json"
# A workload address that is not an address: the whole file is rejected.
sed '0,/"ip": "198.18.1.11"/s//"ip": "198.18.1.300"/' "$NM_STATE/cluster.good.json" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
kill -HUP "$NM_AGENT_PID_1"
if nm_wait_file_match "$log1" 'config rejected.*cluster.json: workloads\[[0-9]+\]\.ip' 5; then
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 65536 --timeout-ms 10000)
	nm_check bad-config-kept "traffic after a rejected reload: $out" test "$(nm_json "$out" match)" == true
else
	nm_fail bad-config-kept "no rejection naming the file and field: $(grep -i config "$log1" | tail -n 3)"
fi

# A good file with one more service (VIP 198.19.0.12 -> the node-2 echo pod).
sed 's|"services": \[|"services": [ { "name": "echo-b", "namespace": "default", "vip": "198.19.0.12", "ports": [ { "port": 81, "targetPort": 8080 } ], "selector": { "app": "echo" } },|' \
	"$NM_STATE/cluster.good.json" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
grep -q 198.19.0.12 "$cfg" || nm_fail reload-adds-service "could not edit $cfg"
kill -HUP "$NM_AGENT_PID_1" "$NM_AGENT_PID_2"
if nm_wait_file_match "$log1" 'msg="config reloaded"' 5; then
	out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.12:81 --bytes 65536 --timeout-ms 10000)
	nm_check reload-adds-service "new VIP after reload: $out" test "$(nm_json "$out" match)" == true
else
	nm_fail reload-adds-service "agent did not reload: $(tail -n 3 "$log1")"
fi
# The readiness probe, as kubelet sends it (plain HTTP/1.1 over bash's
# /dev/tcp from the node's netns).
probe() {
	nm_node_exec 1 timeout 3 bash -c 'exec 3<>/dev/tcp/'"${NM_NODE_ADDR[1]}"'/15021 &&
		printf "GET %s HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.30\r\n\r\n" "$1" >&3 &&
		cat <&3' _ "$1" 2>&1 | tr -d '\r'
}
ready=$(probe /healthz/ready)
other=$(probe /metrics)
if [[ $(head -n 1 <<<"$ready") == "HTTP/1.1 200 OK" && $(tail -n 1 <<<"$ready") == ready &&
	$(head -n 1 <<<"$other") == "HTTP/1.1 404 Not Found" ]]; then
	nm_pass health-ready
else
	nm_fail health-ready "ready: $(head -n 1 <<<"$ready") / other: $(head -n 1 <<<"$other")"
fi
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
