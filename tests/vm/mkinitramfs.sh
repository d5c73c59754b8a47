#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# mkinitramfs.sh -- build the kernel-matrix initramfs: busybox-static, /init
# (tests/vm/init.sh), the test sequence (tests/vm/vm-tests.sh), statically
# linked test binaries, the BPF objects, and each kernel's modules.
#
#   tests/vm/mkinitramfs.sh [-o OUT.cpio.gz] KERNEL_DIR...
#
# KERNEL_DIR is what fetch-kernel.sh unpacked ($NM_VM_CACHE/kernels/<ver>);
# one image serves every kernel: modules sit under /nm/modules/<release>/ and
# /init picks them by `uname -r`.
#
# Static binaries are built here, into $NM_VM_OUT/bin, from the objects of
# the regular build ($NM_OUT, default build/): the Makefile links
# dynamically, and the VM has no libraries for them.
#   vmprobe        tests/vm/vmprobe.c + agent/probe.c (always)
#   test_*         tests/bpf/test_*.c + $NM_OUT/libnmagent.a (when built)
#   nodemeshd      $NM_OUT/nodemeshd with its shared libraries (libcurl has
#                  no static closure on Debian)
#   nodemesh       $NM_OUT/nodemesh with its shared libraries (libcurl too: `nodemesh flows`)
#   nm_peer        tests/tools/nm_peer.c (the flow's client and echo server)
# The full-flow harness is bash + iproute2: those and their shared libraries
# (from ldd) are copied from the host into /host (see HOST_TOOLS).
set -euo pipefail

cd "$(dirname "$0")/../.."
NM_OUT=${NM_OUT:-build}
VMOUT=${NM_VM_OUT:-$NM_OUT/vm}
OUTIMG=$VMOUT/initramfs.cpio.gz
while getopts o: opt; do
	case $opt in
	o) OUTIMG=$OPTARG ;;
	*) echo "usage: $0 [-o OUT] KERNEL_DIR..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || { echo "mkinitramfs: no kernel directories given" >&2; exit 2; }

# Host programs copied with their libraries: the full-flow harness is bash
# and needs iproute2 (busybox `ip` has no netns or bridge support), nsenter,
# ss and findmnt; the BPF tests dump maps with bpftool. Everything else the
# scripts call (awk, grep, od, stat, find, sysctl, timeout...) is busybox.
HOST_TOOLS=(bash ip ss nsenter findmnt)
HOST_TOOLS_OPTIONAL=(bpftool)

log() { printf 'mkinitramfs: %s\n' "$*" >&2; }

PKGS="libbpf libelf zlib openssl jansson libnl-3.0 libnl-route-3.0 yaml-0.1"
# shellcheck disable=SC2086 # PKGS is a word list
CFLAGS_VM="-O2 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fno-strict-aliasing
	-D_GNU_SOURCE -Iinclude -I. -Iagent -I$NM_OUT $(pkg-config --cflags $PKGS)"
# shellcheck disable=SC2086
STATIC_LIBS=$(pkg-config --static --libs $PKGS)
CHECK_STATIC=$(pkg-config --static --cflags --libs check)

# newer TARGET DEP...: true when TARGET is missing or older than a DEP
newer() {
	local t=$1 d; shift
	[[ -e $t ]] || return 0
	for d; do [[ $d -nt $t ]] && return 0; done
	return 1
}

link_static() { # out srcs/objs...
	local out=$1; shift
	log "static $out"
	# glibc warns that getaddrinfo/dlopen in a static binary need the
	# host's glibc at run time: only OpenSSL's unused paths call them.
	# shellcheck disable=SC2086
	gcc $CFLAGS_VM -static "$@" $STATIC_LIBS -o "$out.tmp" 2> "$VMOUT/logs/$(basename "$out").log" || {
		tail -n 5 "$VMOUT/logs/$(basename "$out").log" >&2; rm -f "$out.tmp"; return 1; }
	strip --strip-debug "$out.tmp"
	mv "$out.tmp" "$out"
}

