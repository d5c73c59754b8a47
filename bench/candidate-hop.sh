#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# candidate-hop.sh -- the nodemesh "mesh hop" for ../shared/bench/peers.sh.
#
#   peers.sh --candidate 'nodemesh=exec bench/candidate-hop.sh'
#
# Brings up two real nodemeshd processes that use only static forwarding
# listeners ("forwards" in the cluster file, docs/config.md):
#
#   client -> [outbound agent] 127.0.0.1:$BENCH_OUT_x --TLS 1.3 + NMTP-->
#             [inbound agent]  127.0.0.1:$BENCH_IN_x  --plain TCP--> 127.0.0.1:$BENCH_SRV_x
#
# for x = LAT, TPUT, CONN. It uses the kit's certificates (laid out as
# <certDir>/default/{client,server}/{cert,key,bundle}.pem), pins both agents
# to $BENCH_PROXY_CPU like the peers, turns TLS resumption off when
# BENCH_TLS_RESUME=0 (the kit's default, full handshakes), and logs at warn
# level so that the per-flow info lines cost nothing during the measurement.
# Logs: $BENCH_WORK_DIR/nodemesh-{out,in}.log; pids: $BENCH_WORK_DIR/nodemesh-{out,in}.pid.
#
# Stays in the foreground until killed (peers.sh kills its process group) or
# until one agent exits; every agent is bounded by BENCH_HOP_LIFETIME seconds
# (default 3600). Env overrides: NODEMESHD (binary), BENCH_HOP_NAME (file
# prefix and instance name, default nodemesh), BENCH_LOG_LEVEL (default warn),
# BENCH_TUNNEL_POOL (the outbound agent's mesh.tunnelPool.size; unset = the
# agent's default, 0 = no pool: a second candidate with 0 compares the pool
# with full connects in the same run), BENCH_BUSY_POLL (mesh.busyPoll of
# both agents, microseconds; unset = off), BENCH_TLS_RECORDS (mesh.tlsRecords
# of both agents: auto or openssl; unset = the agent's default, auto),
# BENCH_TLS_EC (mesh.tlsEcMethods of both agents: auto or provider; unset =
# the agent's default, auto).
# Telemetry: each agent serves /metrics and its admin API on 127.0.0.1, on
# ports the kit's layout leaves free beside the hop's own (metrics: the
# CONN port + 1, admin: the LAT port - 1, per side; BENCH_HOP_{METRICS,
# ADMIN}_{OUT,IN} override them; a port something already listens on
# turns that server off). The metrics port in use, or 0, is written to
# $BENCH_WORK_DIR/nodemesh-{out,in}.metrics-port (bench/handshakes.sh reads
# the agents' handshake CPU there).
set -euo pipefail

: "${BENCH_CERT_DIR:?run me from peers.sh --candidate (BENCH_CERT_DIR unset)}"
: "${BENCH_WORK_DIR:?BENCH_WORK_DIR unset}"
for v in OUT_LAT OUT_TPUT OUT_CONN IN_LAT IN_TPUT IN_CONN SRV_LAT SRV_TPUT SRV_CONN; do
	var=BENCH_$v
	[[ ${!var:-} =~ ^[0-9]+$ ]] || { echo "candidate-hop: $var is not a port: '${!var:-}'" >&2; exit 2; }
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
NODEMESHD=${NODEMESHD:-$REPO/build/nodemeshd}
NAME=${BENCH_HOP_NAME:-nodemesh}
LIFETIME=${BENCH_HOP_LIFETIME:-3600}
LEVEL=${BENCH_LOG_LEVEL:-warn}
RESUME=on
[[ ${BENCH_TLS_RESUME:-0} == 1 ]] || RESUME=off
[[ -x $NODEMESHD ]] || { echo "candidate-hop: $NODEMESHD not built (run make)" >&2; exit 1; }
[[ -z ${BENCH_TUNNEL_POOL:-} || $BENCH_TUNNEL_POOL =~ ^[0-9]+$ ]] ||
	{ echo "candidate-hop: BENCH_TUNNEL_POOL is not a number: '$BENCH_TUNNEL_POOL'" >&2; exit 2; }
