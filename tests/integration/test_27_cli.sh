#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_27_cli - every nodemesh command against the simulated cluster; what
# each prints is compared with the cluster's own description (NM_PODS,
# NM_SERVICES, the certificate files) and with what bpftool reads from the
# same pinned maps, never with figures written here:
#   cli27-workloads-json     --json names every pod with its namespace,
#                            SPIFFE identity, address, node, mode; exactly
#                            the pods of node 1 are meshed, and their IDs are
#                            the workload_ids bpftool finds in nm_workloads
#   cli27-workloads-human    header and one aligned row per pod (every row's
#                            columns start where the header's do)
#   cli27-services-json/-human  VIP:port, target port, backends (the pods
#                            the selector picks; bpftool's backend_count),
#                            LB algorithm
#   cli27-status-json/-human version, generation (= nm_agent_state's),
#                            uptime, 3 programs with names and types, map
#                            fill of every countable map = bpftool's count,
#                            the source-address mode and events transport
#                            the agent reported
#   cli27-status-update-errors  failed map updates per map (nm_map_errors):
#                            status and maps dump agree, total = bpftool's
#   cli27-maps-list          entries per map = bpftool's count
#   cli27-maps-dump-<map>    typed records, IDs named from the run state:
#                            nm_workloads, nm_services, nm_endpoints,
#                            nm_agent_state, nm_wl_stats (per CPU, summed)
#   cli27-certs-json/-human  identity, serial and notAfter as openssl reads
#                            the certificate files; seconds to expiry
#   cli27-certs-rotated      a certificate reissued in place shows its new
#                            serial once the agent rotated it
#   cli27-version-json       CLI version, ABI, each running agent's version
#   cli27-flows-admin-*      `flows` against node 1's admin API: a flow of a
#                            known size shows with both workloads and
#                            identities, mtls, its bytes both ways, allow;
#                            --follow streams it; --workload filters
#   cli27-flows-fixture-*    against a fixture server of the documented
#                            shape: the document, ?workload= (escaped),
#                            ?follow=1, the address from --admin or the run
#                            state, exit 1 when unreachable
#   cli27-modes-*            after a reload makes local-echo and echo STRICT:
#                            workloads shows the modes (local-echo's from its
#                            nm_workloads STRICT flag), the new generation
#   cli27-maps-dump-probers/-strict-drops  strict inbound's maps decoded
#   cli27-agent-down-*       after SIGTERM (agent.json removed, pins kept):
#                            workloads, services and maps dump print what
#                            the maps hold (IDs, same counts as bpftool) and
#                            say names are missing; certs fails with 1.
#                            After SIGKILL (agent.json left behind) maps dump
#                            still names IDs and status says stopped
#   cli27-usage-*            unknown command / bad flag / missing value /
#                            stray argument: exit 2, a "Usage:" line on stderr
#   cli27-help-*             --help of every command and subcommand: exit 0,
#                            its "Usage: nodemesh <command>" line on stdout
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up cli27
. "$NM_STATE/cluster.env"
inst1=$(nm_instance 1)
inst2=$(nm_instance 2)
cli=$NODEMESH
pins1=$NM_PIN_BASE/$inst1
pins2=$NM_PIN_BASE/$inst2
t_start=$(date +%s)

# ok NAME COND DETAIL: PASS when the shell condition COND (a string for
# eval) holds, else FAIL with DETAIL.
ok() {
	if eval "$2"; then nm_pass "$1"; else nm_fail "$1" "$3"; fi
}
# jqok NAME FILTER JSON [jq args...]
jqok() {
	local name=$1 filter=$2 json=$3
	shift 3
	if jq -e "$@" "$filter" <<<"$json" >/dev/null 2>&1; then
		nm_pass "$name"
	else
		nm_fail "$name" "filter [$filter] false on: $(head -c 1500 <<<"$json")"
	fi
}
# bpftool's entry count of a pinned map.
bcount() { bpftool map dump pinned "$1" -j 2>/dev/null | jq length; }
# aligned FILE: every line's fields start at the header's field offsets.
aligned() {
	awk 'function starts(s,   i, out, prev) {
		out = ""; prev = " "
		for (i = 1; i <= length(s); i++) {
			c = substr(s, i, 1)
			if (c != " " && prev == " ") out = out " " i
			prev = c
		}
		return out
	}
	/^#/ { next }
	!hdr { hdr = starts($0); next }
	{ if (starts($0) != hdr) { print "misaligned: " $0; bad = 1 } }
	END { exit bad }' "$1"
}

# --- what the cluster is --------------------------------------------------------
# Expected workloads as JSON: name, sa, node, ip, meshed on node 1.
expect_wl=$(for p in "${NM_POD_ORDER[@]}"; do
	nm_pod_info "$p"
	jq -nc --arg n "$p" --arg sa "$NM_P_SA" --arg node "node-$NM_P_NODE" \
		--arg ip "$NM_P_IP" --arg td "$NM_TRUST_DOMAIN" \
		'{name: $n, sa: $sa, node: $node, ip: $ip,
		  identity: "spiffe://\($td)/ns/default/sa/\($sa)",
		  meshed: ($node == "node-1")}'
