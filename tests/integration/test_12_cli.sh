#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_12_cli - nodemesh, the command-line tool, against a running cluster:
#   cli-no-agent-code     build/nodemesh defines none of the agent library's
#                         symbols but those of its pure modules (config/,
#                         state/cluster.c, policy/ without compile.c), and no
#                         tools/ file includes an agent header except
#                         tools/policy.c: config/, state/cluster.h, policy/policy.h
#   cli-json-<cmd>-<pos>  --json before the command and after its arguments
#                         (and --pretty) gives one document jq parses, for
#                         version, status, maps and ca
#   cli-exit-<case>       usage errors exit 2, failures 1; with --json the
#                         error is a JSON object on stdout
#   status-syscalls       under strace, `nodemesh status` makes no bpf()
#                         call that loads, creates, attaches, updates or pins,
#                         creates no socket (so no TCP_ULP, no tls module),
#                         makes or removes no file or directory, opens nothing
#                         for writing -- yet it did read the pins (OBJ_GET)
#   status-leaves-host    no new cgroup directory, kernel module or BPF
#                         program after status (host-wide counts; retried
#                         because other tests may run at the same time).
#                         The old probe removed what it made before exiting,
#                         so status-syscalls is the check that catches it;
#                         this one catches anything left behind
#   status-running        status reports the agent running with its pid,
#                         node, listeners, its pinned links (as many as
#                         link_* pins, at least 3), its state map
#                         (ABI, heartbeat) and the features it probed
#   status-many-stale     a run directory holding 20000 empty instance
#                         directories (what killed agents of old releases
#                         left) still lists the live instance, running:
#                         no fixed-size name list drops it
#   status-stopped        after SIGTERM the instance reads "stopped" and
#                         its pins are still reported
#   stop-removes-rundir   and the agent removed its run directory
#                         (/run/nodemesh/<instance>) with all it wrote there
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

nm_scenario_up cli
. "$NM_STATE/cluster.env"
inst1=$(nm_instance 1)
inst2=$(nm_instance 2)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cli=$NODEMESH

# --- the CLI is not linked with the agent ----------------------------------
agentlib=$(dirname "$NODEMESH")/libnmagent.a
if [[ ! -s $agentlib ]]; then
	nm_fail cli-no-agent-code "$agentlib missing: cannot compare symbols"
else
	agent_syms=$(nm --defined-only -g "$agentlib" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u)
	# `nodemesh policy` links the pure modules (Makefile CLI_PURE_OBJS)
	objdir=$(dirname "$NODEMESH")/agent
	pure_objs=("$objdir"/config/*.o "$objdir"/state/cluster.o)
	for o in "$objdir"/policy/*.o; do
		[[ $o == */compile.o ]] || pure_objs+=("$o")
	done
	pure_syms=$(nm --defined-only -g "${pure_objs[@]}" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u)
	agent_syms=$(comm -23 <(echo "$agent_syms") <(echo "$pure_syms"))
	cli_syms=$(nm --defined-only -g "$NODEMESH" | awk 'NF == 3 {print $3}' | sort -u)
	shared=$(comm -12 <(echo "$agent_syms") <(echo "$cli_syms") | tr '\n' ' ')
	agent_incl='#include "(agent/|core/|state/|config/|datapath/|mesh/|k8s/|policy/|lb/|telemetry/)'
	incl=$(grep -nE "$agent_incl" "$REPO"/tools/*.c "$REPO"/tools/*.h 2>/dev/null |
		grep -vE '^[^:]*/tools/policy\.c:[0-9]+:#include "(config/[a-z_]+\.h|state/cluster\.h|policy/policy\.h)"$' |
		tr '\n' ' ')
	# The comparison means something only if the agent library has them.
	known=0
	for s in nm_datapath_open nm_tls_create nm_model_build; do
		grep -qx "$s" <<<"$agent_syms" && known=$((known + 1))
	done
	if ((known == 3)) && [[ -z $shared && -z $incl ]]; then
		nm_pass cli-no-agent-code
	else
		nm_fail cli-no-agent-code "agent symbols in nodemesh: [${shared}] agent includes in tools/: [${incl}] (agent lib symbols found: $known/3)"
	fi
fi

