#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_26_telemetry - the agent's telemetry (docs/telemetry.md) on real
# flows of known sizes: client (node-1) -> echo service (backend on node-2,
# mTLS) and client -> echo-local service (backend on node-1, same node).
# The servers here read everything the client sends and answer a different
# number of bytes, so the direction of each counter is checked too.
#
#   metrics-*        :15020/metrics read with prometheus_client's parser
#                    (not a regex): from node-1 as reporter=source and from
#                    node-2 as reporter=destination exactly those bytes
#                    (received = client -> server, sent = back, as ztunnel),
#                    one opened and one closed connection, the workloads,
#                    principals, apps, service and mutual_tls; the same-node
#                    flow from node-1 as both reporters, mutual_tls too
#                    (both ends attested on the node; path "local")
#   promtool-*       `promtool check metrics` passes on the real output
#   flowlog-*        the flow log (stdout, mode full) holds one record per
#                    flow with those bytes, identities, path and verdict
#   admin-*          /config_dump, /stats (text and ?format=json), /flows
#                    (?workload= filter), /logging (GET, POST changes the
#                    level, a bad level is refused), /flows?follow=1 streams
#                    a record of a flow made after it connected
#   admin-follow-idle-cpu  an idle /flows?follow=1 stream costs no CPU
#   metrics-admin-ports-exclusive  no SO_REUSEPORT listener can share them
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

PY=/usr/bin/python3 # Debian's, where python3-prometheus-client lives
TD=$NM_TRUST_DOMAIN
N1=300017 K1=70001   # cross-node: client sends N1, server answers K1
N2=123457 K2=4321    # same-node

nm_require_bins test_26
for b in promtool curl "$PY"; do
	command -v "$b" >/dev/null || { nm_fail test_26 "$b missing (tools/install-deps.sh)"; exit 1; }
done
"$PY" -c 'import prometheus_client.parser' 2>/dev/null ||
	{ nm_fail test_26 "python3-prometheus-client missing (tools/install-deps.sh)"; exit 1; }
nm_cluster_init
nm_cluster_create
nm_cluster_certs

# Telemetry on: the flow log to stdout (the agent log), every flow.
"$PY" - "$NM_STATE/cluster.json" <<'EOF' || nm_die "cannot edit cluster.json"
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["telemetry"] = {"metricsPort": 15020, "adminPort": 15000,
                  "flowLog": {"mode": "full", "file": "-"}}
json.dump(c, open(p, "w"), indent=1)
EOF

# The asymmetric server: reads until the client half-closes, then answers
# with the number of bytes given and closes.
SERVER='import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
reply = int(sys.argv[1])
while True:
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    c.sendall(b"r" * reply); c.close()
    print("served", n, flush=True)'
# The client: sends N, half-closes, reads to the end; prints what it got.
CLIENT='import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(b"q" * int(sys.argv[3])); s.shutdown(socket.SHUT_WR)
n = 0
while True:
    b = s.recv(65536)
    if not b: break
    n += len(b)
print(n)'

setup_ok=1
nm_agent_start 1 && nm_agent_start 2 || setup_ok=0
if ((setup_ok)); then
	nm_pod_spawn echo srv-echo "$PY" -c "$SERVER" "$K1"
	nm_pod_spawn local-echo srv-local "$PY" -c "$SERVER" "$K2"
	nm_pod_info echo
	nm_wait_listen "$NM_P_NS" 8080 10 || setup_ok=0
	nm_pod_info local-echo
	nm_wait_listen "$NM_P_NS" 8080 10 || setup_ok=0
fi
if ((!setup_ok)); then
	nm_dump_logs
	nm_fail test_26 "cluster setup failed"
	exit 1
fi
log1=$(nm_agent_log 1)
log2=$(nm_agent_log 2)

got1=$(nm_pod_exec client "$PY" -c "$CLIENT" 198.19.0.10 80 "$N1")
nm_check flow-cross-node "client got '$got1' bytes, expected $K1" test "$got1" == "$K1"
got2=$(nm_pod_exec client "$PY" -c "$CLIENT" 198.19.0.11 80 "$N2")
nm_check flow-same-node "client got '$got2' bytes, expected $K2" test "$got2" == "$K2"