done | jq -sc 'sort_by(.name)')
# Expected backends per service: the pods whose label the selector names.
expect_svc=$(for s in "${NM_SERVICE_ORDER[@]}"; do
	read -r vip port tport sel <<<"${NM_SERVICES[$s]}"
	n=0
	for p in "${NM_POD_ORDER[@]}"; do
		nm_pod_info "$p"
		[[ $NM_P_LABEL == "$sel" ]] && n=$((n + 1))
	done
	jq -nc --arg s "$s" --arg vp "$vip:$port" --argjson tp "$tport" --argjson n "$n" \
		'{name: $s, vip_port: $vp, target_port: $tp, backends: $n}'
done | jq -sc 'sort_by(.name)')

# --- workloads ------------------------------------------------------------------------
wl=$("$cli" workloads --instance "$inst1" --json 2>"$NM_STATE/cli.err")
bpf_wl_ids=$(bpftool map dump pinned "$pins1/nm_workloads" -j | jq -c '[.[].formatted.value.workload_id] | sort')
jqok cli27-workloads-json '
	.source == "runstate" and (.generation | type) == "number" and
	([.workloads[] | {name, sa: .service_account, node, ip: .addresses[0],
	  identity, meshed}] | sort_by(.name)) == $want and
	all(.workloads[]; .namespace == "default" and .mode == "PERMISSIVE" and
	    (.workload_id | type) == "number" and (.identity_id | type) == "number") and
	([.workloads[] | select(.meshed) | .workload_id] | sort) == $bpf' "$wl" \
	--argjson want "$expect_wl" --argjson bpf "$bpf_wl_ids"

"$cli" workloads --instance "$inst1" >"$NM_STATE/wl.txt" 2>&1
rows_ok=1
for p in "${NM_POD_ORDER[@]}"; do
	nm_pod_info "$p"
	m=no
	((NM_P_NODE == 1)) && m=yes
	grep -Eq "^$p +default +spiffe://$NM_TRUST_DOMAIN/ns/default/sa/$NM_P_SA +$NM_P_IP +node-$NM_P_NODE +PERMISSIVE +$m +[0-9]+$" \
		"$NM_STATE/wl.txt" || rows_ok=0
done
ok cli27-workloads-human "((rows_ok)) && grep -Eq '^NAME +NAMESPACE +IDENTITY +ADDRESSES +NODE +MODE +MESHED +ID$' '$NM_STATE/wl.txt' && aligned '$NM_STATE/wl.txt' >/dev/null" \
	"$(cat "$NM_STATE/wl.txt")"

# --- services ---------------------------------------------------------------------------
svc=$("$cli" services --instance "$inst1" --json)
bpf_svc=$(bpftool map dump pinned "$pins1/nm_services" -j | jq -c '[.[].formatted.value | {service_id, backend_count}]')
jqok cli27-services-json '
	.source == "runstate" and
	([.services[] | {name, vip_port, target_port, backends}] | sort_by(.name)) == $want and
	all(.services[]; .namespace == "default" and .lb == "random" and .locality == "failover") and
	all(.services[]; . as $s | any($bpf[]; .service_id == $s.service_id and .backend_count == $s.backends))' \
	"$svc" --argjson want "$expect_svc" --argjson bpf "$bpf_svc"
"$cli" services --instance "$inst1" >"$NM_STATE/svc.txt" 2>&1
rows_ok=1
for s in "${NM_SERVICE_ORDER[@]}"; do
	read -r vip port tport sel <<<"${NM_SERVICES[$s]}"
	n=$(jq --arg s "$s" '.[] | select(.name == $s) | .backends' <<<"$expect_svc")
	grep -Eq "^$s +default +$vip:$port +$tport +$n +random +failover +[0-9]+$" "$NM_STATE/svc.txt" || rows_ok=0
done
ok cli27-services-human "((rows_ok)) && grep -Eq '^NAME +NAMESPACE +VIP:PORT +TARGET +BACKENDS +LB' '$NM_STATE/svc.txt' && aligned '$NM_STATE/svc.txt' >/dev/null" \
	"$(cat "$NM_STATE/svc.txt")"

# --- status -------------------------------------------------------------------------------
# bpftool's counts of every pinned map, as {name: count}; arrays excluded
# (the CLI reports null for them), like LRU maps they hold what they hold.
counts=$(for m in "$pins1"/nm_*; do
	t=$(bpftool map show pinned "$m" -j | jq -r .type)
	case $t in array | percpu_array | ringbuf | sk_storage | perf_event_array) continue ;; esac
	jq -nc --arg n "$(basename "$m")" --argjson c "$(bcount "$m")" '{($n): $c}'
