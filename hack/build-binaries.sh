#!/usr/bin/env bash
# Builds the pinned control-plane, helm and S3 binaries from Go modules into a
# cache outside the repository, once. Later runs find the stamp and return at once.
#
# Usage: hack/build-binaries.sh            -> prints the bin directory on stdout's last line
# Env:   VIDEOGEN_TOOLS_CACHE  cache root (default ~/.cache/videogen-operator)
#        KUBEBUILDER_ASSETS    if it holds kube-apiserver/etcd/kubectl, those are used instead
set -euo pipefail

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
VERSITYGW_VERSION=v1.8.0

CACHE_ROOT=${VIDEOGEN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/videogen-operator}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_versitygw-${VERSITYGW_VERSION}"
BIN="$CACHE_ROOT/bin/$KEY"
STAMP="$BIN/.complete"
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm versitygw)

log() { echo "[build-binaries] $*" >&2; }

if [[ -f "$STAMP" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN" "$CACHE_ROOT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# The first build compiles ~2000 packages; two cores take a long while.
log "first-time build of Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, versitygw $VERSITYGW_VERSION"
log "into $BIN (cached for later runs; expect 20-40 minutes on 2 cores)"

have() { [[ -x "$BIN/$1" ]]; }

# Binaries the user already provides through envtest's convention.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
    if [[ -x "$KUBEBUILDER_ASSETS/$b" ]] && ! have "$b"; then
      log "using $b from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
      ln -sf "$KUBEBUILDER_ASSETS/$b" "$BIN/$b"
    fi
  done
fi

build_kubernetes() {
  local need=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do have "$b" || need+=("$b"); done
  [[ ${#need[@]} -eq 0 ]] && return 0
  local dir="$CACHE_ROOT/src/kubernetes-$K8S_VERSION"
  mkdir -p "$dir"
  cd "$dir"
  if [[ ! -f go.mod ]]; then
    log "kubernetes: resolving modules"
    cat > go.mod <<GOMOD
module videogen.local/k8sbuild

go 1.25.0
GOMOD
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > kmod.json
    local gomod
    gomod=$(python3 -c 'import json,sys;print(json.load(open("kmod.json"))["GoMod"])')
    local minor=${K8S_VERSION#v1.}
    {
      echo "require k8s.io/kubernetes $K8S_VERSION"
      # Staging modules are required at v0.0.0 and replaced by path inside the
      # kubernetes repo; from a dependency they must point at their published tags.
      grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk -v v="v0.$minor" '{print "replace " $1 " => " $1 " " v}'
    } >> go.mod
    go mod tidy >/dev/null 2>&1 || true
  fi
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local minor_num; minor_num=$(echo "$K8S_VERSION" | cut -d. -f2)
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in $pkg $cpkg; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor_num -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  local i=0
  for b in "${need[@]}"; do
    i=$((i+1))
    log "kubernetes: building $b ($i/${#need[@]}) ..."
    local start=$SECONDS
    go build -trimpath -ldflags "$ld" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$BIN/$b.tmp" "$BIN/$b"
    log "kubernetes: $b built in $((SECONDS-start))s"
  done
}

build_etcd() {
  have etcd && return 0
  local dir="$CACHE_ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"; cd "$dir"
  [[ -f go.mod ]] || printf 'module videogen.local/etcdbuild\n\ngo 1.25.0\n' > go.mod
  log "etcd: resolving modules"
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
  log "etcd: building ..."
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_install() {  # name module@version
  have "$1" && return 0
  log "$1: building $2 ..."
  GOBIN="$BIN/.gobin" go install -trimpath -ldflags "-s -w" "$2"
  mv "$BIN/.gobin/$(basename "${2%@*}")" "$BIN/$1"
}

build_etcd
build_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_install versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
build_kubernetes

for b in "${WANT[@]}"; do
  have "$b" || { log "missing $b after build"; exit 1; }
done
touch "$STAMP"
log "all binaries ready in $BIN"
echo "$BIN"
