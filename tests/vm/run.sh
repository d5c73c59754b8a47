#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run.sh -- nodemesh's kernel matrix: boot Debian's cloud kernels in qemu
# (TCG; KVM is not used) with the test initramfs, run the feature probe, the
# BPF tests and one full mesh flow inside each, and the same sequence on the
# host kernel; print a table per kernel and write docs/kernels.md.
#
#   tests/vm/run.sh [--quick] [--kernels "5.10 6.1 6.12"] [--no-host]
#                   [--docs | --no-docs] [--timeout SECONDS]
#
#   --quick      one VM kernel (6.1, the fastest to boot) and no host run:
#                `make check` covers the host kernel itself
#   --kernels    VM kernels to run (default: 5.10 6.1 6.12)
#   --no-host    skip the host-kernel run
#   --docs       write docs/kernels.md (the default without --quick)
#   --timeout    limit per VM boot, seconds (default 1800: TCG runs the BPF
#                and flow tests 10-20x slower than the host)
#   --no-build   do not run `make all` first (the caller just did)
#
# It runs `make all` (so the static copies it links are never stale), then
# builds those copies itself. The kernels are cached in $NM_VM_CACHE
# (default /var/cache/nodemesh-vm).
# Exit status 0 when every kernel passed. Ends with "N passed, N failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
NM_OUT=${NM_OUT:-build}
VMOUT=${NM_VM_OUT:-$NM_OUT/vm}
export NM_OUT NM_VM_OUT=$VMOUT
if [[ -z ${NM_VM_CACHE:-} ]]; then
	if mkdir -p /var/cache/nodemesh-vm 2>/dev/null && [[ -w /var/cache/nodemesh-vm ]]; then
		NM_VM_CACHE=/var/cache/nodemesh-vm
	else
		NM_VM_CACHE=$PWD/$NM_OUT/vm-cache
	fi
fi
export NM_VM_CACHE

kernels="5.10 6.1 6.12"
quick=0 host=1 docs=auto vm_timeout=1800 build=1
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) quick=1 ;;
	--kernels) kernels=$2; shift ;;
	--kernels=*) kernels=${1#*=} ;;
	--no-host) host=0 ;;
	--docs) docs=1 ;;
	--no-docs) docs=0 ;;
	--timeout) vm_timeout=$2; shift ;;
	--no-build) build=0 ;;
	-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
if [[ $quick -eq 1 ]]; then
	kernels=6.1
	host=0
fi
[[ $docs == auto ]] && docs=$((1 - quick))

log() { printf 'vm: %s\n' "$*" >&2; }

for tool in qemu-system-x86_64 cpio gzip busybox dpkg-deb apt-get; do
	command -v "$tool" >/dev/null || { log "missing $tool (run tools/install-deps.sh)"; exit 1; }
done
# The initramfs has no libraries for busybox: it must be busybox-static.
if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
	log "/bin/busybox missing or not static (install busybox-static)"
	exit 1
fi

RESULTS=$VMOUT/results
LOGS=$VMOUT/logs
mkdir -p "$RESULTS" "$LOGS"

# --- build, kernels and image -------------------------------------------------
if [[ $build -eq 1 ]]; then
	make -s --no-print-directory OUT="$NM_OUT" all >&2
fi
# shellcheck disable=SC2086
tests/vm/fetch-kernel.sh $kernels
kdirs=()
for k in $kernels; do kdirs+=("$NM_VM_CACHE/kernels/$k"); done
tests/vm/mkinitramfs.sh "${kdirs[@]}"
IMG=$VMOUT/initramfs.cpio.gz

# Marker lines out of a serial log: strip CRs and the terminal escapes
# SeaBIOS and the kernel leave at line starts.
markers() {
	tr -d '\r' < "$1" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' |
		grep -ao 'VM[A-Z]* kernel=.*' || true
}

run_vm() { # version
	local v=$1 kd=$NM_VM_CACHE/kernels/$1 out=$LOGS/$1.log res=$RESULTS/$1.txt
	local t0 t1 rc=0
	log "booting $v ($(cat "$kd/release"))"
	t0=$(date +%s.%N)
	# -no-reboot + panic=-1: a crash in the VM ends qemu at once.
	timeout --foreground -k 10 "$vm_timeout" qemu-system-x86_64 \
		-machine accel=tcg -cpu max -m 1024 -smp 2 \
		-nographic -no-reboot -nic none \
		-kernel "$kd/vmlinuz" -initrd "$IMG" \
		-append "console=ttyS0 panic=-1 quiet" \
		< /dev/null > "$out" 2>&1 || rc=$?
	t1=$(date +%s.%N)
	{
		markers "$out"
		echo "VMMETA kernel=$(cat "$kd/release") version=$v package=$(tr " " "_" < "$kd/package") seconds=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") qemu_rc=$rc"
		if ! grep -aq '^VMDONE' <(markers "$out"); then
			echo "VMRESULT kernel=$(cat "$kd/release") test=boot result=FAIL reason=$([[ $rc -eq 124 ]] && echo timeout || echo "no-VMDONE-rc-$rc")"
		else
			echo "VMRESULT kernel=$(cat "$kd/release") test=boot result=PASS"
		fi
	} > "$res"
}