done | jq -sc 'add')
gen=$(bpftool map dump pinned "$pins1/nm_agent_state" -j | jq '.[0].formatted.value.config_generation')
st=$("$cli" status --instance "$inst1" --json)
now=$(date +%s)
ver=$("$cli" version --json | jq -r .version)
# Every link_* pin (connect4, connect6, sockops, ingress...), not a fixed count.
nlinks=$(find "$pins1" -maxdepth 1 -name 'link_*' | wc -l)
jqok cli27-status-json '.instances[0] |
	.state == "running" and .version == $ver and .generation == $gen and
	.uptime_s >= 0 and .uptime_s <= $maxup and
	(.pins.links | length) == $nlinks and $nlinks >= 4 and
	all(.pins.links[]; (.prog_name | length) > 0 and (.prog_type | length) > 0 and .prog_id > 0) and
	([.pins.map_fill[] | select(.entries != null) | {(.name): .entries}] | add) == $counts and
	all(.pins.map_fill[]; .max_entries > 0 or .type == "sk_storage") and
	.source_address_mode == $sam and (.source_address_mode | type) == "string" and
	.events_transport == ($agent.events // $feat.choices.events // null)' "$st" \
	--argjson agent "$(cat "/run/nodemesh/$inst1/agent.json")" \
	--argjson feat "$(cat "/run/nodemesh/$inst1/features.json")" \
	--arg ver "$ver" --argjson gen "$gen" --argjson maxup "$((now - t_start + 60))" \
	--argjson sam "$(jq '.features.source_address' "/run/nodemesh/$inst1/agent.json")" \
	--argjson counts "$counts" --argjson nlinks "$nlinks"
"$cli" status --instance "$inst1" >"$NM_STATE/status.txt" 2>&1
wlc=$(jq '.nm_workloads' <<<"$counts")
ok cli27-status-human "grep -q '^instance $inst1: running (pid $NM_AGENT_PID_1)' '$NM_STATE/status.txt' &&
	grep -Eq '^  agent $ver, generation $gen, uptime [0-9]+s?' '$NM_STATE/status.txt' &&
	grep -q '^  programs attached:' '$NM_STATE/status.txt' &&
	grep -Eq '^    LINK +PROGRAM +PROG-TYPE +ATTACH +PROG-ID +CGROUP-ID$' '$NM_STATE/status.txt' &&
	grep -q '^  map fill:' '$NM_STATE/status.txt' &&
	grep -Eq '^    nm_workloads +hash +$wlc +[0-9]+ +(<0\.1|[0-9.]+)% +[0-9]+$' '$NM_STATE/status.txt'" \
	"$(cat "$NM_STATE/status.txt")"

# Failed map updates: status' UPDATE-ERRORS per map (looked up by map id)
# and maps dump nm_map_errors (walked) agree, and their total is bpftool's
# sum over every CPU and index of nm_map_errors.
bt=$(bpftool map dump pinned "$pins1/nm_map_errors" -j | jq '[.[].formatted.values[].value] | add')
de=$("$cli" maps dump nm_map_errors --instance "$inst1" --json)
st=$("$cli" status --instance "$inst1" --json)
jqok cli27-status-update-errors '.instances[0].pins.map_fill as $f |
	([$f[] | select(.update_errors != null) | .update_errors] | add) == $bt and
	all($de.records[] | select(.key.map != null and .value > 0);
	    . as $r | any($f[]; .name == $r.key.map and .update_errors == $r.value)) and
	(($de.records | map(.value) | add) == $bt) and
	($f[] | select(.name == "nm_workloads") | .update_errors | type) == "number"' "$st" \
	--argjson bt "$bt" --argjson de "$de"

# --- maps ------------------------------------------------------------------------------------
ml=$("$cli" maps --instance "$inst1" --json)
jqok cli27-maps-list '([.[] | select(.entries != null) | {(.name): .entries}] | add) == $counts' \
	"$ml" --argjson counts "$counts"
"$cli" maps --instance "$inst1" >"$NM_STATE/maps.txt"
ok cli27-maps-list-human "grep -Eq '^MAP +TYPE +ENTRIES +MAX$' '$NM_STATE/maps.txt' && grep -Eq '^nm_workloads +hash +$wlc ' '$NM_STATE/maps.txt' && aligned '$NM_STATE/maps.txt' >/dev/null" \
	"$(cat "$NM_STATE/maps.txt")"

d=$("$cli" maps dump nm_workloads --instance "$inst1" --json)
local_names=$(jq -c '[.[] | select(.meshed) | "default/\(.name)"] | sort' <<<"$expect_wl")
jqok cli27-maps-dump-workloads '.names == "runstate" and .decoded and
	.entries == ($bpf | length) and ([.records[].value.workload] | sort) == $names and
	([.records[].key] | sort) == ([$bpf[].formatted.key] | sort) and
	all(.records[]; .value.flags == "MESHED" and (.value.identity | startswith("spiffe://")))' \
	"$d" --argjson bpf "$(bpftool map dump pinned "$pins1/nm_workloads" -j)" --argjson names "$local_names"
d2=$("$cli" maps dump workloads --instance "$inst1" --json)
jqok cli27-maps-dump-short-name '.map == "nm_workloads" and .entries == $n' "$d2" --argjson n "$wlc"
d=$("$cli" maps dump nm_services --instance "$inst1" --json)
jqok cli27-maps-dump-services '.entries == ($want | length) and
	([.records[] | {name: (.value.service | sub("^default/"; "")), vip_port: .key.vip_port,
	  backends: .value.backend_count}] | sort_by(.name)) == ($want | map({name, vip_port, backends}))' \
	"$d" --argjson want "$expect_svc"
d=$("$cli" maps dump nm_endpoints --instance "$inst1" --json)
ep_want=$(jq -c '[.[] | {ip, node, w: "default/\(.name)"}] | sort_by(.ip)' <<<"$expect_wl")
jqok cli27-maps-dump-endpoints '[.records[] | {ip: .key, node: .value.node, w: .value.workload}] | sort_by(.ip) == $want' \
	"$d" --argjson want "$ep_want"
abi=$("$cli" version --json | jq .abi)
d=$("$cli" maps dump nm_agent_state --instance "$inst1" --json)
jqok cli27-maps-dump-agent-state '.entries == 1 and .records[0].value.abi_version == $abi and
	.records[0].value.config_generation == $gen and .records[0].value.outbound_port == $port' \
	"$d" --argjson abi "$abi" --argjson gen "$gen" --argjson port "$NM_OUTBOUND_PORT"
# A connection of a meshed pod counts in nm_wl_stats (per CPU): the CLI's
# sum equals bpftool's sum over the CPUs.
nm_pod_exec client "$NM_PEER" send --to "$(jq -r '.[] | select(.name == "echo") | .vip_port' <<<"$expect_svc")" \
	--bytes 1000 >/dev/null 2>&1
d=$("$cli" maps dump nm_wl_stats --instance "$inst1" --json)
bsum=$(bpftool map dump pinned "$pins1/nm_wl_stats" -j |
	jq -c '[.[] | {k: .formatted.key, c: ([.formatted.values[].value.connects] | add)}] | sort_by(.k)')
jqok cli27-maps-dump-wl-stats '.decoded and .entries >= 1 and
	([.records[] | {k: .key.workload_id, c: .value.connects}] | sort_by(.k)) == $b and
	any(.records[]; .value.connects >= 1 and .key.workload == "default/client")' \
	"$d" --argjson b "$bsum"
"$cli" maps dump nm_workloads --instance "$inst1" >"$NM_STATE/dump.txt"
ok cli27-maps-dump-human "grep -Eq '^map nm_workloads: hash, $wlc of [0-9]+ entries' '$NM_STATE/dump.txt' &&
	(( \$(grep -c '^key [0-9]* value {.*\"workload\":\"default/' '$NM_STATE/dump.txt') == wlc ))" \
	"$(cat "$NM_STATE/dump.txt")"

# --- certs ------------------------------------------------------------------------------------
want_certs=$(for sa in "${NM_SERVICE_ACCOUNTS[@]}"; do
	f=$NM_STATE/certs/default/$sa/cert.pem
	serial=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2)
	na=$(date -d "$(openssl x509 -in "$f" -noout -enddate | cut -d= -f2)" +%s)
	nb=$(date -d "$(openssl x509 -in "$f" -noout -startdate | cut -d= -f2)" +%s)
	jq -nc --arg id "spiffe://$NM_TRUST_DOMAIN/ns/default/sa/$sa" --arg s "$serial" \
		--argjson na "$na" --argjson nb "$nb" --arg f "$f" \
		'{identity: $id, serial: $s, not_after: $na, not_before: $nb, file: $f}'
done | jq -sc 'sort_by(.identity)')
c=$("$cli" certs --instance "$inst1" --json)
now=$(date +%s)
jqok cli27-certs-json '([.certificates[] | {identity, serial: (.serial | ascii_upcase),
	not_after, not_before, file}] | sort_by(.identity)) == $want and
	all(.certificates[]; (.seconds_to_expiry - (.not_after - $now) | fabs) <= 60 and
	    .seconds_to_expiry > 0)' "$c" --argjson want "$want_certs" --argjson now "$now"