# Records are written when the flows close; metrics are published every
# 250 ms. Poll both nodes in one loop until each shows its flows.
m1=$NM_STATE/metrics-1.txt m2=$NM_STATE/metrics-2.txt
for ((i = 0; i < 100; i++)); do
	nm_node_exec 1 curl -sf "http://${NM_NODE_ADDR[1]}:15020/metrics" >"$m1" 2>/dev/null
	nm_node_exec 2 curl -sf "http://${NM_NODE_ADDR[2]}:15020/stats/prometheus" >"$m2" 2>/dev/null
	if grep -q 'istio_tcp_connections_closed_total{reporter="destination".*destination_workload="local-echo"' "$m1" &&
		grep -q 'istio_tcp_connections_closed_total{reporter="destination"' "$m2" &&
		(($(grep -c '^{' "$log1") >= 2)) && (($(grep -c '^{' "$log2") >= 1)); then
		break
	fi
	sleep 0.1
done

# NM_TEL_SAMPLES=DIR keeps what was read (the issue note's samples).
if [[ -n ${NM_TEL_SAMPLES:-} ]]; then
	mkdir -p "$NM_TEL_SAMPLES" && cp "$m1" "$m2" "$NM_TEL_SAMPLES/" &&
		grep -h '^{' "$log1" "$log2" >"$NM_TEL_SAMPLES/flows.jsonl"
fi

