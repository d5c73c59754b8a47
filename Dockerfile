# SPDX-License-Identifier: Apache-2.0
# nodemesh image: nodemeshd (the node agent) and nodemesh (the CLI) on Debian 12.
# Built by `docker build -t nodemesh/nodemesh:TAG .` (not part of make check:
# there is no registry here; tests/integration/test_21_helm.sh lints this file).

# --- build ------------------------------------------------------------------
FROM debian:12-slim AS build
# The build half of tools/install-deps.sh's PKGS: the compiler, clang/llvm and
# bpftool for the BPF objects and skeletons, and the -dev packages of the
# libraries the Makefile's pkg-config PKGS name.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev \
      libssl-dev libjansson-dev libnl-3-dev libnl-route-3-dev libyaml-dev libcurl4-openssl-dev libnftables-dev libmicrohttpd-dev check \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include/ include/
COPY bpf/ bpf/
COPY lib/ lib/
COPY agent/ agent/
COPY tools/ tools/
# Only the two programs (make's targets for $(OUT)/nodemeshd and
# $(OUT)/nodemesh); vmlinux.h comes from the build host's BTF, or the vendored
# copy without one: CO-RE relocates field offsets at load time on each node.
RUN make -j"$(nproc)" OUT=/out /out/nodemeshd /out/nodemesh \
 && make OUT=/out PREFIX=/usr DESTDIR=/install install

# --- runtime ----------------------------------------------------------------
FROM debian:12-slim
# Only the shared libraries the two programs link (libbpf, libelf, zlib,
# OpenSSL, jansson, libnl-3/libnl-route-3, libyaml, libcurl for the Kubernetes watch,
# libnftables for source preservation, libmicrohttpd for the metrics and
# admin servers); no compiler, no bpftool.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 libelf1 zlib1g libssl3 libjansson4 libnl-3-200 libnl-route-3-200 libyaml-0-2 libcurl4 libnftables1 libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /install/usr/sbin/nodemeshd /usr/sbin/nodemeshd
COPY --from=build /install/usr/bin/nodemesh /usr/bin/nodemesh
# The agent starts as root and is given CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN
# and CAP_SYS_RESOURCE by the DaemonSet: loading and pinning BPF programs and
# maps under /sys/fs/bpf, attaching them at the host's cgroup root, reading
# the host's netlink and /proc, and raising RLIMIT_NOFILE all need them, and
# bpffs pins and the host cgroup tree are owned by root. After set-up the
# agent drops every capability (README "Requirements"), so the process that
# handles traffic holds none. The CLI (`kubectl exec ... nodemesh status`)
# needs no privilege beyond reading the pins and /run/nodemesh. USER stays 0
# because a non-root uid would lose the added capabilities at exec (no
# ambient capabilities are set by Kubernetes).
USER 0:0
ENTRYPOINT ["/usr/sbin/nodemeshd"]