"$cli" certs --instance "$inst1" >"$NM_STATE/certs.txt"
ok cli27-certs-human "grep -Eq '^IDENTITY +SERIAL +NOT-BEFORE +NOT-AFTER +EXPIRES-IN +FILE$' '$NM_STATE/certs.txt' &&
	grep -Eq '^spiffe://$NM_TRUST_DOMAIN/ns/default/sa/client +[0-9A-Fa-f]+ +[0-9T:-]+Z +[0-9T:-]+Z +[0-9]+s +/' '$NM_STATE/certs.txt' &&
	aligned '$NM_STATE/certs.txt' >/dev/null" "$(cat "$NM_STATE/certs.txt")"

# A certificate reissued in place: the agent rotates it and rewrites its
# run state, so certs shows the new serial (polled: rotation is debounced).
"$cli" ca issue --dir "$NM_STATE/ca" --out "$NM_STATE/certs" --ns default --sa client >/dev/null 2>&1
new_serial=$(openssl x509 -in "$NM_STATE/certs/default/client/cert.pem" -noout -serial | cut -d= -f2)
old_serial=$(jq -r '.[] | select(.identity | endswith("/sa/client")) | .serial' <<<"$want_certs")
seen=""
for _ in $(seq 100); do
	seen=$("$cli" certs --instance "$inst1" --json |
		jq -r '.certificates[] | select(.identity | endswith("/sa/client")) | .serial | ascii_upcase')
	[[ $seen == "$new_serial" ]] && break
	sleep 0.1