# --- metrics, through a real parser ---------------------------------------
out=$("$PY" - "$m1" "$m2" "$N1" "$K1" "$N2" "$K2" "$TD" <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families

m1, m2 = (open(p).read() for p in sys.argv[1:3])
n1, k1, n2, k2 = (int(x) for x in sys.argv[3:7])
td = sys.argv[7]
fails = 0

def samples(text):
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append(s)
    return out

def check(name, ok, why):
    global fails
    if ok:
        print("PASS " + name)
    else:
        fails += 1
        print("FAIL %s: %s" % (name, why))

def series(ss, metric, **want):
    return [s for s in ss if s.name == metric and
            all(s.labels.get(k) == v for k, v in want.items())]

def one(ss, metric, **want):
    got = series(ss, metric, **want)
    return got[0].value if len(got) == 1 else ("%d series" % len(got))

s1, s2 = samples(m1), samples(m2)
cli = "spiffe://%s/ns/default/sa/client" % td
echo = "spiffe://%s/ns/default/sa/echo" % td
cross = dict(source_workload="client", source_workload_namespace="default",
             source_principal=cli, source_app="client", source_version="latest",
             destination_workload="echo", destination_workload_namespace="default",
             destination_principal=echo, destination_app="echo",
             destination_service="echo.default.svc.%s" % td,
             destination_service_name="echo", destination_service_namespace="default",
             source_cluster="Kubernetes", destination_cluster="Kubernetes",
             request_protocol="tcp", response_flags="-",
             connection_security_policy="mutual_tls")
for node, ss, rep in (("node1", s1, "source"), ("node2", s2, "destination")):
    lab = dict(cross, reporter=rep)
    for metric, want in (("istio_tcp_received_bytes_total", n1),
                         ("istio_tcp_sent_bytes_total", k1),
                         ("istio_tcp_connections_opened_total", 1),
                         ("istio_tcp_connections_closed_total", 1)):
        got = one(ss, metric, **lab)
        check("metrics-cross-%s-%s-%s" % (node, rep, metric.split("_", 2)[2]),
              got == want, "%s{%s} = %s, expected %s" % (metric, lab, got, want))
    # The other reporter is not this agent's to report.
    other = "destination" if rep == "source" else "source"
    check("metrics-cross-%s-not-%s" % (node, other),
          not series(ss, "istio_tcp_received_bytes_total", reporter=other,
                     destination_workload="echo", source_workload="client"),
          "%s reports %s for the cross-node flow" % (node, other))

local = dict(cross, destination_workload="local-echo", destination_app="echo-local",
             destination_service="echo-local.default.svc.%s" % td,
             destination_service_name="echo-local",
             connection_security_policy="mutual_tls")
for rep in ("source", "destination"):
    lab = dict(local, reporter=rep)
    for metric, want in (("istio_tcp_received_bytes_total", n2),
                         ("istio_tcp_sent_bytes_total", k2),
                         ("istio_tcp_connections_opened_total", 1),
                         ("istio_tcp_connections_closed_total", 1)):
        got = one(s1, metric, **lab)
        check("metrics-same-node-%s-%s" % (rep, metric.split("_", 2)[2]),
              got == want, "%s{%s} = %s, expected %s" % (metric, lab, got, want))

def total(ss, metric, **want):
    return sum(s.value for s in series(ss, metric, **want))
check("metrics-tls-handshakes", total(s1, "nodemesh_tls_handshakes_total",
                                      direction="outbound", result="success") >= 1 and
      total(s2, "nodemesh_tls_handshakes_total", direction="inbound", result="success") >= 1,
      "no successful handshakes counted")
# Handshake CPU: some per side (a full P-256 handshake takes hundreds of
# microseconds), and less than the wall time a handshake could have taken.
for ss, d in ((s1, "outbound"), (s2, "inbound")):
    cpu = total(ss, "nodemesh_tls_handshake_cpu_seconds_total", direction=d)
    n = total(ss, "nodemesh_tls_handshakes_total", direction=d)
    check("metrics-tls-handshake-cpu-%s" % d, n >= 1 and 0 < cpu < 0.5 * n,
          "%s handshake CPU %s s over %s handshakes" % (d, cpu, n))
check("metrics-policy-decisions", total(s1, "nodemesh_policy_decisions_total", result="allow") >= 1 and
      total(s2, "nodemesh_policy_decisions_total", result="allow") >= 1,
      "no allow decisions counted")
exp = series(s1, "nodemesh_certificate_expiry_seconds", identity=cli)
check("metrics-cert-expiry", len(exp) == 1 and exp[0].value > 3600,
      "certificate expiry of %s: %s" % (cli, exp))
lat = series(s1, "nodemesh_connect_duration_seconds_count", direction="outbound")
check("metrics-connect-latency", len(lat) == 1 and lat[0].value >= 2,
      "connect latency count: %s" % lat)
rtt = series(s1, "nodemesh_tcp_srtt_seconds_count", direction="outbound", path="mtls")
check("metrics-srtt", len(rtt) == 1 and rtt[0].value >= 1, "srtt count: %s" % rtt)
act = series(s1, "nodemesh_flows_active", direction="outbound")
check("metrics-active-flows", len(act) == 1 and act[0].value == 0, "active: %s" % act)
lim = series(s1, "nodemesh_limit", limit="maxFlows")
check("metrics-limits", len(lim) == 1 and lim[0].value > 0, "maxFlows: %s" % lim)
cap = series(s1, "nodemesh_map_capacity", map="nm_workloads")
ent = series(s1, "nodemesh_map_entries", map="nm_workloads")
check("metrics-map-fill", len(cap) == 1 and cap[0].value > 0 and len(ent) == 1 and
      1 <= ent[0].value <= cap[0].value, "nm_workloads capacity %s entries %s" % (cap, ent))
err = series(s1, "nodemesh_map_update_errors_total", map="nm_workloads")
check("metrics-map-errors", sorted(e.labels["writer"] for e in err) == ["agent", "bpf"] and
      all(e.value == 0 for e in err), "nm_workloads update errors: %s" % err)
sys.exit(1 if fails else 0)
EOF
)
printf '%s\n' "$out"
NM_FAILS=$((NM_FAILS + $(grep -c '^FAIL' <<<"$out")))
[[ -n $out ]] || nm_fail metrics-parse "the parser printed nothing"

for n in 1 2; do
	f=$NM_STATE/metrics-$n.txt
	if msg=$(promtool check metrics <"$f" 2>&1) && [[ -s $f ]]; then
		nm_pass "promtool-node$n"
	else
		nm_fail "promtool-node$n" "promtool: ${msg:-empty output}"
	fi
done

