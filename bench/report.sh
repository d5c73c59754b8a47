#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# report.sh -- turn one bench/run.sh JSON into the tables it prints.
#
#   report.sh FILE.json          plain-text tables (what run.sh prints)
#   report.sh --md FILE.json     the same as Markdown (bench/out/<date>.md)
#   report.sh --summary FILE.json  the short dated section for RESULTS.md
#
# Tables: the loopback peer comparison (direct, HAProxy, nginx, stunnel and
# the nodemesh hop side by side, ratios vs direct from the same run) with
# the issue's goal row below it, what bounds its new connections
# (handshakes.sh), its round trip with and without busy polling
# (busypoll.sh), the real mesh path (ratios vs direct pod
# to pod), and the resource figures.
set -euo pipefail

MODE=text
case ${1:-} in
--md) MODE=md; shift ;;
--summary) MODE=summary; shift ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
[[ $# -eq 1 && -f $1 ]] || { echo "usage: report.sh [--md|--summary] FILE.json" >&2; exit 2; }
F=$1
command -v jq >/dev/null || { echo "report.sh: jq not found (apt-get install -y jq)" >&2; exit 1; }

# row CELLS... : one table row, text or Markdown.
W=(12 9 9 7 7 9 7 7 7 7 7 9 5)
row() {
	local i out=""
	if [[ $MODE == text ]]; then
		for ((i = 1; i <= $#; i++)); do
			local w=${W[$((i - 1))]:-8}
			if ((i == 1)); then out+=$(printf '%-*s' "$w" "${!i}"); else out+=$(printf ' %*s' "$w" "${!i}"); fi
			((i == 6)) && out+=" |"
		done
		printf '%s\n' "$out"
	else
		out="|"
		for ((i = 1; i <= $#; i++)); do out+=" ${!i} |"; done
		printf '%s\n' "$out"
	fi
}
sep() { # sep NCOLS (Markdown header rule)
	[[ $MODE == md ]] || return 0
	local s="|" i
	for ((i = 0; i < $1; i++)); do s+="---|"; done
	printf '%s\n' "$s"
}
title() { if [[ $MODE == md ]]; then printf '\n### %s\n\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
note() { if [[ $MODE == md ]]; then printf '\n%s\n' "$*"; else printf '%s\n' "$*"; fi; }
j() { jq -r "$@" "$F"; }

# ------------------------------------------------------------- summary
if [[ $MODE == summary ]]; then
	j '
	def f(x): if x == null then "NA" else (x | tostring) end;
	def nm: (.peers.results[] | select(.path == "nodemesh"));
	"## \(.meta.date) (\(.meta.mode), commit \(.meta.git))\n",
	"Host: \(.meta.ncpu) CPUs, kernel \(.meta.kernel), load average \(.meta.loadavg_start) at start / \(.meta.loadavg_end) at end. \(.meta.note // "")",
	"",
	"Loopback hop, ratios vs direct in the same peers.sh run (p50 / 1-stream Gbit/s / conns/s; conns/s with resumption):",
	"",
	(.peers.results[] | select(.path != "direct") | . as $r |
	  "- \($r.path): p50 \(f($r.ratio_vs_direct.p50))x, gbps_1 \(f($r.ratio_vs_direct.gbps_1))x, cps \(f($r.ratio_vs_direct.conns_per_s))x, cps resumed \(f((.path) as $p | ($ROOT.peers_resume.results // [] | map(select(.path == $p)) | .[0].ratio_vs_direct.conns_per_s)))x"),
	"",
	"Mesh path (ratios vs direct pod to pod): " + ((.mesh.results // []) | map(select(.path | startswith("mesh"))) | map("\(.path) p50 \(f(.ratio_vs_direct.p50))x, gbps_1 \(f(.ratio_vs_direct.gbps_1))x, cps \(f(.ratio_vs_direct.conns_per_s))x") | join("; ")),
	"",
	"Resources: idle RSS \(f(.resources.rss_idle_kb.out)) / \(f(.resources.rss_idle_kb.in)) kB (hop out/in), \(f(.mesh.agents.rss_idle_kb."node-1")) kB (mesh agent); \(f(.resources.hold.bytes_per_conn.sum)) B per idle proxied connection (both agents, at \(f(.resources.hold.held)) connections); \(f(.resources.cpu.cpu_s_per_gb)) CPU s/GB (hop), \(f(.mesh.agents.cpu_s_per_gb_mesh_cross)) (mesh); BPF hook adds \(f(.mesh.hook.added_ns)) ns per meshed connect() (connect4 run time \(f(.mesh.hook.connect4_run_ns)) ns with bpf_stats on).",
	"",
	"Goals: " + (.goals | map("\(.name) \(if .met == true then "met" elif .met == false then "MISSED" else "n/a" end) (\(f(.value)) vs \(.target))\(if .bound and .met == false then "; bound: \(.bound)" else "" end)") | join("; ")),
	""' --argjson ROOT "$(cat "$F")"
	exit 0
fi

# ------------------------------------------------------------- peers
if [[ $MODE == md ]]; then
	j '"## nodemesh benchmark \(.meta.date)\n\nMode `\(.meta.mode)`, commit `\(.meta.git)`, \(.meta.ncpu) CPUs, kernel \(.meta.kernel), pinning `\(.meta.pin)`, TLS resumption \(if .meta.tls_resume == 1 then "on" else "off (full handshakes)" end) in the main pass. Load average \(.meta.loadavg_start) at start, \(.meta.loadavg_end) at end. \(.meta.note // "") \(if .meta.peers_retried then "Peer pass: \(.meta.peers_retried)." else "" end)"'
fi
title "Loopback mesh hop: peers and nodemesh (peers.sh, $(j '"\(.peers.meta.duration_s)s x \(.peers.meta.runs) runs, medians"'))"
row path p50_us p99_us gbps_1 gbps_4 conns_per_s p50_x p99_x gbps1_x gbps4_x cps_x cps_x_res mtls
sep 13
j '($ROOT.peers_resume.results // []) as $res |
   .peers.results[] | . as $r |
   [.path, .p50_us, .p99_us, .gbps_1, .gbps_4, .conns_per_s,
    .ratio_vs_direct.p50, .ratio_vs_direct.p99, .ratio_vs_direct.gbps_1,
    .ratio_vs_direct.gbps_4, .ratio_vs_direct.conns_per_s,
    ($res | map(select(.path == $r.path)) | .[0].ratio_vs_direct.conns_per_s),
    (if .path == "nodemesh" then (if $ROOT.mtls.enforced then "yes" else "NO" end) else .mtls_enforced end)]
   | map(if . == null then "NA" else tostring end) | join("\u001f")' --argjson ROOT "$(cat "$F")" |
	while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
# The goal row: the issue's first targets, from this run's peers.
j '.goals_row | [ "goal", "", "", "", "", "", .p50, "", .gbps_1, "", .cps, .cps_res, "yes" ] | map(tostring) | join("\u001f")' |
	while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
j 'def v: if . == true then "met" elif . == false then "MISSED" else "n/a" end;
   .goals_row | [ "verdict", "", "", "", "", "", (.p50_met | v), "", (.gbps_1_met | v), "", (.cps_met | v), (.cps_res_met | v), (.mtls_met | v) ] | join("\u001f")' |
	while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
note "$(j '"run spread (min-max of the runs): " + ([.peers.results[] | select(.path != "direct") |
	def rng(a): (a | map(select(. != null))) as $v | if ($v | length) == 0 then "NA" else "\($v | min)-\($v | max)" end;
	"\(.path) p50 \(rng(.runs.p50_us)) us, cps \(rng(.runs.conns_per_s))"] | join("; "))')"
note "$(j '"(latency: sockperf TCP ping-pong round trip, 64 B; x = ratio vs direct in the same run; cps_x_res: a second, shorter peers.sh pass with BENCH_TLS_RESUME=1 (\(if .peers_resume then "\(.peers_resume.meta.duration_s)s x \(.peers_resume.meta.runs)" else "not run" end)); goal row: nodemesh p50_x <= best peer, gbps1_x >= best peer, cps_x >= best peer with full handshakes, cps_x_res >= 2x the best peer full-handshake cps_x; mtls: nodemesh checked by bench/mtls-check.sh)"')"

# ------------------------------------------------------- handshakes
if [[ $(j '.handshakes != null') == true ]]; then
	title "What bounds the hop's new connections (handshakes.sh, $(j '"\(.handshakes.seconds)s per mode"'))"
	row mode conns_per_s x_direct core_busy agent_us hs_us hs_share ceiling ceiling_x
	sep 9
	j '.handshakes as $h | ["full", "resumed"][] as $m | $h[$m] |
	   [$m, .conns_per_s, .ratio_vs_direct, (if .core_busy_pct then "\(.core_busy_pct)%" else null end),
	    .agents_cpu_us_per_conn, .handshake_cpu_us_per_conn,
	    (if .handshake_share then "\(.handshake_share * 100 | round)%" else null end),
	    .ceiling_handshakes_only_cps, .ceiling_handshakes_only_ratio]
	   | map(if . == null then "NA" else tostring end) | join("\u001f")' |
		while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
	note "$(j '"(a sequential connrate client through the hop, both agents on CPU 1 with the tunnel pool at its default, direct \(.handshakes.direct_conns_per_s) conns/s; agent_us: both agents\u0027 CPU per connection (/proc); hs_us: of it inside OpenSSL\u0027s handshake steps (nodemesh_tls_handshake_cpu_seconds_total, both ends of each tunnel); ceiling: 1 s / hs_us, the rate if nothing but the handshakes cost CPU)" + (if .handshakes.profile.both_full_pct then " Full handshakes under perf, share of both agents\u0027 CPU: " + (.handshakes.profile.both_full_pct | to_entries | map("\(.key) \(.value)%") | join(", ")) + "." else "" end) + (if .handshakes.profile.both_resumed_pct then " Resumed: " + (.handshakes.profile.both_resumed_pct | to_entries | map("\(.key) \(.value)%") | join(", ")) + "." else "" end)')"
fi

# ------------------------------------------------------- busy polling
if [[ $(j '.busypoll != null') == true ]]; then
	title "The hop's round trip and mesh.busyPoll (busypoll.sh, $(j '"\(.busypoll.duration_s)s x \(.busypoll.runs) runs, medians"'))"
	row busy_poll_us p50_us p99_us p50_x p99_x agents_cpu mode
	sep 7
	j '.busypoll.values[] | [.busy_poll_us, .p50_us, .p99_us, .p50_x, .p99_x,
	   (if .agents_cpu_pct then "\(.agents_cpu_pct)%" else null end), .path.mode]
	   | map(if . == null then "NA" else tostring end) | join("\u001f")' |
		while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
	note "$(j '"(the kit\u0027s hop, sockperf on CPU 0, both agents on CPU 1; direct p50 \(.busypoll.direct_p50_us) us on one core, \(.busypoll.direct_cross_core_p50_us) us with the client on the other core; agents_cpu: both agents\u0027 CPU over each sockperf run, as a share of one core; busy polling is off by default)"')"
fi

# ------------------------------------------------------------- mesh
if [[ $(j '.mesh != null') == true ]]; then
	title "Real mesh path in the simulated cluster ($(j '"\(.mesh.meta.duration_s)s x \(.mesh.meta.runs) runs, medians; ratios vs the matching direct path"'))"
	row path p50_us p99_us gbps_1 gbps_4 conns_per_s p50_x p99_x gbps1_x gbps4_x cps_x
	sep 11
	j '.mesh.results[] | [.path, .p50_us, .p99_us, .gbps_1, .gbps_4, .conns_per_s,
	   .ratio_vs_direct.p50, .ratio_vs_direct.p99, .ratio_vs_direct.gbps_1,
	   .ratio_vs_direct.gbps_4, .ratio_vs_direct.conns_per_s] | map(if . == null then "NA" else tostring end) | join("\u001f")' |
		while IFS=$'\x1f' read -r -a c; do row "${c[@]}"; done
	note "(client pod on node-1; direct-* = same netns, unmeshed cgroup, pod IP; mesh-cross = service VIP -> node-2 pod through both agents; mesh-same = service VIP -> node-1 pod)"
else
	title "Real mesh path"
	note "not measured: $(j '.mesh_skipped // "skipped"')"
fi

# ------------------------------------------------------------- resources
title "Resources"
if [[ $MODE == md ]]; then
	printf '| figure | value | goal |\n|---|---|---|\n'
	fmt='| %s | %s | %s |\n'
else
	fmt='%-44s %-34s %s\n'
fi
j '
def f(x): if x == null then "NA" else (x | tostring) end;
[
 ["agent RSS idle, hop outbound / inbound", "\(f(.resources.rss_idle_kb.out)) / \(f(.resources.rss_idle_kb.in)) kB", "< 16384 kB"],
 ["agent RSS idle, mesh node-1 / node-2", "\(f(.mesh.agents.rss_idle_kb."node-1")) / \(f(.mesh.agents.rss_idle_kb."node-2")) kB", "< 16384 kB"],
 ["agent RSS with \(f(.resources.hold.held)) idle flows, out / in", "\(f(.resources.hold.rss_kb.out)) / \(f(.resources.hold.rss_kb.in)) kB", "-"],
 ["user-space bytes per idle connection", "out \(f(.resources.hold.bytes_per_conn.out)) + in \(f(.resources.hold.bytes_per_conn.in)) = \(f(.resources.hold.bytes_per_conn.sum)) B", "-"],
 ["RSS after the flows closed, out / in", "\(f(.resources.hold.rss_after_release_kb.out)) / \(f(.resources.hold.rss_after_release_kb.in)) kB", "-"],
 ["agent CPU per GB relayed, hop (both)", "\(f(.resources.cpu.cpu_s_per_gb)) s/GB (out \(f(.resources.cpu.cpu_s_per_gb_out)), in \(f(.resources.cpu.cpu_s_per_gb_in))) at \(f(.resources.cpu.gbps)) Gbit/s", "-"],
 ["agent CPU per GB relayed, mesh-cross (both)", "\(f(.mesh.agents.cpu_s_per_gb_mesh_cross)) s/GB", "-"],
 ["connect() median, unmeshed / meshed-bypassed", (if .mesh.hook.nopkt then "\(f(.mesh.hook.nopkt.connect_median_ns_unmeshed)) / \(f(.mesh.hook.nopkt.connect_median_ns_meshed)) ns (no packet sent)" else "\(f(.mesh.hook.connect_median_ns_unmeshed)) / \(f(.mesh.hook.connect_median_ns_meshed)) ns" end), "-"],
 ["time the BPF hook adds to a meshed connect()", "\(f(.mesh.hook.added_ns)) ns (connect4; its run_time_ns with bpf_stats on: \(f(.mesh.hook.connect4_run_ns)) ns)", "-"],
 ["same, connect() that sends a SYN (+ sockops)", (if .mesh.hook.syn then "\(f(.mesh.hook.added_ns_with_syn)) ns (noisy: packet processing runs in the syscall); sockops \(f(.mesh.hook.sockops_runs_per_connect)) runs x \(f(.mesh.hook.sockops_run_ns)) ns per connection" else "NA" end), "-"]
] | .[] | @tsv' | while IFS=$'\t' read -r a b c; do
	# shellcheck disable=SC2059 # the format is ours
	printf "$fmt" "$a" "$b" "$c"
done
if [[ $(j '.resources.hold.held < .resources.hold.requested') == true ]]; then
	note "$(j '"(\(.resources.hold.held) flows, not \(.resources.hold.requested): the fd hard limit here is \(.resources.hold.fd_limit) and each agent needs 2 fds per flow; bytes/connection is the slope measured at that count)"')"
fi
