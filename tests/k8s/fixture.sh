# SPDX-License-Identifier: Apache-2.0
# tests/k8s/fixture.sh - start, drive and stop the fixture Kubernetes API
# server from a bash test. Source it; the functions set and use NM_K8S_*.
#
#   nm_k8s_start DIR [serve options...]   start it (HTTPS unless --plain), wait
#                                         for DIR/ready and export its NM_K8S_*
#                                         and KUBERNETES_SERVICE_* variables
#   nm_k8s_ctl STEP-JSON|@FILE            run admin steps (prints the result)
#   nm_k8s_get /state|/requests[?since=N]|/objects?resource=R
#   nm_k8s_wait_watch RESOURCE [TIMEOUT_MS]  wait for a watch of RESOURCE
#                                         newer than the last nm_k8s_mark
#   nm_k8s_mark RESOURCE                  remember how many watches started
#   nm_k8s_stop                           kill the server (by its PID)
NM_K8S_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NM_K8S_PY=${NM_K8S_PY:-/usr/bin/python3}
NM_K8S_SERVER_PID=""
declare -gA NM_K8S_MARK=()

nm_k8s_start() {
	local dir=$1 i
	shift
	mkdir -p "$dir"
	rm -f "$dir/ready"
	"$NM_K8S_PY" "$NM_K8S_REPO/tests/k8s/apiserver.py" serve --dir "$dir" "$@" >"$dir.out" 2>&1 &
	NM_K8S_SERVER_PID=$!
	for i in $(seq 150); do
		[[ -f $dir/ready ]] && break
		kill -0 "$NM_K8S_SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ ! -f $dir/ready ]]; then
		echo "nm_k8s_start: server did not start: $(tail -n 5 "$dir.out" | tr '\n' ' ')" >&2
		nm_k8s_stop
		return 1
	fi
	set -a
	. "$dir/ready"
	set +a
}

nm_k8s_ctl() { "$NM_K8S_PY" "$NM_K8S_REPO/tests/k8s/apiserver.py" ctl "$NM_K8S_ADMIN" "$1"; }
nm_k8s_get() { "$NM_K8S_PY" "$NM_K8S_REPO/tests/k8s/apiserver.py" ctl "$NM_K8S_ADMIN" --get "$1"; }

nm_k8s_mark() {
	NM_K8S_MARK[$1]=$(nm_k8s_get /state | jq ".watchesStarted.$1")
}

nm_k8s_wait_watch() {
	local res=$1 ms=${2:-10000}
	nm_k8s_ctl "{\"op\":\"wait_watch\",\"resource\":\"$res\",\"started\":$((${NM_K8S_MARK[$res]:-0} + 1)),\"timeout_ms\":$ms}" >/dev/null
}

nm_k8s_stop() {
	if [[ -n $NM_K8S_SERVER_PID ]]; then
		kill "$NM_K8S_SERVER_PID" 2>/dev/null
		wait "$NM_K8S_SERVER_PID" 2>/dev/null
	fi
	NM_K8S_SERVER_PID=""
	return 0
}