build_static() {
	local bin=$VMOUT/bin src name
	mkdir -p "$bin" "$VMOUT/logs"
	if newer "$bin/vmprobe" tests/vm/vmprobe.c agent/datapath/probe.c agent/datapath/probe.h lib/log.c lib/mountinfo.c; then
		link_static "$bin/vmprobe" tests/vm/vmprobe.c agent/datapath/probe.c lib/log.c lib/mountinfo.c
	fi
	local lib=$NM_OUT/libnmagent.a
	# The agent library, then what it and the tests call in lib/ and the dev CA.
	local libs=("$lib" "$NM_OUT/tools/devca.o" "$NM_OUT/libnm.a")
	for src in tests/bpf/test_*.c; do
		[[ -e $src ]] || continue
		name=$(basename "$src" .c)
		if [[ ! -e $lib ]]; then
			log "skip $name: $lib not built (run make first)"
			continue
		fi
		if newer "$bin/$name" "$src" "$lib"; then
			# shellcheck disable=SC2086
			link_static "$bin/$name" $CHECK_STATIC "$src" "${libs[@]}" $CHECK_STATIC ||
				log "skip $name: static link failed"
		fi
	done
	for src in tests/tools/*.c; do
		[[ -e $src && -e $lib ]] || continue
		name=$(basename "$src" .c)
		if newer "$bin/$name" "$src" "$lib"; then
			link_static "$bin/$name" "$src" "${libs[@]}" || log "skip $name: static link failed"
		fi
	done
	if [[ -e $lib && -e $NM_OUT/agent/core/main.o ]]; then
		# The agent links libcurl (the Kubernetes source), which Debian
		# ships without a static closure: the VM gets the dynamically
		# linked agent and its libraries (stage() copies every ldd
		# closure of nm/bin, as it does for the host tools).
		if [[ -x $NM_OUT/nodemeshd ]] && newer "$bin/nodemeshd" "$NM_OUT/nodemeshd"; then
			install -m 0755 "$NM_OUT/nodemeshd" "$bin/nodemeshd"
		fi
	fi
	# The CLI links libcurl too (`nodemesh flows`): like the agent, the VM
	# gets the dynamically linked one and its ldd closure.
	if [[ -x $NM_OUT/nodemesh ]] && newer "$bin/nodemesh" "$NM_OUT/nodemesh"; then
		install -m 0755 "$NM_OUT/nodemesh" "$bin/nodemesh"
	fi
	return 0
}

# Copies a dynamically linked host program and its ldd closure into root.
copy_host_tool() { # root name required
	local root=$1 name=$2 path lib
	path=$(command -v "$name" 2>/dev/null || true)
	if [[ -z $path ]]; then
		[[ $3 == yes ]] && { log "host tool $name missing"; return 1; }
		return 0
	fi
	install -D -m 0755 "$(readlink -f "$path")" "$root/host/bin/$name"
	copy_closure "$root" "$path"
}

# Copies the shared libraries (and loader) a dynamically linked program
# needs into root, at their host paths; nothing for a static one.
copy_closure() { # root program
	local root=$1 lib
	while read -r lib; do
		[[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
	done < <(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
}

stage() {
	local root=$VMOUT/root kd rel
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,nm/bin,nm/bpf,nm/modules,host/bin,etc,proc,sys,dev,tmp,run}
	install -m 0755 /bin/busybox "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	install -m 0755 tests/vm/init.sh "$root/init"
	install -m 0755 tests/vm/vm-tests.sh "$root/nm/vm-tests.sh"
	cp "$VMOUT"/bin/* "$root/nm/bin/"
	local f
	for f in "$root"/nm/bin/*; do copy_closure "$root" "$f"; done
	if compgen -G "$NM_OUT/bpf/*.bpf.o" >/dev/null; then
		cp "$NM_OUT"/bpf/*.bpf.o "$root/nm/bpf/"
	fi
	for kd; do
		rel=$(cat "$kd/release")
		mkdir -p "$root/nm/modules/$rel"
		cp "$kd"/modules.order "$root/nm/modules/$rel/"
		if compgen -G "$kd/modules/*.ko" >/dev/null; then
			cp "$kd"/modules/*.ko "$root/nm/modules/$rel/"
		fi
	done
	local t
	for t in "${HOST_TOOLS[@]}"; do copy_host_tool "$root" "$t" yes; done
	for t in "${HOST_TOOLS_OPTIONAL[@]}"; do copy_host_tool "$root" "$t" no; done
	ln -sf /host/bin/bash "$root/bin/bash"
	# The BPF tests call bpftool by name; keep it on the usual path too.
	[[ -x $root/host/bin/bpftool ]] && ln -sf /host/bin/bpftool "$root/usr/sbin/bpftool"
	# The flow harness (tests/integration) when its parts exist.
	if [[ -x tests/vm/flow.sh && -x $VMOUT/bin/nodemeshd && -x $VMOUT/bin/nodemesh &&
	      -x $VMOUT/bin/nm_peer && -f tests/integration/lib/cluster.sh ]]; then
		mkdir -p "$root/nm/flow"
		cp -r tests/integration "$root/nm/flow/integration"
		install -m 0755 tests/vm/flow.sh "$root/nm/flow/flow.sh"
	fi
	printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
	printf 'root:x:0:\n' > "$root/etc/group"
	printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
}

# The BPF objects themselves (vmprobe loads each one): make treats them as
# intermediates of the skeletons and deletes them, so ask for them by name.
build_bpf_objects() {
	local src objs=()
	for src in bpf/*.bpf.c; do
		[[ -e $src ]] && objs+=("$NM_OUT/bpf/$(basename "$src" .c).o")
	done
	[[ ${#objs[@]} -gt 0 ]] || return 0
	make -s --no-print-directory OUT="$NM_OUT" "${objs[@]}" >&2 ||
		log "warning: BPF objects did not build"
}

mkdir -p "$VMOUT"
build_bpf_objects
build_static
stage "$@"
(cd "$VMOUT/root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUTIMG.tmp"
mv "$OUTIMG.tmp" "$OUTIMG"
log "$OUTIMG: $(du -h "$OUTIMG" | cut -f1), binaries: $(ls "$VMOUT/bin" | tr '\n' ' ')"
