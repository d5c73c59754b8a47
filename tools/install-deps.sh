#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# install-deps.sh -- install every Debian 12 package that building, testing,
# benchmarking and the demo need. Idempotent: it skips apt when all packages
# are already present, so it is safe to run before every `make`.
#
# It never stops or kills anything. Packaged services (nginx, haproxy,
# stunnel4) are kept from starting during the install by a temporary
# policy-rc.d that answers "action forbidden" (exit 101, see invoke-rc.d(8));
# the file is removed again on exit, and one that was already there is kept.
set -euo pipefail

PKGS=(
	# build
	make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
	libssl-dev libjansson-dev check libnl-3-dev libnl-route-3-dev libyaml-dev
	libclang-rt-14-dev libcurl4-openssl-dev libmicrohttpd-dev
	# source preservation: the reply mark (nft socket match) through libnftables
	libnftables-dev nftables
	# runtime and tests
	openssl iproute2 util-linux procps tcpdump socat coreutils
	python3 python3-kubernetes nodejs unzip curl
	# promtool (package prometheus) checks the metrics text format
	prometheus
	# a real Prometheus text parser for the telemetry test (/usr/bin/python3)
	python3-prometheus-client
	# benchmarks
	sockperf iperf3 haproxy nginx libnginx-mod-stream stunnel4 jq
	# kernel matrix
	qemu-system-x86 busybox-static cpio xz-utils zstd kmod
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done

[[ ${#missing[@]} -eq 0 ]] && exec "$(dirname "$0")/install-npm-tools.sh"
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi

policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# nodemesh install-deps: no service starts during install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi
remove_policy() { [[ $own_policy -eq 1 ]] && rm -f "$policy"; return 0; }
trap remove_policy EXIT

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
"$(dirname "$0")/install-npm-tools.sh"