done
ok cli27-certs-rotated "[[ $new_serial != $old_serial && $seen == $new_serial ]]" \
	"old $old_serial new $new_serial certs shows $seen"

# --- version -----------------------------------------------------------------------------------
v=$("$cli" version --json)
jqok cli27-version-json '.version == $ver and .abi == $abi and
	any(.agents[]; .instance == $i and .pid == $pid and .version == $ver)' "$v" \
	--arg ver "$ver" --argjson abi "$abi" --arg i "$inst1" --argjson pid "$NM_AGENT_PID_1"
ok cli27-version-human "\"$cli\" version | grep -q '^agent $inst1: nodemeshd $ver (pid $NM_AGENT_PID_1)'" \
	"$("$cli" version)"

# --- flows: the agent's admin API -----------------------------------------------------
# A flow of a known size from client (node 1) to the echo service (node 2):
# node 1's /flows has its record, so has `flows`, with the names and bytes.
# The admin API listens on the node's loopback: the CLI runs there.
echo_vp=$(jq -r '.[] | select(.name == "echo") | .vip_port' <<<"$expect_svc")
nbytes=$((3000 + RANDOM % 1000))
fol=$NM_STATE/flows-follow.out
nm_node_exec 1 timeout 20 "$cli" flows --follow --workload default/client --instance "$inst1" --json >"$fol" 2>&1 &
fol_pid=$!
sleep 0.5
nm_pod_exec client "$NM_PEER" send --to "$echo_vp" --bytes "$nbytes" >/dev/null 2>&1
f=""
for _ in $(seq 100); do
	f=$(nm_node_exec 1 "$cli" flows --instance "$inst1" --json 2>&1)
	if jq -e --argjson n "$nbytes" 'any(.recent[]; .bytes_up == $n)' <<<"$f" >/dev/null 2>&1 &&
		grep -q "\"bytes_up\":$nbytes" "$fol"; then
		break
	fi
	sleep 0.1
done
kill "$fol_pid" 2>/dev/null
wait "$fol_pid" 2>/dev/null
jqok cli27-flows-admin-json '(.source | endswith(":15000/flows")) and (.active | type) == "array" and
	(.recent | type) == "array" and ([.recent[] | select(.bytes_up == $n)] | length) == 1 and
	(.recent[] | select(.bytes_up == $n) |
	 .src.workload == "client" and .src.namespace == "default" and
	 .src.principal == "spiffe://\($td)/ns/default/sa/client" and
	 .dst.workload == "echo" and .dst.principal == "spiffe://\($td)/ns/default/sa/echo" and
	 .path == "mtls" and .bytes_down == $n and .verdict == "allow")' "$f" \
	--argjson n "$nbytes" --arg td "$NM_TRUST_DOMAIN"
jqok cli27-flows-admin-follow 'length == 1 and .[0].bytes_up == $n and .[0].src.workload == "client"' \
	"$(jq -sc . "$fol" 2>/dev/null || cat "$fol")" --argjson n "$nbytes"
nm_node_exec 1 "$cli" flows --instance "$inst1" --workload default/client >"$NM_STATE/flows.txt" 2>&1
ok cli27-flows-admin-human "grep -Eq '^STATE +SOURCE +DESTINATION +SRC-IDENTITY +DST-IDENTITY +SERVICE +PATH +UP +DOWN +VERDICT$' '$NM_STATE/flows.txt' &&
	grep -Eq '^closed +default/client +default/echo +spiffe://[^ ]+/sa/client +spiffe://[^ ]+/sa/echo +[^ ]+ +mtls +$nbytes +$nbytes +allow$' '$NM_STATE/flows.txt' &&
	aligned '$NM_STATE/flows.txt' >/dev/null" "$(cat "$NM_STATE/flows.txt")"
