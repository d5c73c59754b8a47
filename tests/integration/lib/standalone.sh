# SPDX-License-Identifier: Apache-2.0
# standalone.sh -- the prelude of the integration tests that run agents as
# plain processes on loopback, without the simulated cluster:
#   . "$(dirname "$0")/lib/standalone.sh" NAME
# Sets REPO, B (the build dir, $OUT as tests/run.sh exports it), WORK (a
# /tmp/nm-NAME.* dir removed on exit), PIDS (what the test starts; killed
# on exit, failures included), FAILS with pass/fail in tests/run.sh's
# format, and BASE: a random port base in 20000-27999, a range the kernel
# does not hand out as ephemeral ports by default.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=$REPO/${OUT:-build}
WORK=$(mktemp -d "/tmp/nm-${1:?standalone.sh needs a name}.XXXXXX")
PIDS=()
nm_standalone_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap nm_standalone_cleanup EXIT

FAILS=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; FAILS=$((FAILS + 1)); }

BASE=$((20000 + RANDOM % 8000))
