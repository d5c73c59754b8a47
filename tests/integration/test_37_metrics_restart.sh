#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The agent's HTTP servers (metrics, admin API) and restarts: a scrape that
# the agent closes leaves a TIME_WAIT on its port, and an agent restarted
# within the minute must bind it again (SO_REUSEADDR), while a second agent
# on the same port must still be refused (no SO_REUSEPORT: it would answer
# half the scrapes with its own figures). Asserts, each on its own:
#   metrics_first        the first agent serves /metrics
#   metrics_time_wait    the scrape left a TIME_WAIT on the metrics port
#   metrics_restart      an agent started at once on the same ports serves
#                        /metrics and the admin API again
#   metrics_no_share     a second agent on those ports is refused them,
#                        says so, and the first keeps answering
set -uo pipefail

. "$(dirname "$0")/lib/standalone.sh" metrics-restart

INP=$BASE SRVP=$((BASE + 1)) METP=$((BASE + 2)) ADMP=$((BASE + 3))

cd "$WORK" || exit 1
"$B/nodemesh" ca init --dir ca --trust-domain cluster.local >/dev/null &&
	"$B/nodemesh" ca issue --dir ca --out certs --ns default --sa server >/dev/null ||
	{ fail metrics_setup "cannot create certificates"; exit 1; }
cat >in.json <<JSON
{ "trustDomain": "cluster.local", "certDir": "certs",
  "telemetry": { "metricsPort": $METP, "metricsAddress": "127.0.0.1", "adminPort": $ADMP },
  "forwards": [
    { "name": "echo-in", "mode": "inbound", "listen": "127.0.0.1:$INP",
      "destination": "127.0.0.1:$SRVP", "identity": "default/server",
      "allowedPeers": [ "spiffe://cluster.local/ns/default/sa/client" ] } ] }
JSON
# The same telemetry ports, its own forward port (a taken one stops an agent).
sed "s/127.0.0.1:$INP/127.0.0.1:$((BASE + 4))/" in.json >third.json

# start_agent NAME [CONFIG]: runs an agent on in.json as instance NAME; its pid in AGENT.
start_agent() {
	"$B/nodemeshd" --config "${2:-in.json}" --instance "nm-metrics-$1-$$" \
		>"$1.log" 2>&1 </dev/null &
	AGENT=$!
	PIDS+=("$AGENT")
}
# scrape PORT PATH: the body, the agent closing the connection (Connection: close).
scrape() {
	curl -sf --max-time 2 -H 'Connection: close' "http://127.0.0.1:$1$2"
}
# wait_scrape PORT PATH: up to 5 s for an answer.
wait_scrape() {
	for _ in $(seq 50); do
		scrape "$1" "$2" >/dev/null && return 0
		sleep 0.1
	done
	return 1
}

start_agent first
if wait_scrape "$METP" /metrics && scrape "$METP" /metrics | grep -q '^nodemesh_limit{'; then
	pass metrics_first
else
	fail metrics_first "no /metrics on :$METP ($(tail -n 3 first.log | tr '\n' ' '))"
fi
kill -TERM "$AGENT"
wait "$AGENT"
if [[ -n $(ss -Htan state time-wait "sport = :$METP") ]]; then
	pass metrics_time_wait
else
	fail metrics_time_wait "no TIME_WAIT on :$METP after the agent closed a scrape"
fi

start_agent second
if wait_scrape "$METP" /metrics && wait_scrape "$ADMP" /stats; then
	pass metrics_restart
else
	fail metrics_restart "the restarted agent serves nothing on :$METP/:$ADMP ($(grep 'cannot serve' second.log | tr '\n' ' '))"
fi

SECOND=$AGENT
start_agent third third.json
for _ in $(seq 50); do
	grep -q 'cannot serve.*role=metrics' third.log && break
	sleep 0.1
done
if grep -q "cannot serve.*role=metrics.*$METP" third.log && kill -0 "$SECOND" &&
	scrape "$METP" /metrics | grep -q '^nodemesh_limit{'; then
	pass metrics_no_share
else
	fail metrics_no_share "a second agent shared :$METP ($(tail -n 3 third.log | tr '\n' ' '))"
fi
exit 0
