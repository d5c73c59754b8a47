#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_08_cleanup - scenario 8: after a run no network namespace, cgroup,
# pinned BPF object, state directory or process of that run is left behind.
# A child script builds the full cluster (both agents, echo pods, a
# cross-node flow, a long-lived tcpdump) and then ends four ways:
#   success   exits 0                       -> its EXIT trap cleans up
#   failure   a command fails under set -e  -> its EXIT trap cleans up
#   sigterm   killed with SIGTERM mid-run   -> its TERM/EXIT traps clean up
#   sigkill   killed with SIGKILL (no trap can run); then the recorded state
#             is torn down by nm_cluster_down_from_env, the path that
#             `demo.sh down` uses
# and after each the leak check (nm_cluster_leftovers) looks for every kind
# of object by the run's names, cgroup path, netns inodes and pids.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/cluster.sh"

nm_require_bins cleanup
[[ $(id -u) -eq 0 ]] || { nm_fail cleanup "must run as root"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/child.sh" <<'CHILD'
set -euo pipefail
mode=$1 out=$2
. "$NM_HERE/lib/cluster.sh"
nm_cluster_init
echo "$NM_STATE" >"$out/state"
nm_cluster_up
nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes 64K --timeout-ms 10000 >"$out/send"
nm_node_spawn 1 tcpdump tcpdump -i "${NM_RUN}l1" --immediate-mode -n -U -Z root -w "$NM_STATE/x.pcap" tcp
nm_wait_file_match "$NM_STATE/tcpdump.err" "listening on" 5
cp "$NM_STATE/cluster.env" "$out/cluster.env"
touch "$out/ready"
case $mode in
success) exit 0 ;;
failure) false ;;
*) sleep 60 & wait $! ;;
esac
CHILD

run_mode() { # MODE
	local mode=$1 out=$work/$1 pid i state left
	mkdir -p "$out"
	NM_HERE=$here NM_ARTIFACTS="$out/artifacts" bash "$work/child.sh" "$mode" "$out" \
		>"$out/log" 2>&1 &
	pid=$!
	if [[ $mode == sigterm || $mode == sigkill ]]; then
		for ((i = 0; i < 300; i++)); do
			[[ -e $out/ready ]] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		[[ -e $out/ready ]] || { nm_fail "cleanup-after-$mode" "child never got ready: $(tail -n 5 "$out/log")"; wait "$pid"; return; }
		kill "-${mode#sig}" "$pid"
	fi
	wait "$pid" 2>/dev/null
	if [[ ! -e $out/ready ]]; then
		nm_fail "cleanup-after-$mode" "child did not build its cluster: $(tail -n 5 "$out/log" | tr '\n' ' ')"
		return
	fi
	if [[ $mode == sigkill ]]; then
		state=$(cat "$out/state")
		[[ -d $state ]] || { nm_fail "cleanup-after-$mode" "state dir $state vanished"; return; }
		nm_cluster_down_from_env "$state"
	fi
	if left=$(nm_cluster_leftovers "$out/cluster.env"); then
		nm_pass "cleanup-after-$mode"
	else
		nm_fail "cleanup-after-$mode" "left behind: $(echo "$left" | tr '\n' ';')"
		# Do not leak into the next test run.
		state=$(cat "$out/state")
		nm_cluster_down_from_env "$state" >/dev/null 2>&1
	fi
}

for m in success failure sigterm sigkill; do
	run_mode "$m"
done
exit $((NM_FAILS > 0))
