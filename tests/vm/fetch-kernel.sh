#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fetch-kernel.sh -- download one of Debian's cloud kernels for the VM matrix
# and unpack what the VM needs: vmlinuz, its config and the kernel modules the
# tests load (WANT_MODULES and their dependencies, decompressed on the host
# since busybox insmod cannot read .ko.xz / .ko.zst).
#
#   tests/vm/fetch-kernel.sh 5.10 6.1 6.12
#
# It uses a private apt configuration (own sources.list, lists, state and
# archive cache under $NM_VM_CACHE/apt) so the host's apt state is never
# touched. The mirror is the one the machine already uses: it is read from the
# system's apt sources, never written into the repository.
#
# Result, per version, in $NM_VM_CACHE/kernels/<ver>/:
#   vmlinuz  config  release  package  modules/<name>.ko  modules.order
# A version already unpacked there is not fetched again.
set -euo pipefail

CACHE=${NM_VM_CACHE:-/var/cache/nodemesh-vm}
APTDIR=$CACHE/apt
# Modules the in-VM tests load (their dependencies come from modules.dep):
# veth and bridge for the simulated cluster, tls for kTLS, and the AES-GCM
# pieces the kTLS record layer asks the crypto API for (the VM has no
# modprobe to load them on demand). A kernel that lacks one (5.10 cloud has
# no tls) does without it.
WANT_MODULES=(veth bridge tls gcm ghash-generic ctr)

log() { printf 'fetch-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# suite and package-name regex per kernel line
suite_of() {
	case $1 in
	5.10) echo bullseye ;;
	6.1) echo bookworm ;;
	6.12) echo "trixie or bookworm-backports" ;;
	*) return 1 ;;
	esac
}
pkg_regex_of() {
	local v=${1//./\\.}
	# signed image: "linux-image-<abi>-cloud-amd64" (the -unsigned and -dbg
	# variants end differently and are excluded by the anchor)
	echo "^linux-image-${v}[.][^ ]*-cloud-amd64\$"
}

# First Debian archive URI from the system's apt sources: one-line
# "deb URI suite comp..." entries and deb822 stanzas. Security and
# third-party archives are skipped (they do not carry the kernels we want).
detect_mirror() {
	local f uri
	{
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[[ -r $f ]] || continue
			sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+\([^[:space:]]\+\).*/\2 \3/p' "$f"
		done
		for f in /etc/apt/sources.list.d/*.sources; do
			[[ -r $f ]] || continue
			awk '
			function flush() { if (isdeb && uris != "") { n = split(uris, u, " "); for (i = 1; i <= n; i++) print u[i], suites } isdeb = 0; uris = ""; suites = "" }
			/^[[:space:]]*#/ { next }
			/^[[:space:]]*$/ { flush(); next }
			/^Types:/ { isdeb = ($0 ~ /(^|[[:space:]])deb([[:space:]]|$)/) }
			/^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
			/^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
			/^Enabled:[[:space:]]*no/ { isdeb = 0 }
			END { flush() }' "$f"
		done
	} | while read -r uri suite rest; do
		case $suite in
		*security*) continue ;;
		esac
		case $suite in
		bullseye* | bookworm* | trixie* | forky* | sid | unstable | testing | stable* | oldstable*)
			echo "$uri"; break ;;
		esac
	done | head -n1
}

apt_opts() {
	local o=(
		-o "Dir::Etc::SourceList=$APTDIR/sources.list"
		-o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
		-o "Dir::Etc::Preferences=$APTDIR/preferences"
		-o "Dir::Etc::PreferencesParts=$APTDIR/preferences.d"
		-o "Dir::State=$APTDIR/state"
		-o "Dir::State::Lists=$APTDIR/lists"
		-o "Dir::State::status=$APTDIR/status"
		-o "Dir::Cache=$APTDIR/cache"
		-o "Dir::Cache::archives=$APTDIR/archives"
		-o "APT::Architecture=amd64"
		-o "APT::Architectures::=amd64"
		-o "Acquire::Languages=none"
		-o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
		-o "APT::Sandbox::User=root"
		-o "Debug::NoLocking=1"
	)
	printf '%s\n' "${o[@]}"
}

setup_apt() {
	local mirror=$1
	mkdir -p "$APTDIR"/{sources.list.d,preferences.d,state,lists/partial,cache,archives/partial,debs}
	: > "$APTDIR/status"
	: > "$APTDIR/preferences"
	local kr=/usr/share/keyrings/debian-archive-keyring.gpg
	[[ -r $kr ]] || die "$kr missing (install debian-archive-keyring)"
	local new
	# 6.12 is in trixie and (while it lasts) bookworm-backports, whose
	# Release is signed with bookworm's key: either one is enough.
	new=$(for s in bullseye bookworm bookworm-backports trixie; do
		echo "deb [signed-by=$kr] $mirror $s main"
	done)
	if [[ ! -f $APTDIR/sources.list ]] || [[ $(cat "$APTDIR/sources.list") != "$new" ]]; then
		echo "$new" > "$APTDIR/sources.list"
		rm -f "$APTDIR/lists/"*_Packages* "$APTDIR/lists/"*Release* 2>/dev/null || true
	fi
}

APT_UPDATED=0
apt_update() {
	[[ $APT_UPDATED -eq 1 ]] && return 0
	local opts; mapfile -t opts < <(apt_opts)
	log "updating private package lists in $APTDIR"
	# One suite failing (an old keyring, a mirror without it) must not hide
	# the others: find_package reports a kernel line it cannot find.
	apt-get "${opts[@]}" -qq update >&2 || log "warning: apt-get update reported errors"
	APT_UPDATED=1
}

find_package() {
	local ver=$1 suite re opts
	suite=$(suite_of "$ver")
	re=$(pkg_regex_of "$ver")
	mapfile -t opts < <(apt_opts)
	# Only names present in this suite's list; the newest ABI wins.
	apt-cache "${opts[@]}" search --names-only "$re" 2>/dev/null |
		awk '{print $1}' | sort -V | tail -n1
}

# Resolve a module's dependency closure from modules.dep, deps first.
resolve_modules() {
	local moddir=$1; shift
	local -A seen=()
	local out=()
	visit() {
		local name=$1 line path deps d
		[[ -n ${seen[$name]:-} ]] && return 0
		seen[$name]=1
		local re=${name//[-_]/[-_]}
		line=$(grep -E "(^|/)${re}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)
		if [[ -z $line ]]; then
			if grep -qE "(^|/)${re}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
				log "module $name is built in"
			else
				log "module $name not shipped by this kernel"
			fi
			return 0
		fi
		path=${line%%:*}
		deps=${line#*:}
		for d in $deps; do
			d=${d##*/}; d=${d%%.ko*}
			visit "$d"
		done
		out+=("$path")
	}
	local m
	for m in "$@"; do visit "$m"; done
	printf '%s\n' "${out[@]}"
}

