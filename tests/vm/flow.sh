#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# flow.sh -- the kernel matrix's full-flow check: one cross-node connection
# through two agents and the mTLS tunnel, built with the integration
# harness (tests/integration/lib/cluster.sh: netns + veth + bridges + a
# private cgroup v2 subtree, removed on exit).
#
# The client pod on node-1 sends 256 KiB to the echo service VIP; it must
# come back unchanged, node-1's agent must have taken the remote path, and
# node-2's agent must have verified the client's SPIFFE ID. Kept small:
# under TCG every TLS handshake and copy is ~20x slower than on the host.
# Then the same-node relay once per mesh.relay mode (below), ~10 s each.
#
# Layout (mkinitramfs.sh builds it; run.sh uses the same on the host):
#   <dir>/flow.sh  <dir>/integration/lib/cluster.sh  <dir>/../bin/{nodemeshd,nodemesh,nm_peer}
# Prints "FLOW PASS" or "FLOW FAIL: reason" as its last line.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$here/../bin" && pwd)
export NODEMESHD=${NODEMESHD:-$bin/nodemeshd}
export NODEMESH=${NODEMESH:-$bin/nodemesh}
export NM_PEER=${NM_PEER:-$bin/nm_peer}
# Flow open/close lines are debug-level: the check below reads them.
export NM_AGENT_LOG_LEVEL=${NM_AGENT_LOG_LEVEL:-debug}
# shellcheck source=../integration/lib/cluster.sh
. "$here/integration/lib/cluster.sh"

bytes=${NM_VM_FLOW_BYTES:-262144}
client_id=spiffe://cluster.local/ns/default/sa/client

flow_fail() {
	local m
	echo "FLOW FAIL: $*"
	nm_dump_logs 15 2>&1
	# The datapath's view of node-1, for kernel-specific failures.
	if command -v bpftool >/dev/null; then
		for m in nm_orig_cookie nm_orig_tuple nm_wl_stats nm_agent_state; do
			echo "--- node-1 $m"
			bpftool map dump pinned "$NM_PIN_BASE/$(nm_instance 1)/$m" 2>&1 | head -n 40
		done
	fi
	exit 1
}

nm_require_bins vm-flow
nm_cluster_init
nm_cluster_up || flow_fail "cluster setup failed"

out=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes "$bytes" --timeout-ms 60000)
[[ $(nm_json "$out" match) == true && $(nm_json "$out" bytes_received) == "$bytes" ]] ||
	flow_fail "client -> 198.19.0.10:80: $out"
src=$(nm_json "$out" local)
line=$(nm_flow_line "$(nm_agent_log 1)" outbound src "$src" 10) ||
	flow_fail "no outbound flow line for src=$src on node-1"
[[ $(nm_kv "$line" path) == remote ]] || flow_fail "node-1 path is not remote: $line"
flow=$(nm_kv "$line" flow)
in_line=$(nm_flow_line "$(nm_agent_log 2)" inbound flow "$flow" 10) ||
	flow_fail "no inbound flow line for flow $flow on node-2"
[[ $(nm_kv "$in_line" peer_id) == "$client_id" ]] ||
	flow_fail "node-2 verified '$(nm_kv "$in_line" peer_id)', want $client_id"