f=$(nm_node_exec 1 "$cli" flows --instance "$inst1" --workload default/local-echo --json 2>&1)
jqok cli27-flows-admin-workload '.workload == "default/local-echo" and
	([.recent[], .active[]] | all(.src.workload == "local-echo" or .dst.workload == "local-echo")) and
	([.recent[] | select(.bytes_up == $n)] | length) == 0' "$f" --argjson n "$nbytes"

# --- flows: address from --admin and the run state, the answer's shapes ----------------
# A loopback HTTP server answering /flows with the documented document
# (records from node 1's real answer), ?workload= filtered, ?follow=1 as JSON
# lines. It records the query strings it was asked.
fx_dir=$NM_STATE/flows-fixture
mkdir -p "$fx_dir"
rec1=$(jq -c --argjson n "$nbytes" '[.recent[] | select(.bytes_up == $n)][0]' <<<"$(nm_node_exec 1 "$cli" flows --instance "$inst1" --json)")
[[ -n $rec1 && $rec1 != null ]] || rec1='{"src":{"workload":"client"},"dst":{"workload":"echo"},"bytes_up":1}'
jq -nc --argjson r "$rec1" '{active: [], active_total: 0, truncated: false,
	recent: [$r, ($r | .src.workload = "client-2" | .bytes_up = 5)]}' >"$fx_dir/flows.json"
cat >"$fx_dir/server.py" <<'PYEOF'
import http.server, json, sys, urllib.parse
doc = json.load(open(sys.argv[2]))
log = open(sys.argv[3], "a")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *a): pass
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        log.write(u.path + "?" + u.query + "\n"); log.flush()
        if u.path != "/flows":
            self.send_response(404); self.end_headers(); return
        recs = doc["recent"]
        if "workload" in q:
            w = q["workload"][0].split("/")[-1]
            recs = [f for f in recs if w in (f["src"]["workload"], f["dst"]["workload"])]
        self.send_response(200)
        if q.get("follow") == ["1"]:
            self.send_header("Content-Type", "application/x-ndjson"); self.end_headers()
            for f in recs:
                self.wfile.write((json.dumps(f) + "\n").encode()); self.wfile.flush()
            return
        body = json.dumps(dict(doc, recent=recs)).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PYEOF
: >"$fx_dir/queries"
python3 "$fx_dir/server.py" "$fx_dir/port" "$fx_dir/flows.json" "$fx_dir/queries" &
fx_pid=$!
trap 'kill $fx_pid 2>/dev/null; nm_cluster_cleanup' EXIT
for _ in $(seq 100); do [[ -s $fx_dir/port ]] && break; sleep 0.05; done
fx_port=$(cat "$fx_dir/port" 2>/dev/null)
f=$("$cli" flows --admin "127.0.0.1:$fx_port" --json)
jqok cli27-flows-fixture-json '.recent == $fx.recent and .active == [] and .source == "http://127.0.0.1:\($p)/flows"' \
	"$f" --argjson fx "$(cat "$fx_dir/flows.json")" --arg p "$fx_port"
f=$("$cli" flows --admin "127.0.0.1:$fx_port" --workload default/client-2 --json)
jqok cli27-flows-fixture-workload '(.recent | length) == 1 and .recent[0].src.workload == "client-2"' "$f"
ok cli27-flows-fixture-query "grep -qx '/flows?workload=default%2Fclient-2' '$fx_dir/queries'" "$(cat "$fx_dir/queries")"
f=$("$cli" flows --follow --admin "127.0.0.1:$fx_port" --json)
ok cli27-flows-fixture-follow "[[ \$(jq -s length <<<\"\$f\") == 2 ]] && grep -qx '/flows?follow=1' '$fx_dir/queries'" \
	"$f / $(cat "$fx_dir/queries")"
# The admin address comes from the run state when --admin is not given.
fx_run=$NM_STATE/fx-run
mkdir -p "$fx_run/fx"
jq --argjson p "$fx_port" '.admin = {address: "127.0.0.1", port: $p}' "/run/nodemesh/$inst1/agent.json" >"$fx_run/fx/agent.json"
f=$("$cli" flows --run-dir "$fx_run" --instance fx --json)
jqok cli27-flows-runstate-address '(.recent | length) == 2 and .source == "http://127.0.0.1:\($p)/flows"' "$f" \
	--arg p "$fx_port"
kill "$fx_pid" 2>/dev/null
wait "$fx_pid" 2>/dev/null
"$cli" flows --admin "127.0.0.1:$fx_port" --json >"$NM_STATE/flows-down.json" 2>/dev/null
rc=$?
ok cli27-flows-unreachable "((rc == 1)) && jq -e '.error | test(\"flows\")' '$NM_STATE/flows-down.json' >/dev/null" \
	"rc=$rc $(cat "$NM_STATE/flows-down.json")"