[[ -z ${BENCH_TLS_RECORDS:-} || $BENCH_TLS_RECORDS == auto || $BENCH_TLS_RECORDS == openssl ]] ||
	{ echo "candidate-hop: BENCH_TLS_RECORDS is not auto or openssl: '$BENCH_TLS_RECORDS'" >&2; exit 2; }
[[ -z ${BENCH_TLS_EC:-} || $BENCH_TLS_EC == auto || $BENCH_TLS_EC == provider ]] ||
	{ echo "candidate-hop: BENCH_TLS_EC is not auto or provider: '$BENCH_TLS_EC'" >&2; exit 2; }
[[ -z ${BENCH_BUSY_POLL:-} || $BENCH_BUSY_POLL =~ ^[0-9]+$ ]] ||
	{ echo "candidate-hop: BENCH_BUSY_POLL is not a number: '$BENCH_BUSY_POLL'" >&2; exit 2; }
# PORT if nothing listens on it (any address), else 0: that server stays off.
free_port() {
	[[ -z $(ss -Htln "sport = :$1" 2>/dev/null) ]] && echo "$1" || echo 0
}
METRICS_OUT=$(free_port "${BENCH_HOP_METRICS_OUT:-$((BENCH_OUT_CONN + 1))}")
METRICS_IN=$(free_port "${BENCH_HOP_METRICS_IN:-$((BENCH_IN_CONN + 1))}")
ADMIN_OUT=$(free_port "${BENCH_HOP_ADMIN_OUT:-$((BENCH_OUT_LAT - 1))}")
ADMIN_IN=$(free_port "${BENCH_HOP_ADMIN_IN:-$((BENCH_IN_LAT - 1))}")
# The "telemetry" member of a cluster file: TELEMETRY_JSON METRICS ADMIN.
telemetry_json() {
	printf '  "telemetry": { "metricsPort": %d, "metricsAddress": "127.0.0.1", "adminPort": %d },\n' "$1" "$2"
}