# --- --json anywhere ---------------------------------------------------------
# json_ok NAME JQ-FILTER CMD...: the command exits 0 and its stdout is one
# JSON document for which the filter is true.
json_ok() {
	local name=$1 filter=$2 out rc
	shift 2
	out=$("$@" 2>"$NM_STATE/cli.err")
	rc=$?
	if ((rc == 0)) && jq -e --arg i1 "$inst1" "$filter" <<<"$out" >/dev/null 2>&1 &&
		[[ $(jq -s length <<<"$out" 2>/dev/null) == 1 ]]; then
		nm_pass "$name"
	else
		nm_fail "$name" "rc=$rc out=$(head -c 300 <<<"$out") err=$(head -c 300 "$NM_STATE/cli.err")"
	fi
}
ver='.version | type == "string"'
json_ok cli-json-version-before "$ver" "$cli" --json version
json_ok cli-json-version-after "$ver" "$cli" version --json
json_ok cli-json-version-pretty "$ver" "$cli" version --pretty
st='.instances | length == 1 and .[0].instance == $i1'
json_ok cli-json-status-before "$st" "$cli" --json status --instance "$inst1"
json_ok cli-json-status-middle "$st" "$cli" status --json --instance "$inst1"
json_ok cli-json-status-after "$st" "$cli" status --instance "$inst1" --json
json_ok cli-json-status-all '[.instances[].instance] | index($i1) != null' "$cli" -p status
mp='map(.name) | index("nm_agent_state") != null and index("nm_workloads") != null'
json_ok cli-json-maps-before "$mp" "$cli" --json maps --instance "$inst1"
json_ok cli-json-maps-after "$mp" "$cli" maps --instance "$inst1" --json
json_ok cli-json-ca-after '.spiffe_id == "spiffe://cli.test"' \
	"$cli" ca init --dir "$NM_STATE/cli-ca" --trust-domain cli.test --json

# --- exit statuses -------------------------------------------------------------
# exit_is NAME WANT CMD...: exit status WANT; with --json in CMD, stdout is
# {"error": "..."}.
exit_is() {
	local name=$1 want=$2 out rc json=0 a
	shift 2
	for a in "$@"; do [[ $a == --json ]] && json=1; done
	out=$("$@" 2>"$NM_STATE/cli.err")
	rc=$?
	if ((rc != want)); then
		nm_fail "$name" "exit $rc, want $want: $(head -c 300 "$NM_STATE/cli.err")"
	elif ((json)) && ! jq -e '.error | type == "string" and length > 0' <<<"$out" >/dev/null 2>&1; then
		nm_fail "$name" "no JSON error on stdout: $out"
	elif ((!json)) && [[ ! -s $NM_STATE/cli.err ]]; then
		nm_fail "$name" "no message on stderr"
	else
		nm_pass "$name"
	fi
}
exit_is cli-exit-no-command 2 "$cli"
exit_is cli-exit-unknown-command 2 "$cli" frobnicate
exit_is cli-exit-unknown-command-json 2 "$cli" frobnicate --json
exit_is cli-exit-unknown-option 2 "$cli" status --frobnicate
exit_is cli-exit-unknown-option-json 2 "$cli" --json status --frobnicate
exit_is cli-exit-extra-argument 2 "$cli" status extra
exit_is cli-exit-missing-value 2 "$cli" maps --instance
exit_is cli-exit-bad-instance 2 "$cli" maps --instance ../etc
exit_is cli-exit-version-extra 2 "$cli" version extra
exit_is cli-exit-no-such-instance 1 "$cli" status --instance "nosuch-$NM_RUN"
exit_is cli-exit-no-such-pins-json 1 "$cli" maps --json --instance "nosuch-$NM_RUN"
exit_is cli-exit-ca-missing-dir 2 "$cli" ca issue --out x --ns a --sa b

# --- status only reads -------------------------------------------------------------
trace=$NM_STATE/status.strace
strace -f -qq -o "$trace" \
	-e trace=bpf,socket,setsockopt,mkdir,mkdirat,rmdir,unlink,unlinkat,rename,renameat,renameat2,init_module,finit_module,open,openat,creat,truncate,ftruncate \
	"$cli" status >"$NM_STATE/status.txt" 2>&1
rc=$?
bad=$(grep -E 'bpf\(BPF_(PROG_LOAD|MAP_CREATE|LINK_CREATE|LINK_UPDATE|LINK_DETACH|PROG_ATTACH|PROG_DETACH|MAP_UPDATE_ELEM|MAP_DELETE_ELEM|MAP_LOOKUP_AND_DELETE|OBJ_PIN|BTF_LOAD|RAW_TRACEPOINT)' "$trace"
	grep -E '^[0-9]+ +(socket|setsockopt|mkdir|mkdirat|rmdir|unlink|unlinkat|rename|renameat|renameat2|init_module|finit_module|creat|truncate|ftruncate)\(' "$trace"
	grep -E '^[0-9]+ +open(at)?\(.*O_(WRONLY|RDWR|CREAT|TRUNC)' "$trace")
