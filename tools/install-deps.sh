#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# install-deps.sh -- install every Debian 12 package that building, testing,
# benchmarking and the demo need. Idempotent: it skips apt when all packages
# are already present, so `make demo` and `make check` can call it every time.
set -euo pipefail

PKGS=(
	# build
	make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
	libssl-dev libjansson-dev check libnl-3-dev libnl-route-3-dev
	libclang-rt-14-dev
	# runtime and tests
	openssl iproute2 util-linux procps tcpdump socat coreutils
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

if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx and haproxy start system services on install; the benchmarks run
# their own instances, so stop the packaged ones where an init system exists.
for svc in nginx haproxy stunnel4; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$svc" 2>/dev/null; then
		systemctl stop "$svc" || true
	fi
done
# Without systemd, nginx's postinst may have started a daemon on :80 anyway.
pkill -x nginx 2>/dev/null || true
pkill -x haproxy 2>/dev/null || true