fetch_one() {
	local ver=$1 dest=$CACHE/kernels/$1
	if [[ -s $dest/vmlinuz && -s $dest/release && -f $dest/modules.order &&
	      $(cat "$dest/wanted" 2>/dev/null) == "${WANT_MODULES[*]}" ]]; then
		log "$ver: cached ($(cat "$dest/release"))"
		return 0
	fi
	suite_of "$ver" >/dev/null || die "unknown kernel line '$ver' (use 5.10, 6.1 or 6.12)"
	local mirror
	mirror=$(detect_mirror)
	[[ -n $mirror ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/}"
	setup_apt "$mirror"
	local pkg deb
	# A kept package is unpacked again (e.g. after WANT_MODULES changed)
	# without asking the mirror.
	local re f
	re=$(pkg_regex_of "$ver")
	deb=$(for f in "$APTDIR/debs/"*.deb; do
		[[ -e $f ]] || continue
		if [[ ${f##*/} =~ ${re%\$}_ ]]; then echo "$f"; fi
	done | sort -V | tail -n1)
	if [[ -z $deb ]]; then
		apt_update
		pkg=$(find_package "$ver")
		[[ -n $pkg ]] || die "$ver: no package matching $(pkg_regex_of "$ver") in $(suite_of "$ver")"
		log "$ver: downloading $pkg"
		local opts; mapfile -t opts < <(apt_opts)
		(cd "$APTDIR/debs" && apt-get "${opts[@]}" -qq download "$pkg" >&2) ||
			die "$ver: apt-get download $pkg failed"
		deb=$(compgen -G "$APTDIR/debs/${pkg}_*.deb" | head -n1)
	fi
	pkg=$(dpkg-deb -f "$deb" Package)
	local tmp
	tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	dpkg-deb -x "$deb" "$tmp/root"
	local vmlinuz krel moddir
	vmlinuz=$(compgen -G "$tmp/root/boot/vmlinuz-*" | head -n1)
	krel=${vmlinuz##*/vmlinuz-}
	moddir=$tmp/root/lib/modules/$krel
	[[ -d $moddir ]] || moddir=$tmp/root/usr/lib/modules/$krel
	[[ -d $moddir ]] || die "$ver: no modules directory for $krel in $deb"
	# modules.dep is generated by depmod at install time on some releases;
	# build it here when the package does not ship it.
	if [[ ! -s $moddir/modules.dep ]]; then
		depmod -b "$tmp/root" "$krel" 2>/dev/null ||
			depmod -b "$tmp/root/usr" "$krel"
	fi

	rm -rf "$dest.new"
	mkdir -p "$dest.new/modules"
	cp "$vmlinuz" "$dest.new/vmlinuz"
	cp "$tmp/root/boot/config-$krel" "$dest.new/config" 2>/dev/null || true
	local rel name
	: > "$dest.new/modules.order"
	while read -r rel; do
		[[ -n $rel ]] || continue
		name=${rel##*/}; name=${name%%.ko*}
		case $rel in
		*.ko.xz) xz -dc "$moddir/$rel" > "$dest.new/modules/$name.ko" ;;
		*.ko.zst) zstd -qdc "$moddir/$rel" > "$dest.new/modules/$name.ko" ;;
		*.ko.gz) gzip -dc "$moddir/$rel" > "$dest.new/modules/$name.ko" ;;
		*.ko) cp "$moddir/$rel" "$dest.new/modules/$name.ko" ;;
		esac
		echo "$name" >> "$dest.new/modules.order"
	done < <(resolve_modules "$moddir" "${WANT_MODULES[@]}")
	echo "$krel" > "$dest.new/release"
	echo "$pkg $(dpkg-deb -f "$deb" Version)" > "$dest.new/package"
	echo "${WANT_MODULES[*]}" > "$dest.new/wanted"
	rm -rf "$dest"
	mv "$dest.new" "$dest"
	log "$ver: $krel, modules: $(tr '\n' ' ' < "$dest/modules.order")"
}

[[ $# -gt 0 ]] || set -- 5.10 6.1 6.12
mkdir -p "$CACHE/kernels"
for v in "$@"; do
	fetch_one "$v"
done