# --- usage errors and help --------------------------------------------------------------------
# usage NAME CMD...: exit 2, a "Usage:" line on stderr, nothing on stdout.
usage() {
	local name=$1 out rc
	shift
	out=$("$@" 2>"$NM_STATE/usage.err")
	rc=$?
	ok "cli27-usage-$name" "((rc == 2)) && grep -q '^Usage: nodemesh' '$NM_STATE/usage.err' && [[ -z \$out ]]" \
		"rc=$rc stdout=[$out] stderr=[$(head -c 300 "$NM_STATE/usage.err")]"
}
usage unknown-command "$cli" frobnicate
usage no-command "$cli"
for c in status workloads services flows maps certs version cleanup; do
	usage "$c-bad-flag" "$cli" "$c" --frobnicate
done
usage workloads-extra "$cli" workloads extra
usage maps-unknown-sub "$cli" maps frobnicate
usage maps-dump-no-name "$cli" maps dump
usage maps-dump-two-names "$cli" maps dump nm_workloads nm_services
usage flows-workload-no-value "$cli" flows --workload
usage services-bad-instance "$cli" services --instance ../x
usage ca-unknown-sub "$cli" ca frobnicate
usage policy-unknown-sub "$cli" policy frobnicate
# with --json the error is also a JSON document on stdout
out=$("$cli" --json workloads --frobnicate 2>/dev/null)
rc=$?
ok cli27-usage-json "((rc == 2)) && jq -e '.error | length > 0' <<<\"\$out\" >/dev/null" "rc=$rc out=$out"

help() {
	local name=$1 want=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	ok "cli27-help-$name" "((rc == 0)) && grep -q '^Usage: nodemesh' <<<\"\$out\" && grep -q 'nodemesh $want' <<<\"\$out\"" \
		"rc=$rc out=$(head -c 300 <<<"$out")"
}
help top "" "$cli" --help
for c in status workloads services flows maps certs version cleanup; do
	help "$c" "$c" "$cli" "$c" --help
	help "$c-short" "$c" "$cli" "$c" -h
done
help maps-dump "maps" "$cli" maps dump --help
help ca "ca" "$cli" ca --help
help ca-init "ca init" "$cli" ca init --help
help ca-issue "ca issue" "$cli" ca issue --help
help policy "policy" "$cli" policy --help
help policy-check "policy check" "$cli" policy check --help
help policy-list "policy list" "$cli" policy list --help

# --- inbound modes after a reload ---------------------------------------------------------
# local-echo (node 1) and echo (node 2) become STRICT in the cluster file;
# node 1's agent reloads (new generation): workloads shows both STRICT,
# local-echo's nm_workloads entry carries the STRICT flag, the others stay
# PERMISSIVE; the run state's generation is the one the maps hold.
gen_before=$(jq .generation "/run/nodemesh/$inst1/agent.json")
jq '(.workloads[] | select(.name == "local-echo" or .name == "echo") | .mode) = "STRICT"' \
	"$NM_CLUSTER_JSON" >"$NM_CLUSTER_JSON.tmp" && mv "$NM_CLUSTER_JSON.tmp" "$NM_CLUSTER_JSON"
kill -HUP "$NM_AGENT_PID_1"
for _ in $(seq 200); do
	(($(jq .generation "/run/nodemesh/$inst1/agent.json" 2>/dev/null || echo 0) > gen_before)) && break
	sleep 0.05
done
wl=$("$cli" workloads --instance "$inst1" --json)
gen=$(bpftool map dump pinned "$pins1/nm_agent_state" -j | jq '.[0].formatted.value.config_generation')
strict_want=$(jq -c '[.[] | {name, mode: (if .name == "local-echo" or .name == "echo" then "STRICT" else "PERMISSIVE" end)}] | sort_by(.name)' <<<"$expect_wl")
jqok cli27-modes-workloads '.generation > $before and .generation == $gen and
	([.workloads[] | {name, mode}] | sort_by(.name)) == $want and
	(.workloads[] | select(.name == "local-echo") | .flags == "MESHED|STRICT" and .meshed) and
	(.workloads[] | select(.name == "client") | .flags == "MESHED")' "$wl" \
	--argjson before "$gen_before" --argjson gen "$gen" --argjson want "$strict_want"
"$cli" workloads --instance "$inst1" >"$NM_STATE/wl-strict.txt"
ok cli27-modes-human "grep -Eq '^local-echo +default +[^ ]+ +[0-9.]+ +node-1 +STRICT +yes ' '$NM_STATE/wl-strict.txt' &&
	grep -Eq '^echo +default +[^ ]+ +[0-9.]+ +node-2 +STRICT +no ' '$NM_STATE/wl-strict.txt' &&
	grep -Eq '^client +default +[^ ]+ +[0-9.]+ +node-1 +PERMISSIVE +yes ' '$NM_STATE/wl-strict.txt'" \
	"$(cat "$NM_STATE/wl-strict.txt")"
