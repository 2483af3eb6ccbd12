#!/usr/bin/env bash
# Builds the test tools that are not part of the cluster from Go modules into their own
# cache directory, once: promtool (checks the chart's alert rules) and luahealth (runs the
# Argo CD health script in gopher-lua, the Lua Argo CD embeds). A cache key of its own,
# so the Kubernetes binaries of hack/build-binaries.sh are never rebuilt for these.
#
# Usage: hack/build-tools.sh [TOOL...]   -> builds TOOLs (default: all) and prints the bin directory
#        hack/build-tools.sh --print-dir -> prints the bin directory, builds nothing
# Env:   VIDEOGEN_TOOLS_CACHE  cache root (default ~/.cache/videogen-operator)
set -euo pipefail

PROMETHEUS_VERSION=v0.316.0   # the Go module version of Prometheus v3.x; promtool comes with it
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HARNESS="$HERE/luahealth"
HARNESS_SUM=$(cat "$HARNESS/go.mod" "$HARNESS/go.sum" "$HARNESS/main.go" | sha256sum | cut -c1-12)

CACHE_ROOT=${VIDEOGEN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/videogen-operator}
KEY="tools_prometheus-${PROMETHEUS_VERSION}_luahealth-${HARNESS_SUM}"
BIN="$CACHE_ROOT/bin/$KEY"
STAMP="$BIN/.complete"

log() { echo "[build-tools] $*" >&2; }

if [[ -f "$STAMP" || "${1:-}" == "--print-dir" ]]; then
  echo "$BIN"
  exit 0
fi
WANT=("$@")
[[ ${#WANT[@]} -gt 0 ]] || WANT=(luahealth promtool)
wanted() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

mkdir -p "$BIN" "$CACHE_ROOT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

if wanted luahealth && [[ ! -x "$BIN/luahealth" ]]; then
  log "luahealth: building (gopher-lua) ..."
  (cd "$HARNESS" && go build -trimpath -ldflags "-s -w" -o "$BIN/luahealth.tmp" .)
  mv "$BIN/luahealth.tmp" "$BIN/luahealth"
fi

if wanted promtool && [[ ! -x "$BIN/promtool" ]]; then
  dir="$CACHE_ROOT/src/prometheus-$PROMETHEUS_VERSION"
  mkdir -p "$dir"; cd "$dir"
  [[ -f go.mod ]] || printf 'module videogen.local/promtoolbuild\n\ngo 1.25.0\n' > go.mod
  log "promtool: resolving modules (Prometheus $PROMETHEUS_VERSION; first time only, several minutes on 2 cores)"
  go get -tool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >/dev/null
  log "promtool: building ..."
  start=$SECONDS
  go build -trimpath -ldflags "-s -w" -o "$BIN/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
  mv "$BIN/promtool.tmp" "$BIN/promtool"
  log "promtool: built in $((SECONDS-start))s"
fi

if [[ -x "$BIN/luahealth" && -x "$BIN/promtool" ]]; then
  touch "$STAMP"
  log "tools ready in $BIN"
fi
echo "$BIN"
