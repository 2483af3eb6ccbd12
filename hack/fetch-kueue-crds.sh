#!/usr/bin/env bash
# Fetches Kueue's CRDs (the Workload and LocalQueue YAML, exactly as a Kueue release installs them)
# from the Kueue Go module into their own cache directory, once. The integration tests play Kueue's
# part against the real API server with these CRDs (tests/integration/test_operator_kueue.py).
# The Workload CRD is ~1.4 MB, too big to vendor; the Go module proxy serves the release's sources.
#
# Usage: hack/fetch-kueue-crds.sh              -> fetches (if not cached) and prints the directory
#        hack/fetch-kueue-crds.sh --print-dir  -> prints the directory, fetches nothing
# Env:   VIDEOGEN_TOOLS_CACHE  cache root (default ~/.cache/videogen-operator)
set -euo pipefail

KUEUE_VERSION=v0.17.0   # serves Workloads as v1beta2 (storage) and v1beta1
CRDS=(workloads localqueues)

CACHE_ROOT=${VIDEOGEN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/videogen-operator}
DIR="$CACHE_ROOT/kueue-crds/$KUEUE_VERSION"
STAMP="$DIR/.complete"

if [[ -f "$STAMP" || "${1:-}" == "--print-dir" ]]; then
  echo "$DIR"
  exit 0
fi

echo "[fetch-kueue-crds] downloading sigs.k8s.io/kueue@$KUEUE_VERSION (the Go module, for its CRDs) ..." >&2
mkdir -p "$DIR"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Outside any module, so no go.mod is read or written; -json names the unpacked module directory.
info=$(cd "$scratch" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION")
module_dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
if [[ -z "$module_dir" || ! -d "$module_dir" ]]; then
  echo "[fetch-kueue-crds] go mod download gave no module directory:" >&2
  echo "$info" >&2
  exit 1
fi
for crd in "${CRDS[@]}"; do
  cp "$module_dir/config/components/crd/bases/kueue.x-k8s.io_$crd.yaml" "$DIR/"
done
chmod u+w "$DIR"/*.yaml
touch "$STAMP"
echo "[fetch-kueue-crds] Kueue $KUEUE_VERSION CRDs in $DIR" >&2
echo "$DIR"