d=$("$cli" maps dump nm_workloads --instance "$inst1" --json)
jqok cli27-modes-maps-dump '(.records[] | select(.value.workload == "default/local-echo") | .value.flags) == "MESHED|STRICT"' "$d"
# Strict inbound's maps decode too: the node's own address is a prober.
if [[ -e $pins1/nm_probers ]]; then
	d=$("$cli" maps dump nm_probers --instance "$inst1" --json)
	jqok cli27-maps-dump-probers '.decoded and any(.records[]; .key == $node and .value == 1) and
		.entries == ($bpf | length)' "$d" --arg node "${NM_NODE_ADDR[1]}" \
		--argjson bpf "$(bpftool map dump pinned "$pins1/nm_probers" -j)"
	d=$("$cli" maps dump nm_strict_drops --instance "$inst1" --json)
	jqok cli27-maps-dump-strict-drops '.decoded and .entries == ($bpf | length) and
		all(.records[]; (.value.drops | type) == "number" and (.key.workload | type) == "string")' "$d" \
		--argjson bpf "$(bpftool map dump pinned "$pins1/nm_strict_drops" -j)"
else
	nm_fail cli27-maps-dump-probers "$pins1/nm_probers is not pinned: $(ls "$pins1" | tr '\n' ' ')"
fi

# --- the agent down ------------------------------------------------------------------------
nm_agent_stop 2 5
left=$(ls "$pins2" 2>/dev/null | tr '\n' ' ')
ok cli27-agent-down-pins "[[ ! -e /run/nodemesh/$inst2/agent.json ]] && [[ -e $pins2/nm_workloads && -e $pins2/nm_services ]]" \
	"agent.json: $(ls /run/nodemesh/"$inst2" 2>&1) pins: $left"
bpf2=$(bpftool map dump pinned "$pins2/nm_workloads" -j)
wl=$("$cli" workloads --instance "$inst2" --json)
jqok cli27-agent-down-workloads '.source == "pins" and (.note | test("IDs only")) and
	(.workloads | length) == ($bpf | length) and (.workloads | length) > 0 and
	all(.workloads[]; .name == null and .meshed) and
	([.workloads[].workload_id] | sort) == ([$bpf[].formatted.value.workload_id] | sort) and
	([.workloads[].addresses[0]] | sort) == $ips' "$wl" --argjson bpf "$bpf2" \
	--argjson ips "$(jq -c '[.[] | select(.node == "node-2") | .ip] | sort' <<<"$expect_wl")"
"$cli" workloads --instance "$inst2" >"$NM_STATE/wl-down.txt"
ok cli27-agent-down-workloads-human "grep -q '^# no run state' '$NM_STATE/wl-down.txt' && grep -Eq '^- +- +id:[0-9]+ +198\.18\.2\.' '$NM_STATE/wl-down.txt'" \
	"$(cat "$NM_STATE/wl-down.txt")"
d=$("$cli" maps dump nm_workloads --instance "$inst2" --json)
jqok cli27-agent-down-maps-dump '.names == "none" and (.note | test("not running")) and
	.entries == ($bpf | length) and all(.records[]; .value.workload == null and .value.workload_id > 0)' \
	"$d" --argjson bpf "$bpf2"
s=$("$cli" services --instance "$inst2" --json)
jqok cli27-agent-down-services '.source == "pins" and (.services | length) == ($want | length) and
	([.services[].vip_port] | sort) == ([$want[].vip_port] | sort)' "$s" --argjson want "$expect_svc"
"$cli" certs --instance "$inst2" >/dev/null 2>"$NM_STATE/certs-down.err"
rc=$?
ok cli27-agent-down-certs "((rc == 1)) && grep -q 'not running' '$NM_STATE/certs-down.err'" "rc=$rc $(cat "$NM_STATE/certs-down.err")"

# SIGKILL: the run state stays behind, the pins too; names still resolve.
{
	kill -KILL "$NM_AGENT_PID_1"
	wait "$NM_AGENT_PID_1"
} 2>/dev/null
d=$("$cli" maps dump nm_workloads --instance "$inst1" --json)
st=$("$cli" status --instance "$inst1" --json)
ok cli27-agent-killed "jq -e '.names == \"runstate\" and .entries == $wlc and ([.records[].value.workload] | sort) == $local_names' <<<\"\$d\" >/dev/null &&
	jq -e '.instances[0].state == \"stopped\" and .instances[0].uptime_s == null and (.instances[0].pins.links | length) == $nlinks' <<<\"\$st\" >/dev/null" \
	"dump: $(head -c 600 <<<"$d") status: $(head -c 600 <<<"$st")"

((NM_FAILS == 0))