# --- flow log ------------------------------------------------------------------
out=$("$PY" - "$log1" "$log2" "$N1" "$K1" "$N2" "$K2" "$TD" <<'EOF'
import json, sys
n1, k1, n2, k2 = (int(x) for x in sys.argv[3:7])
td = sys.argv[7]
fails = 0

def records(p):
    out = []
    for line in open(p, errors="replace"):
        if line.startswith("{"):
            out.append(json.loads(line))
    return out

def check(name, ok, why):
    global fails
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
    fails += 0 if ok else 1

cli = "spiffe://%s/ns/default/sa/client" % td
echo = "spiffe://%s/ns/default/sa/echo" % td
r1, r2 = records(sys.argv[1]), records(sys.argv[2])
def find(rs, dst):
    return [r for r in rs if r["dst"]["workload"] == dst]
for node, rs, dirn, reps in (("node1", r1, "outbound", ["source"]),
                             ("node2", r2, "inbound", ["destination"])):
    got = find(rs, "echo")
    r = got[0] if len(got) == 1 else None
    ok = r is not None and r["bytes_up"] == n1 and r["bytes_down"] == k1 and \
        r["path"] == "mtls" and r["security"] == "mutual_tls" and \
        r["src"]["workload"] == "client" and r["src"]["principal"] == cli and \
        r["dst"]["principal"] == echo and r["verdict"] == "allow" and \
        r["direction"] == dirn and r["reporters"] == reps and \
        r["service"] == "echo.default.svc.%s" % td and \
        isinstance(r["duration_ms"], (int, float)) and r["srtt_us"] is not None and \
        r["retransmits"] is not None and r["tls"] in ("full", "resumed")
    check("flowlog-cross-%s" % node, ok, "records: %s" % got)
got = find(r1, "local-echo")
r = got[0] if len(got) == 1 else None
ok = r is not None and r["bytes_up"] == n2 and r["bytes_down"] == k2 and \
    r["path"] == "local" and r["security"] == "mutual_tls" and r["tls"] == "none" and \
    r["reporters"] == ["source", "destination"] and r["src"]["principal"] == cli and \
    r["dst"]["principal"] == echo and r["verdict"] == "allow"
check("flowlog-same-node", ok, "records: %s" % got)
sys.exit(1 if fails else 0)
EOF
)
printf '%s\n' "$out"
NM_FAILS=$((NM_FAILS + $(grep -c '^FAIL' <<<"$out")))
[[ -n $out ]] || nm_fail flowlog-parse "the checker printed nothing"