# The plaintext relay modes (mesh.relay, docs/architecture.md "Zero-copy
# relay") on this kernel: node-1's agent restarted per mode with the kernel
# path off, so the same-node service goes client -> agent -> local-echo;
# each mode must run (agent.json paths.relay), carry the bytes both ways
# unchanged, and the bulk flow itself must have run in it (its close line's
# relay=). Five runs per mode, the median printed with its ratio to copy
# in the same boot (under TCG the figures are the emulator's, not a CPU's;
# bench/mesh.sh measures on real CPUs). With each median the CPU the run
# took: node-1's agent (its cgroup's cpu.stat) per MiB it relayed (both
# ways; what zero-copy saves) and as a share of all the VM's busy CPU in
# the run, and that busy CPU (/proc/stat, of 100 % per vCPU; the client's
# start is in it). sockmap's redirects run in softirq and the psock's
# kworker, outside the agent's cgroup: only the VM figure counts them.
# When the VM is busy throughout, a relay that saves a fraction s of the
# agent's CPU, itself a share f of the VM's, speeds the run up by at most
# 1 / (1 - f * s).
relay_bytes=${NM_VM_RELAY_BYTES:-16777216}
relay_runs=${NM_VM_RELAY_RUNS:-5}
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; } # A/B
# cpu_now -> "AGENT_US BUSY_TICKS ALL_TICKS": node-1's agent's CPU µs; the
# VM's non-idle and all CPU ticks, summed over its CPUs
cpu_now() {
	cat "$NM_CG/agent-1/cpu.stat" 2>/dev/null | awk '$1 == "usage_usec" { u = $2 } END { printf "%d ", u }'
	awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat
}
ncpu=$(grep -c '^cpu[0-9]' /proc/stat)
# relay_measure MODE EXEC TO: $relay_runs echoes of $relay_bytes with EXEC
# (nm_pod_exec or nm_outside_exec) from the client to TO; a relay MODE's
# flows must have run on it (their close lines on node-1). Prints the RELAY
# line, its median into $ms.
relay_measure() { # MODE EXEC TO [LABEL: what the RELAY line calls it]
	local mode=$1 exec=$2 to=$3 label=${4:-$1} run out src line el a0 b0 t0 a1 b1 t1 u p t vs=
	local times= agent_us_mib= agent_pct= all_pct=

	for ((run = 0; run < relay_runs; run++)); do
		read -r a0 b0 t0 <<<"$(cpu_now)"
		out=$("$exec" client "$NM_PEER" send --to "$to" --bytes "$relay_bytes" --timeout-ms 120000)
		read -r a1 b1 t1 <<<"$(cpu_now)"
		[[ $(nm_json "$out" match) == true ]] || flow_fail "relay $mode: client -> $to: $out"
		if [[ $mode != direct ]]; then
			src=$(nm_json "$out" local)
			line=$(nm_flow_line "$(nm_agent_log 1)" outbound src "$src" 10) &&
				line=$(nm_close_line "$(nm_agent_log 1)" "$(nm_kv "$line" flow)" 10) ||
				flow_fail "relay $mode: no close line for $src"
			[[ $(nm_kv "$line" relay) == "$mode" ]] ||
				flow_fail "relay $mode: the flow ran on another relay: $line"
		fi
		el=$(nm_json "$out" elapsed_ms)
		times+=" $el"
		read -r u p t <<<"$(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v all=$((t1 - t0)) -v n="$ncpu" \
			-v mib="$((2 * relay_bytes / 1048576))" 'BEGIN {
				# USER_HZ is 100 on x86: a tick is 10000 us. (A bare ">"
				# among printf arguments would redirect its output.)
				per_mib = mib > 0 ? a / mib : 0
				of_vm = b > 0 ? a / (100 * b) : 0
				busy = all > 0 ? 100 * n * b / all : 0
				printf "%d %.0f %.0f\n", per_mib, of_vm, busy }')"
		agent_us_mib+=" $u" agent_pct+=" $p" all_pct+=" $t"
	done
	ms=$(median <<<"$times")
	[[ -n $copy_ms ]] && vs=" vs_copy=$(ratio "$copy_ms" "$ms")x"
	echo "RELAY mode=$label bytes=$relay_bytes each way runs=$relay_runs elapsed_ms=$ms (all:$times)$vs" \
		"agent_cpu_us_per_mib=$(median <<<"$agent_us_mib") agent_of_vm_cpu=$(median <<<"$agent_pct")%" \
		"vm_cpu=$(median <<<"$all_pct")%"
}
# The ceiling first: the same echo unmeshed (client netns, outside the
# pod's cgroup) straight to local-echo's pod IP. No relay beats it.
copy_ms= ms=
nm_pod_info local-echo
relay_measure direct nm_outside_exec "$NM_P_IP:8080"
direct_ms=$ms
for mode in ${NM_VM_RELAY_MODES-copy splice sockmap}; do
	label=$mode
	sed -i "s/\"failMode\": \"closed\"[^}]*}/\"failMode\": \"closed\", \"relay\": \"$mode\", \"kernelPath\": false }/" \
		"$NM_STATE/cluster.json"
	nm_agent_stop 1
	nm_agent_start 1 || flow_fail "agent node-1 did not start with mesh.relay $mode"
	got=$(tr -d ' \n\t' <"/run/nodemesh/$(nm_instance 1)/agent.json" | grep -o '"relay":{[^}]*}')
	# Before 5.13 the agent does not offer sockmap (datapath/probe.h,
	# NM_PROBE_RELAY_TOO_OLD): it must splice and say so, and the flow
	# then runs on splice like any fallback.
	if [[ $mode == sockmap && $got == *'"mode":"splice"'* && $got == *kernelbefore5.13* ]]; then
		echo "RELAY mode=sockmap not offered, spliced: $got"
		mode=splice label=sockmap_as_splice
	fi
	[[ $got == *"\"mode\":\"$mode\""* ]] || flow_fail "mesh.relay $mode runs: $got"
	# Every mode's 16 MiB echoes are checked byte for byte (nm_peer): for
	# sockmap the workload on which overlapping retransmissions once came
	# out twice (bpf/nm_relay.bpf.h, nm_relay_trim).
	relay_measure "$mode" nm_pod_exec 198.19.0.11:80 "$label"
	if [[ $mode == copy ]]; then
		copy_ms=$ms
		echo "RELAY ceiling: unmeshed is $(ratio "$copy_ms" "$direct_ms")x the copy relay's throughput"
	fi
