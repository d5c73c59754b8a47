#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_02_capture - scenario 2: a capture on the node-to-node link during a
# 1 MiB meshed transfer holds well-formed TLS streams on port 15008 (records
# start with a handshake, application data is record type 0x17 with version
# 0x0303, and at least 1 MiB of application data went each way), and none of
# the payload bytes appear anywhere in the capture (any aligned 32-byte chunk
# would be found). Control: a plain unmeshed transfer across the same link
# in the same capture IS found, so the search would see cleartext.
set -uo pipefail
. "$(dirname "$0")/lib/cluster.sh"

command -v tcpdump >/dev/null || { nm_fail capture "tcpdump missing (make deps)"; exit 1; }
nm_scenario_up capture
pcap=$NM_STATE/link.pcap
n=1048576

# --immediate-mode: without it packets wait in a ring block for up to a
# second and whatever is still there when tcpdump stops is never written.
nm_node_spawn 1 tcpdump tcpdump -i "${NM_RUN}l1" --immediate-mode -n -s 0 -B 16384 -U -Z root -w "$pcap" tcp
tcpdump_pid=$NM_LAST_PID
nm_wait_file_match "$NM_STATE/tcpdump.err" "listening on" 5 ||
	{ nm_fail capture "tcpdump did not start: $(cat "$NM_STATE/tcpdump.err")"; exit 1; }

meshed=$(nm_pod_exec client "$NM_PEER" send --to 198.19.0.10:80 --bytes "$n" \
	--timeout-ms 20000 --dump-sent "$NM_STATE/meshed.bin")
plain=$(nm_outside_exec client "$NM_PEER" send --to "$(nm_pod_ip echo):8080" --bytes 256K \
	--timeout-ms 20000 --dump-sent "$NM_STATE/plain.bin")
sleep 0.3
kill -INT "$tcpdump_pid" 2>/dev/null
for ((i = 0; i < 100; i++)); do
	kill -0 "$tcpdump_pid" 2>/dev/null || break
	sleep 0.05
done
tcpdump_stat() { grep -Eo "[0-9]+ packets $1" "$NM_STATE/tcpdump.err" | awk '{print $1}'; }
captured=$(tcpdump_stat captured) received=$(tcpdump_stat "received by filter") dropped=$(tcpdump_stat "dropped by kernel")

if [[ $(nm_json "$meshed" match) != true ]]; then
	nm_fail capture "the meshed transfer itself failed: $meshed"
	nm_dump_logs
	exit 1
fi

# Every packet that crossed the link is in the file, or "never the payload"
# would mean nothing.
if [[ -n $captured && $captured == "$received" && $dropped == 0 ]]; then
	nm_pass "capture-complete ($captured packets)"
else
	nm_fail capture-complete "tcpdump captured ${captured:-?} of ${received:-?} packets, ${dropped:-?} dropped by the kernel"
fi

rec=$("$NM_PEER" tlsrec --pcap "$pcap" --port 15008 --min-bytes "$n")
if [[ $? -eq 0 ]]; then
	nm_pass capture-tls-records
else
	nm_fail capture-tls-records "tlsrec: $rec"
fi

hit=$("$NM_PEER" find --haystack "$pcap" --needles "$NM_STATE/meshed.bin" --chunk 32)
case $? in
1) nm_pass capture-no-plaintext ;;
0) nm_fail capture-no-plaintext "payload bytes found in the link capture: $hit" ;;
*) nm_fail capture-no-plaintext "search failed: $hit" ;;
esac

if [[ $(nm_json "$plain" match) == true ]] &&
	"$NM_PEER" find --haystack "$pcap" --needles "$NM_STATE/plain.bin" --chunk 32 >/dev/null; then
	nm_pass capture-control-cleartext-visible
else
	nm_fail capture-control-cleartext-visible "unmeshed payload not found in the capture (plain: $plain)"
fi
exit $((NM_FAILS > 0))
