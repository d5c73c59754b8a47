#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/run.sh - run nodemesh's test suites and sum their results.
#
#   tests/run.sh [all|unit|unit-san|bpf|integration|fuzz|vm]...  (default: all)
#
#   unit         every build/tests/unit/check_* (Check suites; each check
#                counts, from Check's "Checks: N, Failures: F, Errors: E")
#   unit-san     the same suites built with ASan + UBSan (build/san/...)
#   bpf          every build/tests/bpf/test_* (root; Check suites or plain
#                binaries, one result per binary when there is no summary)
#   integration  every tests/integration/test_*.sh (root); each scenario's
#                "PASS name" / "FAIL name: reason" line counts, then a sweep
#                for anything a run left behind
#   fuzz         every build/tests/fuzz/fuzz_* for FUZZ_SECONDS (default 20)
#                over tests/fuzz/corpus/<name without fuzz_>/ when present
#   vm           tests/vm/run.sh --quick
#   bench        bench/smoke.sh: the benchmark scripts run one short point
#                and their JSON parses (no figure is asserted)
#   all          unit unit-san bpf integration fuzz bench vm
#
# A suite whose sources exist but whose binaries do not is a failure, not a
# skip. Prints one line per result and ends with "N passed, N failed" alone
# on the last line; exits 1 when anything failed.
#
# Environment: OUT (build dir, default build), FUZZ_SECONDS, NM_TEST_FILTER
# (ERE on integration script names), NM_TEST_TIMEOUT (per integration
# script, default 240 s). Logs go to $OUT/test-logs/.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-build}
export OUT
case $OUT in
/*) BUILD=$OUT ;;
*) BUILD=$REPO/$OUT ;;
esac
LOGS=$BUILD/test-logs
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
NM_TEST_TIMEOUT=${NM_TEST_TIMEOUT:-240}
PASSED=0
FAILED=0

pass() { printf 'PASS %s\n' "$1"; PASSED=$((PASSED + 1)); }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; FAILED=$((FAILED + 1)); }
section() { printf '== %s\n' "$1"; }
indent() { sed 's/^/    /'; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# Run one Check-based (or plain) test binary; count each check when Check
# printed its summary, else the binary as one test.
run_check_binary() { # LABEL BINARY LOG
	local label=$1 bin=$2 log=$3 rc sums n=0 f=0 e=0 a b c
	(cd "$REPO" && timeout -k 5 300 "$bin") >"$log" 2>&1
	rc=$?
	sums=$(grep -Eo 'Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log")
	if [[ -n $sums ]]; then
		while read -r _ a _ b _ c; do
			n=$((n + ${a%,})) f=$((f + ${b%,})) e=$((e + c))
		done <<<"$sums"
		PASSED=$((PASSED + n - f - e))
		FAILED=$((FAILED + f + e))
		if ((f + e == 0 && rc == 0)); then
			printf 'PASS %s (%d checks)\n' "$label" "$n"
		else
			printf 'FAIL %s: %d of %d checks failed (exit %d)\n' "$label" $((f + e)) "$n" "$rc"
			grep -E ':[FE]:' "$log" | head -n 20 | indent
			if ((f + e == 0)); then
				# Exit status says failure but no check did: count it.
				FAILED=$((FAILED + 1))
				tail -n 10 "$log" | indent
			fi
		fi
	elif ((rc == 0)); then
		pass "$label"
	else
		fail "$label" "exit $rc$( ((rc == 124)) && echo ' (timeout)')"
		tail -n 20 "$log" | indent
	fi
}

# Binaries named after the sources: every source must have its binary.
run_binary_suite() { # SUITE SRCGLOB-DIR PREFIX NEEDROOT
	local suite=$1 dir=$2 prefix=$3 needroot=$4 src name bin any=0
	section "$suite"
	mkdir -p "$LOGS/$suite"
	for src in "$REPO/$dir/$prefix"*.c; do
		[[ -e $src ]] || continue
		any=1
		name=$(basename "$src" .c)
		bin=$BUILD/$dir/$name
		if [[ ! -x $bin ]]; then
			fail "$suite/$name" "binary $bin missing (run make)"
			continue
		fi
		if [[ $needroot == 1 ]] && ! is_root; then
			fail "$suite/$name" "needs root"
			continue
		fi
		run_check_binary "$suite/$name" "$bin" "$LOGS/$suite/$name.log"
	done
	((any)) || fail "$suite" "no $dir/$prefix*.c sources: the suite is missing"
}

suite_unit() { run_binary_suite unit tests/unit check_ 0; }
# The same suites built with ASan + UBSan (make unit-san) into $BUILD/san.
suite_unit_san() {
	local BUILD=$BUILD/san
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		run_binary_suite unit-san tests/unit check_ 0
}
suite_bpf() { run_binary_suite bpf tests/bpf test_ 1; }

# Run ids ("nm" + 4 hex) that own anything right now: network namespaces,
# cgroup subtrees, pin directories, state directories.
list_runs() {
	local p
	{
		ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^\(nm[0-9a-f]\{4\}\)-.*/\1/p'
		for p in /sys/fs/cgroup/*/nodemesh-nm* /sys/fs/cgroup/nodemesh-nm*; do
			[[ -d $p ]] && echo "${p##*/nodemesh-}"
		done
		for p in /sys/fs/bpf/nodemesh/nm*-* /run/nodemesh/nm*-*; do
			[[ -e $p ]] && echo "${p##*/}" | sed 's/-.*//'
		done
		for p in /run/nodemesh-test/nm* /run/nodemesh-demo/run/nm*; do
			[[ -d $p ]] && echo "${p##*/}"
		done
	} | grep -E '^nm[0-9a-f]{4}$' | sort -u
}