done
echo "FLOW PASS bytes=$bytes flow=$flow"

# --- kTLS (issue 14): the same cluster, where the kernel has the tls ULP.
# Byte-exact through kTLS TX+RX both ways (status: active, flows > 0), the
# tunnel legs spliced by both agents (close lines' relay=splice, in at least
# one of the echoes; none with mesh.relay copy), half-close
# and reset through them, then node-2 with mesh.ktls off (plain OpenSSL)
# against node-1's kTLS, and the echo throughput (medians of $relay_runs
# runs) with kTLS + splice, with kTLS + the copy relay, and with both off.
# Prints "KTLS PASS ..." / "KTLS FAIL: ..." / "KTLS SKIP: ...".
# NM_VM_KTLS_BYTES: bytes per throughput run.
ktls_fail() { echo "KTLS FAIL: $*"; nm_dump_logs 40 2>&1; exit 1; }
path_row() { # NODE PATH -> NAME ACTIVE MODE FLOWS REASON...
	"$NODEMESH" status --instance "$(nm_instance "$1")" 2>/dev/null |
		awk -v p="$2" '$1 == p { print; exit }'
}
# echo_ok BYTES [TAG] -> elapsed ms, or fails. With TAG: the relays that
# the flow's close lines on node-1 (outbound) and node-2 (inbound) name go
# into $NM_STATE/relays-TAG as "node-1=R1 node-2=R2". A flow reaches the
# kernel relay only once its buffers are empty after the kTLS switch, so
# one flow of a busy echo may stay on copy: callers count (spliced TAG).
echo_ok() {
	local o src id l n got=
	o=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes "$1" --timeout-ms 120000)
	[[ $(nm_json "$o" match) == true && $(nm_json "$o" bytes_received) == "$1" ]] || return 1
	if (($# == 2)); then
		src=$(nm_json "$o" local)
		l=$(nm_flow_line "$(nm_agent_log 1)" outbound src "$src" 10) || return 1
		id=$(nm_kv "$l" flow)
		for n in 1 2; do
			l=$(nm_close_line "$(nm_agent_log "$n")" "$id" 10) || return 1
			got+="${got:+ }node-$n=$(nm_kv "$l" relay)"
		done
		echo "$got" >>"$NM_STATE/relays-$2"
	fi
	nm_json "$o" elapsed_ms
}
spliced() { # TAG -> how many of its flows both nodes spliced
	grep -c '^node-1=splice node-2=splice$' "$NM_STATE/relays-$1" 2>/dev/null || true
}
echo_med() { # BYTES [TAG] -> median elapsed ms of $relay_runs runs, or fails
	local t all=
	for ((run = 0; run < relay_runs; run++)); do
		t=$(echo_ok "$@") || return 1
		all+=" $t"
	done
	median <<<"$all"
}
restart() { # NODE CONFIG
	nm_agent_stop "$1"
	nm_agent_start "$1" --config "$2" || ktls_fail "node-$1 did not restart with $2"
}
if ! grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; then
	read -r _ _ _ _ why <<<"$(path_row 1 ktls)"
	# The fallback is the agent's own record layer (mesh/records.c): one
	# more byte-exact echo through the tunnel (the relay checks above
	# restarted node-1), and both nodes must count it.
	echo_ok "$bytes" >/dev/null || ktls_fail "echo through the agent's records failed"
	sleep 1.5 # the heartbeat rewrites agent.json at most once a second
	for n in 1 2; do
		row=$(path_row "$n" agent_records)
		read -r _ active mode flows _ <<<"$row"
		[[ $active == yes && $mode == agent && $flows =~ ^[0-9]+$ ]] && ((flows > 0)) ||
			ktls_fail "no tls ULP, and node-$n is not on the agent's records: '$row'"
	done
	echo "KTLS SKIP: no tls ULP in this kernel (agent: $why; both nodes on the agent's TLS records)"
	exit 0
fi
for n in 1 2; do
	read -r _ active mode _ <<<"$(path_row "$n" ktls)"
	[[ $active == yes && $mode == tx+rx ]] || ktls_fail "node-$n ktls: $(path_row "$n" ktls)"
done
kbytes=${NM_VM_KTLS_BYTES:-4194304}
echo_ok "$kbytes" >/dev/null || ktls_fail "$kbytes bytes through kTLS did not echo intact"
closer=$bin/nm_closer
nm_pod_spawn echo closer-echo "$closer" serve --port 9000
nm_pod_info echo
nm_wait_listen "$NM_P_NS" 9000 10 || ktls_fail "closer in echo did not listen"
to="$(nm_pod_ip echo):9000"
# close_stuck: where a stalled flow's bytes are. The sockets of both
# nodes (queues, kTLS ULP) and every line either agent logged about the
# last flow to port 9000.
close_stuck() {
	local n id
	for n in 1 2; do
		echo "--- node-$n sockets"
		ip netns exec "$(nm_node_ns "$n")" ss -tnie 2>&1 | head -n 60
		ip netns exec "$(nm_node_ns "$n")" cat /proc/net/tcp 2>&1 | head -n 30
	done
	id=$(grep 'msg="flow open" dir=outbound' "$(nm_agent_log 1)" | grep ':9000 ' | tail -n 1 | sed -n 's/.* flow=\([0-9]*\) .*/\1/p')
	for n in 1 2; do
		echo "--- node-$n flow $id"
		grep -- "flow=$id" "$(nm_agent_log "$n")"
	done
}
close_checks() { # LABEL
	local o
	o=$(nm_pod_exec client "$closer" halfclose --to "$to" --bytes 300000 2>&1)
	[[ $o == *'answer "got 300000"'* ]] || { close_stuck; ktls_fail "$1 halfclose: $o"; }
	o=$(nm_pod_exec client "$closer" reset --to "$to" 2>&1)
	[[ $o == *ECONNRESET* ]] || ktls_fail "$1 server reset: $o"
}
# A stall showed in 2 of 7 half-closed flows before short splices into a
# kTLS socket pushed the record they left open (nm_ktls_push), and in about
# 1 of 5 interop half-closes before the agent pushed the tail TCP held
# unsent (nm_ktls_tcp_push): repeat.
for ((rep = 0; rep < ${NM_VM_CLOSE_REPS:-10}; rep++)); do close_checks ktls; done
sleep 1.5 # agent.json is rewritten at most once a second
for n in 1 2; do
	read -r _ _ _ flows _ <<<"$(path_row "$n" ktls)"
	((flows > 0)) || ktls_fail "node-$n switched no flow to kTLS: $(path_row "$n" ktls)"
done
# Both agents relay with kTLS and the zero-copy relay (node-1 mesh.relay
# sockmap, node-2 auto: a kTLS leg is spliced).
t_on=$(echo_med "$kbytes" on) || ktls_fail "throughput run (kTLS, splice) did not echo intact"
(($(spliced on) >= 1)) || ktls_fail "no kTLS echo was spliced by both agents: $(tr '\n' ';' <"$NM_STATE/relays-on")"
# Interop: node-2 on plain OpenSSL, node-1 still kTLS and splicing.
sed 's/"failMode": "closed"/"failMode": "closed", "ktls": "off"/' "$NM_STATE/cluster.json" \
	>"$NM_STATE/cluster-noktls.json"
restart 2 "$NM_STATE/cluster-noktls.json"
read -r _ active mode _ why <<<"$(path_row 2 ktls)"
[[ $active == no && $why == "mesh.ktls is off" ]] || ktls_fail "node-2 with ktls off: $(path_row 2 ktls)"
echo_ok 1048576 >/dev/null || ktls_fail "kTLS node-1 <-> OpenSSL node-2 did not echo intact"
for ((rep = 0; rep < ${NM_VM_CLOSE_REPS:-10}; rep++)); do close_checks interop; done
# Everything off: OpenSSL records, copy relay.
restart 1 "$NM_STATE/cluster-noktls.json"
t_off=$(echo_med "$kbytes") || ktls_fail "throughput run (ktls off) did not echo intact"
# kTLS with the copy relay: what splice adds on top of kTLS.
sed 's/"failMode": "closed"[^}]*}/"failMode": "closed", "relay": "copy" }/' "$NM_STATE/cluster.json" \
	>"$NM_STATE/cluster-ktls-copy.json"
restart 1 "$NM_STATE/cluster-ktls-copy.json"
restart 2 "$NM_STATE/cluster-ktls-copy.json"
t_kcopy=$(echo_med "$kbytes" kcopy) || ktls_fail "throughput run (kTLS, copy relay) did not echo intact"
mbps() { echo $((2 * $1 * 8 / 1000 / ($2 > 0 ? $2 : 1))); }
(($(spliced kcopy) == 0)) || ktls_fail "mesh.relay copy spliced: $(tr '\n' ';' <"$NM_STATE/relays-kcopy")"
echo "KTLS PASS spliced=$(spliced on)/$relay_runs bytes=$kbytes runs=$relay_runs echo_mbit_s_ktls=$(mbps "$kbytes" "$t_on") echo_mbit_s_ktls_copy=$(mbps "$kbytes" "$t_kcopy") echo_mbit_s_off=$(mbps "$kbytes" "$t_off") on_vs_off=$(ratio "$t_off" "$t_on")x ms_ktls=$t_on ms_ktls_copy=$t_kcopy ms_off=$t_off"
