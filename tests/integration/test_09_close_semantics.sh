#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_09_close_semantics - how connections end through the mesh, cross-node
# (tunnel: FIN <-> close_notify) and same-node (plain relay):
#   *-halfclose      after the client's FIN the server still answers, and the
#                    answer arrives: half-close propagates, the other way flows
#   *-server-reset   a server's RST reaches the client as ECONNRESET
#   *-client-reset   a client's RST reaches the server as ECONNRESET
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

CLOSER=$NM_BUILD/tests/tools/nm_closer
[[ -x $CLOSER ]] || { nm_fail close-semantics "$CLOSER missing (run make)"; exit 1; }
nm_scenario_up close-semantics

for pod in echo local-echo; do
	nm_pod_spawn "$pod" "closer-$pod" "$CLOSER" serve --port 9000
	nm_pod_info "$pod"
	nm_wait_listen "$NM_P_NS" 9000 5 || nm_fail close-semantics "closer in $pod did not listen"
done

for pair in "cross-node echo" "same-node local-echo"; do
	read -r label pod <<<"$pair"
	to="$(nm_pod_ip "$pod"):9000"

	if out=$(nm_pod_exec client "$CLOSER" halfclose --to "$to" --bytes 300000 2>&1) &&
		[[ $out == *'answer "got 300000"'* ]]; then
		nm_pass "$label-halfclose"
	else
		nm_fail "$label-halfclose" "$out"
	fi

	out=$(nm_pod_exec client "$CLOSER" reset --to "$to" 2>&1)
	if [[ $out == *ECONNRESET* ]]; then
		nm_pass "$label-server-reset"
	else
		nm_fail "$label-server-reset" "$out"
	fi

	nm_pod_exec client "$CLOSER" client-reset --to "$to" >/dev/null 2>&1
	if nm_wait_file_match "$NM_STATE/closer-$pod.out" '^wait: ECONNRESET' 5; then
		nm_pass "$label-client-reset"
	else
		nm_fail "$label-client-reset" "server saw: $(tail -n 1 "$NM_STATE/closer-$pod.out")"
	fi
done
((NM_FAILS)) && nm_dump_logs
exit $((NM_FAILS > 0))