# After the integration scripts: anything of a run that appeared during the
# suite and is still there is a leak. Runs that are still in progress in
# another shell (their owner is alive) and `demo.sh up` clusters are not
# ours to judge.
leftover_sweep() { # RUNS-BEFORE
	local before run env owner left=""
	before=" $(tr '\n' ' ' <<<"$1") "
	for run in $(list_runs); do
		[[ $before == *" $run "* ]] && continue
		[[ -d /run/nodemesh-demo/$run ]] && continue
		owner=""
		for env in /run/nodemesh-test/$run/cluster.env /run/nodemesh-demo/run/$run/cluster.env; do
			[[ -f $env ]] && owner=$(sed -n 's/^NM_OWNER_PID=//p' "$env" | tail -n 1)
		done
		if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null; then
			continue
		fi
		left+="$run: $(ip netns list 2>/dev/null | awk '{print $1}' | grep -c "^$run-") netns,"
		left+=" cgroup $(ls -d /sys/fs/cgroup/*/nodemesh-"$run" /sys/fs/cgroup/nodemesh-"$run" 2>/dev/null | head -n 1),"
		left+=" pins $(ls -d /sys/fs/bpf/nodemesh/"$run"-* 2>/dev/null | tr '\n' ' ')"
		left+=" agent run dirs $(ls -d /run/nodemesh/"$run"-* 2>/dev/null | tr '\n' ' ')"
		left+=" state $(ls -d /run/nodemesh-test/"$run" /run/nodemesh-demo/run/"$run" 2>/dev/null); "
	done
	if [[ -z $left ]]; then
		pass "integration/no-leftovers"
	else
		fail "integration/no-leftovers" "$left"
	fi
}