run_host() {
	local res=$RESULTS/host.txt out=$LOGS/host.log t0 t1 rel
	rel=$(uname -r)
	if [[ $(id -u) -ne 0 ]]; then
		log "host run needs root: skipped"
		printf 'VMRESULT kernel=%s test=host result=SKIP reason=not-root\n' "$rel" > "$res"
		return
	fi
	log "running on the host kernel ($rel)"
	t0=$(date +%s.%N)
	NM_VM_MODE=host NM_VM_LABEL=$rel NM_VM_ROOT=$PWD/$VMOUT/root/nm \
		sh tests/vm/vm-tests.sh > "$out" 2>&1 || true
	t1=$(date +%s.%N)
	{
		markers "$out"
		echo "VMMETA kernel=$rel version=host package=host seconds=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") qemu_rc=0"
	} > "$res"
}

runs=()
for k in $kernels; do
	rm -f "$RESULTS/$k.txt"
	run_vm "$k"
	runs+=("$k")
done
if [[ $host -eq 1 ]]; then
	run_host
	runs+=(host)
fi

# --- table -------------------------------------------------------------------
field() { # file marker-regex key
	grep -a "$2" "$1" | head -n1 | grep -o "$3=[^ ]*" | head -n1 | cut -d= -f2- | tr -d '"'
}
feat() { # file name -> yes/no
	[[ $(field "$1" "^VMFEATURE .*name=$2 " value) == 1 ]] && echo yes || echo no
}
progs() { # file -> loaded/total
	awk '/^VMPROGS/ { for (i = 1; i <= NF; i++) { split($i, kv, "=");
		if (kv[1] == "loaded") l += kv[2]; if (kv[1] == "total") t += kv[2] } }
		END { printf "%d/%d", l, t }' "$1"
}
count() { grep -ac "^VMRESULT .*result=$2" "$1" || true; }
checks() { # file -> passed/total Check cases
	awk '/^VMCOUNT/ { for (i = 1; i <= NF; i++) { split($i, kv, "=");
		if (kv[1] == "checks") c += kv[2]; if (kv[1] == "failures" || kv[1] == "errors") f += kv[2] } }
		END { printf "%d/%d", c - f, c }' "$1"
}

OPTIONAL="ringbuf sk_storage netns_cookie sockmap ktls ktls_crypto map_fd_unpriv"
total_pass=0 total_fail=0
echo
echo "FEATURES: ringbuf sk_storage netns_cookie sockmap ktls ktls_crypto(AES-GCM) map_fd_unpriv (y/n)"
printf '%-33s %5s %6s %4s %-14s %7s %4s %4s %4s  %s\n' KERNEL TIME PROGS REQ \
	FEATURES CHECKS PASS FAIL SKIP RESULT
for r in "${runs[@]}"; do
	f=$RESULTS/$r.txt
	rel=$(field "$f" '^VMMETA' kernel)
	secs=$(field "$f" '^VMMETA' seconds)
	req=$(field "$f" '^VMREQUIRED' result)
	fl=""
	for x in $OPTIONAL; do fl+="$(feat "$f" "$x" | cut -c1) "; done
	p=$(count "$f" PASS) fl_=$(count "$f" FAIL) s=$(count "$f" SKIP)
	verdict=PASS
	[[ $fl_ -gt 0 || -z $req ]] && verdict=FAIL
	# A skipped step means a test binary was not built: a failure unless
	# the caller allows partial runs (NM_VM_ALLOW_SKIP=1, e.g. bring-up).
	# A kernel without the feature a step needs (no tls ULP: kTLS) is what
	# the matrix reports, not a failure.
	s_bad=$((s - $(count "$f" 'SKIP reason=no-tls-ulp')))
	if [[ $s_bad -gt 0 && ${NM_VM_ALLOW_SKIP:-0} != 1 ]]; then
		verdict=FAIL
		total_fail=$((total_fail + s_bad))
	fi
	if [[ $r == host && $(count "$f" 'SKIP reason=not-root') -gt 0 ]]; then
		verdict=SKIP
		[[ ${NM_VM_ALLOW_SKIP:-0} == 1 ]] || total_fail=$((total_fail - s_bad))
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + fl_))
	[[ -z $req && $verdict == FAIL && $fl_ -eq 0 ]] && total_fail=$((total_fail + 1))
	echo "VMVERDICT run=$r result=$verdict" >> "$f"
	printf '%-33s %4.0fs %6s %4s %-14s %7s %4s %4s %4s  %s\n' "$r ${rel:-?}" \
		"${secs:-0}" "$(progs "$f")" "${req:--}" "$fl" "$(checks "$f")" "$p" "$fl_" "$s" "$verdict"
done
echo
for r in "${runs[@]}"; do
	grep -a "^VMRESULT .*result=\(FAIL\|SKIP\)" "$RESULTS/$r.txt" | sed "s/^/  $r: /" || true
done
echo "logs: $LOGS/"

# --- docs/kernels.md ---------------------------------------------------------
if [[ $docs -eq 1 ]]; then
	tests/vm/gen-docs.sh "${runs[@]}" > docs/kernels.md.tmp && mv docs/kernels.md.tmp docs/kernels.md
	log "wrote docs/kernels.md"
fi

echo "vm: $total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
