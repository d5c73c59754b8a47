#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# overload.sh -- what connections that never get to relay cost an agent
# (issue 8, "Handshake state is allocated only as it is needed"). In the
# integration harness's two-node cluster (tests/integration/lib/cluster.sh),
# from node-1's netns against node-2's inbound listener (15008):
#
#   rss_start_kb        node-2 agent VmRSS after start-up
#   rss_idle_tcp_kb     with N TCP connections that sent nothing
#   rss_idle_tls_kb     with N connections that completed a TLS 1.3
#                       handshake (client cert default/client) and then sent
#                       nothing (no preamble): measured at once, before the
#                       10 s handshake/preamble deadline closes them
#   per_conn_*_bytes    (RSS_N - RSS_start) / N
#
# Usage: overload.sh [--conns N] [--json PATH]   (root; default N = 2000)
# Env: NODEMESHD, NM_BUILD as for the integration tests (compare builds by
# pointing NODEMESHD at another nodemeshd).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-build}
case $OUT in /*) NM_BUILD=${NM_BUILD:-$OUT} ;; *) NM_BUILD=${NM_BUILD:-$REPO/$OUT} ;; esac
NM_AGENT_LOG_LEVEL=${NM_AGENT_LOG_LEVEL:-info}
. "$REPO/tests/integration/lib/cluster.sh"

CONNS=2000
JSON=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--conns) CONNS=$2; shift 2 ;;
	--json) JSON=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "overload.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
HOLD=$NM_BUILD/tests/tools/nm_hold
[[ -x $HOLD ]] || { echo "overload.sh: $HOLD missing (run make)" >&2; exit 1; }
nm_require_bins overload-bench
nm_cluster_init
nm_cluster_up || { nm_dump_logs; exit 1; }
PID2=$NM_AGENT_PID_2
TO="${NM_NODE_ADDR[2]}:$NM_INBOUND_PORT"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# hold_and_measure TAG ARGS...: open CONNS connections, read RSS, release.
hold_and_measure() {
	local tag=$1 base i r rss
	shift
	base=$(nfds "$PID2")
	nm_node_spawn 1 "hold-$tag" "$HOLD" open --to "$TO" --count "$CONNS" --settle-ms 200 "$@"
	local pid=$NM_LAST_PID
	nm_wait_file_match "$NM_STATE/hold-$tag.out" '^ready ' 60 || { echo "no ready line: $(cat "$NM_STATE/hold-$tag.err")" >&2; exit 1; }
	r=$(grep '^ready ' "$NM_STATE/hold-$tag.out")
	sleep 0.3  # let the agent finish the last events before reading RSS
	rss=$(rss_kb "$PID2")
	echo "$tag: $r agent_fds=$(nfds "$PID2") rss_kb=$rss" >&2
	kill "$pid" 2>/dev/null
	for ((i = 0; i < 200; i++)); do
		(($(nfds "$PID2") <= base)) && break
		sleep 0.05
	done
	echo "$rss"
}

rss0=$(rss_kb "$PID2")
rss_tcp=$(hold_and_measure tcp)
rss_tls=$(hold_and_measure tls --tls "$NM_STATE/certs" --id default/client \
	--peer "spiffe://$NM_TRUST_DOMAIN/ns/default/sa/echo")
per_tcp=$(((rss_tcp - rss0) * 1024 / CONNS))
per_tls=$(((rss_tls - rss0) * 1024 / CONNS))
res=$(printf '{"conns":%d,"rss_start_kb":%d,"rss_idle_tcp_kb":%d,"rss_idle_tls_kb":%d,"per_conn_tcp_bytes":%d,"per_conn_tls_bytes":%d,"nodemeshd":"%s"}' \
	"$CONNS" "$rss0" "$rss_tcp" "$rss_tls" "$per_tcp" "$per_tls" "$NODEMESHD")
echo "$res"
[[ -n $JSON ]] && echo "$res" >"$JSON"
exit 0
