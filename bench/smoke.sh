#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# smoke.sh -- a test of the benchmark scripts themselves, not a benchmark:
# bench/run.sh --smoke (one short point of every step, into a temp dir,
# RESULTS.md untouched), then checks that the JSON parses and holds what
# the report needs, and that the Markdown report was written.
# Prints "PASS name" / "FAIL name: reason" lines (tests/run.sh style) and
# exits 1 on any failure. About 1.5 minutes; needs root for the mesh part
# (without root the mesh step is reported as skipped and not asserted).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FAILS=0
pass() { printf 'PASS %s\n' "$1"; }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; FAILS=$((FAILS + 1)); }

command -v jq >/dev/null || { fail bench-smoke "jq not found (tools/install-deps.sh)"; exit 1; }
SMOKE_DIR=$(mktemp -d /tmp/nm-bench-smoke.XXXXXX)
trap 'rm -rf "$SMOKE_DIR"' EXIT
LOG=$SMOKE_DIR/run.log

if timeout -k 10 900 "$HERE/run.sh" --smoke --out "$SMOKE_DIR" --no-results >"$LOG" 2>&1; then
	pass bench-smoke-run
else
	fail bench-smoke-run "bench/run.sh --smoke exited $?; log tail: $(tail -n 15 "$LOG" | tr '\n' ' ')"
fi
JSON=$(ls "$SMOKE_DIR"/*.json 2>/dev/null | head -n 1)
if [[ -n $JSON ]] && jq -e . "$JSON" >/dev/null 2>&1; then
	pass bench-smoke-json-parses
else
	fail bench-smoke-json-parses "no parsable JSON in $SMOKE_DIR"
	exit 1
fi

check() { # NAME JQ-EXPR REASON
	if jq -e "$2" "$JSON" >/dev/null 2>&1; then pass "$1"; else fail "$1" "$3: $(jq -c "$2" "$JSON" 2>&1 | head -c 200)"; fi
}
check bench-smoke-mtls '.mtls.enforced == true' "mTLS check did not pass"
check bench-smoke-peers '[.peers.results[] | select(.path == "direct" or .path == "nodemesh") | .ok] == [true, true]' \
	"direct and nodemesh not both measured"
check bench-smoke-nodemesh-numbers \
	'.peers.results[] | select(.path == "nodemesh") | [.p50_us, .gbps_1, .conns_per_s, .ratio_vs_direct.p50] | all(type == "number")' \
	"nodemesh figures are not numbers"
check bench-smoke-resources '.resources.hold.held > 0 and (.resources.rss_idle_kb.out | type == "number") and (.resources.cpu.cpu_s_per_gb | type == "number")' \
	"resource figures missing"
check bench-smoke-handshakes '.handshakes.direct_conns_per_s > 0 and
	([.handshakes.full, .handshakes.resumed] | all(.conns_per_s > 0 and .agents_cpu_us_per_conn > 0 and
	 .handshake_cpu_us_per_conn > 0 and .handshake_cpu_us_per_conn < .agents_cpu_us_per_conn and
	 .handshakes_per_conn >= 1)) and
	(.goals | map(select(.name | test("full handshakes \\(issue 14\\)"))) | .[0].bound | type == "string") and
	(.goals | map(select(.name | test("resumption, the agent defaults"))) | .[0].bound | type == "string")' \
	"handshakes.sh figures missing (conns/s, CPU per connection, handshake CPU) or the pool goal has no bound"
check bench-smoke-busypoll '(.busypoll.direct_cross_core_p50_us > 0) and
	([.busypoll.values[] | .p50_us, .agents_cpu_pct] | all(type == "number")) and
	([.busypoll.values[].path.active] == [false, true]) and
	(.goals | map(select(.name == "hop p50 no worse than the best peer")) | .[0].bound | type == "string")' \
	"busypoll.sh figures missing (off and 50 us: p50, CPU, status) or the p50 goal has no bound"
check bench-smoke-goals '(.goals | length) >= 5 and (.goals_row | has("p50_met"))' "goals missing"
if [[ $(id -u) -eq 0 ]]; then
	check bench-smoke-telemetry '[.telemetry.scrape.p99_us.no_scrape, .telemetry.scrape.p99_us.scrape, .telemetry.scrape.p99_us.noise, .telemetry.cost.gbps_1.on, .telemetry.cost.gbps_1.off, .telemetry.cost.conns_per_s.on, .telemetry.cost.conns_per_s.off] | all(type == "number")' \
		"telemetry figures missing"
	check bench-smoke-mesh '(.mesh.results | length) == 4 and ([.mesh.results[].ratio_vs_direct.p50] | all(type == "number")) and (.mesh.hook.added_ns | type == "number")' \
		"mesh path figures missing"
else
	# Not a pass: tests/run.sh ignores SKIP lines, and make check runs as root.
	printf 'SKIP bench-smoke-mesh: the mesh path needs root\n'
fi
MD=${JSON%.json}.md
if [[ -s $MD ]] && grep -q '^| nodemesh ' "$MD" && grep -q '^| goal ' "$MD"; then
	pass bench-smoke-markdown
else
	fail bench-smoke-markdown "Markdown report missing or without the nodemesh/goal rows"
fi
if ((FAILS)); then
	echo "--- run log tail" >&2
	tail -n 40 "$LOG" >&2
fi
exit $((FAILS > 0))