# The "mesh" member of a cluster file: POOL_JSON is the pool's part.
mesh_json() { # POOL_JSON
	local parts=() IFS=,
	[[ -n $1 ]] && parts+=("$1")
	[[ -n ${BENCH_BUSY_POLL:-} ]] && parts+=("\"busyPoll\": $BENCH_BUSY_POLL")
	[[ -n ${BENCH_TLS_RECORDS:-} ]] && parts+=("\"tlsRecords\": \"$BENCH_TLS_RECORDS\"")
	[[ -n ${BENCH_TLS_EC:-} ]] && parts+=("\"tlsEcMethods\": \"$BENCH_TLS_EC\"")
	((${#parts[@]})) && printf '  "mesh": { %s },\n' "${parts[*]}"
	return 0
}

TD=cluster.local
CLIENT_ID=spiffe://$TD/ns/default/sa/client
SERVER_ID=spiffe://$TD/ns/default/sa/server
DIR=$BENCH_WORK_DIR/$NAME
mkdir -p "$DIR"

# --- certificates: each agent holds only the identity it presents.
for side in out in; do
	if [[ $side == out ]]; then who=client; else who=server; fi
	d=$DIR/certs-$side/default/$who
	mkdir -p "$d"
	install -m 0644 "$BENCH_CERT_DIR/$who.crt" "$d/cert.pem"
	install -m 0600 "$BENCH_CERT_DIR/$who.key" "$d/key.pem"
	install -m 0644 "$BENCH_CERT_DIR/ca.crt" "$d/bundle.pem"
done

# --- cluster files: forwards only, no nodes (no BPF datapath is loaded).
{
	printf '{\n  "trustDomain": "%s",\n  "certDir": "certs-out",\n' "$TD"
	pool=""
	[[ -n ${BENCH_TUNNEL_POOL:-} ]] &&
		pool=$(printf '"tunnelPool": { "size": %d }' "$BENCH_TUNNEL_POOL")
	mesh_json "$pool"
	telemetry_json "$METRICS_OUT" "$ADMIN_OUT"
	printf '  "forwards": [\n'
	sep=""
	for svc in LAT TPUT CONN; do
		o=BENCH_OUT_$svc i=BENCH_IN_$svc s=BENCH_SRV_$svc
		printf '%s    { "name": "%s", "mode": "outbound", "listen": "127.0.0.1:%s",\n' \
			"$sep" "${svc,,}" "${!o}"
		printf '      "peer": "127.0.0.1:%s", "destination": "127.0.0.1:%s",\n' "${!i}" "${!s}"
		printf '      "identity": "default/client", "peerIdentity": "%s" }' "$SERVER_ID"
		sep=$',\n'
	done
	printf '\n  ]\n}\n'
} >"$DIR/out.json"
{
	printf '{\n  "trustDomain": "%s",\n  "certDir": "certs-in",\n' "$TD"
	mesh_json ""
	telemetry_json "$METRICS_IN" "$ADMIN_IN"
	printf '  "forwards": [\n'
	sep=""
	for svc in LAT TPUT CONN; do
		i=BENCH_IN_$svc s=BENCH_SRV_$svc
		printf '%s    { "name": "%s-in", "mode": "inbound", "listen": "127.0.0.1:%s",\n' \
			"$sep" "${svc,,}" "${!i}"
		printf '      "destination": "127.0.0.1:%s", "identity": "default/server",\n' "${!s}"
		printf '      "allowedPeers": [ "%s" ] }' "$CLIENT_ID"
		sep=$',\n'
	done
	printf '\n  ]\n}\n'
} >"$DIR/in.json"

# --- agents
INST_BASE="bench-$NAME-$$"
PIDS=()
AGENTS=()
cleanup() {
	local p i
	trap - EXIT TERM INT
	for p in "${AGENTS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for ((i = 0; i < 20; i++)); do
		kill -0 "${AGENTS[@]}" "${PIDS[@]}" 2>/dev/null || break
		sleep 0.1
	done
	for p in "${AGENTS[@]}" "${PIDS[@]}"; do
		# Only what is still ours: a pid that exited may be reused.
		if grep -qE 'nodemeshd|timeout' "/proc/$p/cmdline" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	# The agents remove their run state on a clean stop; after a SIGKILL
	# this removes what is left (only our own instance names).
	rm -rf "/run/nodemesh/$INST_BASE-out" "/run/nodemesh/$INST_BASE-in" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

start_agent() { # start_agent SIDE
	local side=$1 pin=()
	[[ -n ${BENCH_PROXY_CPU:-} ]] && pin=(taskset -c "$BENCH_PROXY_CPU")
	# --foreground keeps the agent in our process group, so the group
	# signals of peers.sh reach it even if this shell is killed first.
	"${pin[@]}" timeout --foreground --kill-after=5 "$LIFETIME" "$NODEMESHD" \
		--config "$DIR/$side.json" --instance "$INST_BASE-$side" \
		--log-level "$LEVEL" --tls-resumption "$RESUME" \
		>"$BENCH_WORK_DIR/$NAME-$side.log" 2>&1 </dev/null &
	PIDS+=("$!")
}
echo "$METRICS_OUT" >"$BENCH_WORK_DIR/$NAME-out.metrics-port"
echo "$METRICS_IN" >"$BENCH_WORK_DIR/$NAME-in.metrics-port"
# Inbound first, so the outbound side's first tunnel finds it listening.
start_agent in
start_agent out

# nodemeshd's own pid (the child of `timeout`), for the resource figures.
for side in in out; do
	if [[ $side == in ]]; then t=${PIDS[0]}; else t=${PIDS[1]}; fi
	pid=""
	for _ in $(seq 50); do
		pid=$(cat "/proc/$t/task/$t/children" 2>/dev/null | awk '{print $1}') || true
		[[ -n $pid ]] && break
		sleep 0.02
	done
	echo "${pid:-$t}" >"$BENCH_WORK_DIR/$NAME-$side.pid"
	if [[ -n $pid ]]; then AGENTS+=("$pid"); fi
done

# Foreground until one agent ends (or we are killed).
set +e
wait -n "${PIDS[@]}"
rc=$?
echo "candidate-hop: an agent exited (status $rc); see $BENCH_WORK_DIR/$NAME-*.log" >&2
exit "$rc"