# Agent run directories of test runs that no longer exist (the harness's
# instance names, nm<4 hex>-n<node>, and no state dir of the run left).
# Agents used to leave one per instance even on SIGTERM, and teardown did
# not remove a SIGKILLed agent's; enough of them made `nodemesh status`
# lose live instances.
sweep_stale_run_dirs() {
	local d run
	for d in /run/nodemesh/nm[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-n[0-9]*; do
		[[ -d $d ]] || continue
		run=${d##*/}
		run=${run%%-*}
		[[ -d /run/nodemesh-test/$run || -d /run/nodemesh-demo/run/$run ]] && continue
		rm -rf "$d"
	done
	return 0
}

suite_integration() {
	local script name log rc n_pass n_fail any=0 runs_before
	section integration
	sweep_stale_run_dirs
	runs_before=$(list_runs)
	mkdir -p "$LOGS/integration"
	if ! is_root; then
		fail integration "needs root"
		return
	fi
	for script in "$REPO"/tests/integration/test_*.sh; do
		[[ -e $script ]] || continue
		name=$(basename "$script" .sh)
		[[ -n ${NM_TEST_FILTER:-} && ! $name =~ $NM_TEST_FILTER ]] && continue
		any=1
		log=$LOGS/integration/$name.log
		rm -rf "$LOGS/integration/$name"
		# Scenario lines are shown as they happen; everything goes to the log.
		NM_BUILD=$BUILD NM_ARTIFACTS=$LOGS/integration/$name \
			timeout -k 10 "$NM_TEST_TIMEOUT" bash "$script" 2>&1 </dev/null |
			tee "$log" | grep --line-buffered -E '^(PASS|FAIL) '
		rc=${PIPESTATUS[0]}
		n_pass=$(grep -c '^PASS ' "$log")
		n_fail=$(grep -c '^FAIL ' "$log")
		PASSED=$((PASSED + n_pass))
		FAILED=$((FAILED + n_fail))
		if ((rc != 0 && n_fail == 0)); then
			fail "integration/$name" "exited $rc$( ((rc == 124)) && echo " (timeout after ${NM_TEST_TIMEOUT}s)") without a FAIL line"
		elif ((n_pass + n_fail == 0)); then
			fail "integration/$name" "reported no result"
		fi
		if ((rc != 0 || n_fail > 0)); then
			echo "    --- $name: log $log (last lines)"
			grep -vE '^(PASS|FAIL) ' "$log" | tail -n 25 | indent
		fi
	done
	((any)) || fail integration "no tests/integration/test_*.sh scripts"
	((any)) && leftover_sweep "$runs_before"
}

suite_fuzz() {
	local src name bin corpus tmp log rc any=0 seeds
	section fuzz
	mkdir -p "$LOGS/fuzz"
	for src in "$REPO"/tests/fuzz/fuzz_*.c; do
		[[ -e $src ]] || continue
		any=1
		name=$(basename "$src" .c)
		bin=$BUILD/tests/fuzz/$name
		if [[ ! -x $bin ]]; then
			fail "fuzz/$name" "binary $bin missing (run make fuzz)"
			continue
		fi
		corpus=$REPO/tests/fuzz/corpus/${name#fuzz_}
		tmp=$(mktemp -d)
		mkdir -p "$tmp/corpus"
		seeds=()
		# New inputs go to the scratch dir, never into the checked-in corpus.
		[[ -d $corpus ]] && seeds=("$corpus")
		log=$LOGS/fuzz/$name.log
		(cd "$tmp" && timeout -k 10 $((FUZZ_SECONDS + 60)) "$bin" \
			-max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -artifact_prefix="$tmp/" \
			"$tmp/corpus" "${seeds[@]}") >"$log" 2>&1
		rc=$?
		if ((rc == 0)); then
			pass "fuzz/$name (${FUZZ_SECONDS}s, $(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | awk '{print $2}' | tail -n 1) runs${seeds:+, seeds $(ls "$corpus" | wc -l)})"
		else
			local crash
			crash=$(ls "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-* 2>/dev/null | head -n 1)
			if [[ -n $crash ]]; then
				mkdir -p "$LOGS/fuzz/artifacts"
				cp "$crash" "$LOGS/fuzz/artifacts/$name-${crash##*/}"
			fi
			fail "fuzz/$name" "exit $rc${crash:+, input saved as $LOGS/fuzz/artifacts/$name-${crash##*/}}"
			grep -E 'ERROR|SUMMARY|==[0-9]+==' "$log" | head -n 10 | indent
		fi
		rm -rf "$tmp"
	done
	((any)) || fail fuzz "no tests/fuzz/fuzz_*.c targets"
}

suite_vm() {
	local script=$REPO/tests/vm/run.sh log=$LOGS/vm/run.log rc last
	section vm
	mkdir -p "$LOGS/vm"
	if [[ ! -f $script ]]; then
		fail vm "tests/vm/run.sh missing"
		return
	fi
	if ! is_root; then
		fail vm "needs root"
		return
	fi
	NM_OUT=$OUT timeout -k 10 1800 bash "$script" --quick 2>&1 </dev/null |
		tee "$log" | grep --line-buffered -E '^(PASS|FAIL) |^KERNEL | (PASS|FAIL)$' | indent
	rc=${PIPESTATUS[0]}
	last=$(grep -Eo '[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	if [[ -n $last ]]; then
		local p f
		read -r p _ f _ <<<"$last"
		f=${f%,}
		PASSED=$((PASSED + p))
		FAILED=$((FAILED + f))
		printf '%s vm: %s\n' "$( ((f == 0 && rc == 0)) && echo PASS || echo FAIL)" "$last"
		if ((rc != 0 && f == 0)); then
			fail vm "tests/vm/run.sh exited $rc"
		fi
	elif ((rc == 0)); then
		pass vm
	else
		fail vm "tests/vm/run.sh --quick exited $rc"
	fi
	((rc == 0)) || tail -n 20 "$log" | indent
}

# bench/smoke.sh tests the benchmark scripts (one short point of each step,
# output JSON must parse); it is not a benchmark and asserts no figure.
suite_bench() {
	local script=$REPO/bench/smoke.sh log=$LOGS/bench/smoke.log line
	section bench
	mkdir -p "$LOGS/bench"
	if [[ ! -f $script ]]; then
		fail bench "bench/smoke.sh missing"
		return
	fi
	NODEMESHD=$BUILD/nodemeshd timeout -k 10 900 bash "$script" </dev/null >"$log" 2>&1
	local rc=$? n=0
	while IFS= read -r line; do
		case $line in
		"PASS "*) pass "bench/${line#PASS }"; n=$((n + 1)) ;;
		"FAIL "*)
			printf 'FAIL bench/%s\n' "${line#FAIL }"
			FAILED=$((FAILED + 1)) n=$((n + 1))
			;;
		esac
	done <"$log"
	if ((n == 0)); then
		fail bench "bench/smoke.sh printed no result (exit $rc)"
		tail -n 20 "$log" | indent
	elif ((rc != 0)); then
		grep -q '^FAIL ' "$log" || fail bench "bench/smoke.sh exited $rc"
		tail -n 20 "$log" | indent
	fi
}

main() {
	local suites=("$@") s
	((${#suites[@]})) || suites=(all)
	for s in "${suites[@]}"; do
		case $s in
		all) suite_unit; suite_unit_san; suite_bpf; suite_integration; suite_fuzz; suite_bench; suite_vm ;;
		unit) suite_unit ;;
		unit-san) suite_unit_san ;;
		bpf) suite_bpf ;;
		integration) suite_integration ;;
		fuzz) suite_fuzz ;;
		vm) suite_vm ;;
		bench) suite_bench ;;
		-h | --help)
			sed -n '3,25p' "$0" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		*)
			echo "tests/run.sh: unknown suite '$s' (all|unit|unit-san|bpf|integration|fuzz|bench|vm)" >&2
			exit 2
			;;
		esac
	done
	printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
	((FAILED == 0))
}

main "$@"
