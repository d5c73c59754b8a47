#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_25_demo - the README's main job (`make demo` = demo.sh run) works
# and explains each connection from both agents' logs:
#   demo-exit-0        demo.sh run exits 0 and says "demo OK"
#   demo-cross-node    flow [1] names the remote path and all four identity
#                      lines (presented and verified on both nodes)
#   demo-same-node     flow [2] is the node-local plaintext relay
#   demo-no-failure    no "FAILED" line anywhere
#   demo-cleaned-up    nothing of the demo run is left (namespaces, pins)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pass() { printf 'PASS %s\n' "$1"; }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; FAILS=$((FAILS + 1)); }
FAILS=0
base=$(mktemp -d /run/nodemesh-demo-test.XXXXXX)
out=$base/demo.out
trap 'NM_DEMO_STATE_BASE=$base "$here/demo.sh" down >/dev/null 2>&1; rm -rf "$base"' EXIT

before_ns=$(ip netns list | wc -l)
NM_DEMO_STATE_BASE=$base timeout 180 "$here/demo.sh" run >"$out" 2>&1
rc=$?
if [[ $rc -eq 0 ]] && grep -q '^demo OK' "$out"; then
	pass demo-exit-0
else
	fail demo-exit-0 "rc=$rc: $(tail -n 5 "$out" | tr '\n' ' ')"
fi
one=$(sed -n '/^\[1\]/,/^\[2\]/p' "$out")
if grep -q 'path      remote: TLS 1.3 tunnel node-1 -> node-2' <<<"$one" &&
	grep -q 'node-1 agent presented spiffe://cluster.local/ns/default/sa/client' <<<"$one" &&
	grep -q 'node-1 agent verified the server is spiffe://cluster.local/ns/default/sa/echo' <<<"$one" &&
	grep -q 'node-2 agent verified the client is spiffe://cluster.local/ns/default/sa/client' <<<"$one" &&
	grep -q 'node-2 agent presented spiffe://cluster.local/ns/default/sa/echo' <<<"$one"; then
	pass demo-cross-node
else
	fail demo-cross-node "flow [1]: $(tr '\n' ' ' <<<"$one")"
fi
two=$(sed -n '/^\[2\]/,/^\[3\]/p' "$out")
if grep -q 'path      local: plaintext relay inside node-1' <<<"$two"; then
	pass demo-same-node
else
	fail demo-same-node "flow [2]: $(tr '\n' ' ' <<<"$two")"
fi
if grep -q 'FAILED' "$out"; then
	fail demo-no-failure "$(grep FAILED "$out" | head -n 3 | tr '\n' ' ')"
else
	pass demo-no-failure
fi
after_ns=$(ip netns list | wc -l)
if ((after_ns <= before_ns)) && ! compgen -G "$base/run/nm*" >/dev/null; then
	pass demo-cleaned-up
else
	fail demo-cleaned-up "namespaces $before_ns -> $after_ns; $(ls "$base/run" 2>/dev/null)"
fi
((FAILS)) && { echo "--- demo output"; cat "$out"; }
exit $((FAILS > 0))