# --- admin API (node-1, on 127.0.0.1 in its netns) -----------------------------
admin() { nm_node_exec 1 curl -s "$@"; }
dump=$(admin http://127.0.0.1:15000/config_dump)
out=$("$PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
w = {x["name"]: x for x in d["workloads"]}
ok = d["node"]["name"] == "node-1" and w["client"]["id"] > 0 and w["client"]["local"] and \
    w["client"]["identity"].endswith("/ns/default/sa/client") and \
    not w["echo"]["local"] and {"echo", "echo-local"} <= {s["name"] for s in d["services"]} and \
    all(s["id"] > 0 and s["hostname"] for s in d["services"]) and \
    len(d["nodes"]) == 2 and d["certificates"] and \
    all(c["secondsToExpiry"] > 0 and c["identity"].startswith("spiffe://") for c in d["certificates"]) and \
    d["limits"]["maxFlows"] > 0 and "items" in d["policies"] and \
    isinstance(d["features"].get("ringbuf"), bool) and d["generation"] >= 1
print("ok" if ok else "bad")' <<<"$dump" 2>&1)
nm_check admin-config-dump "config_dump: $out: ${dump:0:300}" test "$out" == ok

stats=$(admin http://127.0.0.1:15000/stats)
nm_check admin-stats-text "stats: ${stats:0:300}" grep -q '^istio_tcp_connections_opened_total{reporter="source".*: 1$' <<<"$stats"
out=$(admin 'http://127.0.0.1:15000/stats?format=json' | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print("ok" if any(s["name"].startswith("nodemesh_flows_active") for s in d["stats"]) else "bad")' 2>&1)
nm_check admin-stats-json "stats?format=json: $out" test "$out" == ok

out=$(admin 'http://127.0.0.1:15000/flows?workload=local-echo' | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
r = d["recent"]
print("ok" if d["active"] == [] and len(r) == 1 and r[0]["dst"]["workload"] == "local-echo" and
      r[0]["bytes_up"] == int(sys.argv[1]) else "bad: %s" % d)' "$N2" 2>&1)
nm_check admin-flows-filter "flows?workload=local-echo: $out" test "$out" == ok

lvl=$(admin http://127.0.0.1:15000/logging)
nm_check admin-logging-get "GET /logging: $lvl" test "$lvl" == "current log level is debug"
admin -X POST 'http://127.0.0.1:15000/logging?level=warn' >/dev/null
lvl=$(admin http://127.0.0.1:15000/logging)
before=$(grep -c 'msg="flow open"' "$log1")
nm_pod_exec client "$PY" -c "$CLIENT" 198.19.0.11 80 10 >/dev/null
sleep 0.3
after=$(grep -c 'msg="flow open"' "$log1")
nm_check admin-logging-post "after POST level=warn: '$lvl', debug flow lines $before -> $after" \
	test "$lvl" == "current log level is warn" -a "$before" == "$after"
code=$(admin -o /dev/null -w '%{http_code}' -X POST 'http://127.0.0.1:15000/logging?level=loud')
nm_check admin-logging-bad "POST level=loud answered $code" test "$code" == 400
admin -X POST 'http://127.0.0.1:15000/logging?level=debug' >/dev/null

# follow: the stream is open before the flow is made.
fol=$NM_STATE/follow.out
nm_node_exec 1 timeout 15 curl -sN 'http://127.0.0.1:15000/flows?follow=1&workload=local-echo' >"$fol" 2>/dev/null &
fpid=$!
sleep 0.5
nm_pod_exec client "$PY" -c "$CLIENT" 198.19.0.11 80 777 >/dev/null
for ((i = 0; i < 100; i++)); do
	grep -q '"bytes_up":777' "$fol" && break
	sleep 0.1
done
kill "$fpid" 2>/dev/null
wait "$fpid" 2>/dev/null
out=$("$PY" -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("ok" if len(rs) == 1 and rs[0]["bytes_up"] == 777 and rs[0]["bytes_down"] == int(sys.argv[2]) else "bad: %s" % rs)' "$fol" "$K2" 2>&1)
nm_check admin-flows-follow "follow stream: $out" test "$out" == ok

# An idle follower costs the agent nothing: its thread waits on a condition
# variable (a loop that polled instead would burn a core here).
apid=${NM_AGENT_PID_1:-}
apid=$(cat "/proc/$apid/task/$apid/children" 2>/dev/null | awk '{print $1}' || true)
[[ -n $apid ]] || apid=$NM_AGENT_PID_1
nm_node_exec 1 timeout 10 curl -sN 'http://127.0.0.1:15000/flows?follow=1' >/dev/null 2>&1 &
fpid=$!
sleep 1
t0=$(awk '{print $14 + $15}' "/proc/$apid/stat")
sleep 3
t1=$(awk '{print $14 + $15}' "/proc/$apid/stat")
kill "$fpid" 2>/dev/null
wait "$fpid" 2>/dev/null
hz=$(getconf CLK_TCK)
nm_check admin-follow-idle-cpu "agent used $((t1 - t0)) ticks (of $((3 * hz))) in 3 s with an idle follower" \
	test $((t1 - t0)) -le $((3 * hz / 10))

# The ports are the agent's alone: a second listener with SO_REUSEPORT
# (another agent in this netns) must not be able to share them.
out=$(nm_node_exec 1 "$PY" -c '
import socket, sys
for port, addr in ((15020, "0.0.0.0"), (15000, "127.0.0.1")):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((addr, port)); s.listen(1)
        print("shared %d" % port); sys.exit()
    except OSError:
        pass
print("ok")' 2>&1)
nm_check metrics-admin-ports-exclusive "$out" test "$out" == ok

((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