reads=$(grep -c 'bpf(BPF_OBJ_GET' "$trace")
if ((rc == 0)) && [[ -z $bad ]] && ((reads >= 4)); then
	nm_pass "status-syscalls ($reads pinned objects opened, nothing written)"
else
	nm_fail status-syscalls "rc=$rc, BPF_OBJ_GET calls $reads; forbidden: $(head -n 5 <<<"$bad" | tr '\n' ';')"
fi

snapshot() {
	find "$NM_CGROUP2" -xdev -type d 2>/dev/null | sort | md5sum
	awk '{print $1}' /proc/modules | sort | md5sum
	bpftool prog show -j 2>/dev/null | jq 'length'
	find /run/nodemesh "$NM_PIN_BASE" -maxdepth 2 2>/dev/null | sort | md5sum
}
same=0
for attempt in 1 2 3; do
	before=$(snapshot)
	"$cli" status >/dev/null 2>&1
	"$cli" --json status >/dev/null 2>&1
	after=$(snapshot)
	if [[ $before == "$after" ]]; then
		same=1
		break
	fi
done
if ((same)); then
	nm_pass "status-leaves-host (attempt $attempt)"
else
	nm_fail status-leaves-host "cgroups/modules/prog count/pins changed in 3 of 3 attempts: before [$before] after [$after]"
fi

# --- what status reports ---------------------------------------------------------------
abi=$("$cli" --json version | jq .abi)
# The links the datapath pins (connect4/6, sockops, strict inbound's ingress).
nlinks=$(find "$NM_PIN_BASE/$inst1" -maxdepth 1 -name 'link_*' | wc -l)
out=$("$cli" --json status --instance "$inst1")
if jq -e --argjson pid "$NM_AGENT_PID_1" --argjson abi "$abi" --argjson nl "$nlinks" '.instances[0] |
	.state == "running" and .pid == $pid and .agent.node == "node-1" and
	(.agent.listeners | length) > 0 and
	(.pins.links | length) == $nl and $nl >= 3 and
	all(.pins.links[]; .prog_id > 0 and .cgroup_id > 0) and
	.pins.maps >= 5 and .pins.agent_state.abi_version == $abi and
	(.pins.agent_state.heartbeat_age_ms | type) == "number" and
	.kernel.features.sock_addr == true and .kernel.features.cgroup_link == true' \
	<<<"$out" >/dev/null 2>&1 &&
	grep -q "^instance $inst1: running (pid $NM_AGENT_PID_1)" <("$cli" status --instance "$inst1"); then
	nm_pass status-running
else
	nm_fail status-running "$(head -c 1500 <<<"$out")"
fi

# Many empty instance directories beside a copy of the live one's.
stale=$NM_STATE/stale-run
mkdir -p "$stale/$inst1"
cp "$NM_AGENT_RUN_BASE/$inst1"/*.json "$stale/$inst1"/
(cd "$stale" && seq -f "stale%05g" 0 19999 | xargs mkdir)
out=$("$cli" --json status --run-dir "$stale")
if jq -e --arg i1 "$inst1" '[.instances[] | select(.instance == $i1 and .state == "running")] | length == 1' \
	<<<"$out" >/dev/null 2>&1; then
	nm_pass "status-many-stale ($(jq '.instances | length' <<<"$out") instances listed)"
else
	nm_fail status-many-stale "$inst1 not listed as running: $(jq -c '[.instances[] | {instance, state}] | .[:5]' <<<"$out" 2>&1 | head -c 500)"
fi
rm -rf "$stale"

nm_agent_stop 2 5
out=$("$cli" --json status --instance "$inst2")
if jq -e --argjson nl "$(find "$NM_PIN_BASE/$inst2" -maxdepth 1 -name 'link_*' | wc -l)" \
	'.instances[0] | .state == "stopped" and .agent == null and
	(.pins.links | length) == $nl and $nl >= 3' <<<"$out" >/dev/null 2>&1; then
	nm_pass status-stopped
else
	nm_fail status-stopped "$(head -c 1500 <<<"$out")"
fi
if [[ ! -e $NM_AGENT_RUN_BASE/$inst2 ]]; then
	nm_pass stop-removes-rundir
else
	nm_fail stop-removes-rundir "after SIGTERM (exit $NM_AGENT_RC) $NM_AGENT_RUN_BASE/$inst2 holds: $(find "$NM_AGENT_RUN_BASE/$inst2" | tr '\n' ' ')"
fi

((NM_FAILS == 0))
