#!/usr/bin/env bash
# Builds a real Kubernetes control plane from Go modules, for the member clusters of the tests and of
# `cafe-playground --clusters kube`:
#   kube-apiserver, kube-controller-manager, kube-scheduler  from k8s.io/kubernetes
#   etcd                                                      from go.etcd.io/etcd/server/v3
#
#   scripts/control-plane.sh build   build what is missing (idempotent), print the bin directory
#   scripts/control-plane.sh bin     print the bin directory (exit 1 when the build is not there)
#
# Everything comes from the Go module proxy by module name with the ordinary `go` client. Nothing is
# committed: the wrapper modules, the module cache and the binaries live under
# ${CAFE_CACHE:-~/.cache/cafe-federation}, keyed by version, so that a second run does nothing.
set -euo pipefail

K8S_VERSION="${CAFE_K8S_VERSION:-1.34.4}"
ETCD_VERSION="${CAFE_ETCD_VERSION:-3.6.16}"
CACHE="${CAFE_CACHE:-$HOME/.cache/cafe-federation}"
BIN="$CACHE/control-plane-k8s$K8S_VERSION-etcd$ETCD_VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
export GOPATH="${GOPATH:-$CACHE/go}"

have_all() {
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

build_kubernetes() {
  local src="$CACHE/src/k8s-$K8S_VERSION" minor staging gomod ld
  minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  staging="v0.${K8S_VERSION#1.}"
  mkdir -p "$src"
  cd "$src"
  cat > go.mod <<EOF
module cafe.local/control-plane

go 1.24.0
EOF
  # k8s.io/kubernetes requires its staging modules at v0.0.0, which is not published: route each one to
  # the tag released with it. The list comes from the module's own go.mod, not from a copy.
  gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" |
    awk -v v="$staging" '{ print "replace " $1 " => " $1 " " v }' >> go.mod
  # The godebug line of upstream's go.mod keeps its runtime defaults when built by a newer Go.
  if grep -qE '^godebug ' "$gomod"; then grep -E '^godebug ' "$gomod" >> go.mod; fi
  cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
  go get "k8s.io/kubernetes@v$K8S_VERSION"
  # The version stamps of upstream's hack/lib/version.sh. A module zip has no git history, so the
  # commit is left empty rather than upstream's unexpanded "$Format:%H$".
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitCommit= -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  local out="$BIN.partial-k8s"
  rm -rf "$out" && mkdir -p "$out" "$BIN"
  go build -trimpath -tags=selinux,notest -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
  # Only complete binaries reach the cache: an interrupted build leaves nothing that looks done.
  mv "$out"/kube-apiserver "$out"/kube-controller-manager "$out"/kube-scheduler "$BIN/"
  rmdir "$out"
}

build_etcd() {
  # etcd's server module has replace directives of its own, so it gets its own wrapper module: its
  # grpc and otel requirements then do not move the Kubernetes build's dependency graph either.
  local src="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$src"
  cd "$src"
  cat > go.mod <<EOF
module cafe.local/etcd

go 1.24.0
EOF
  cat > tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  mkdir -p "$BIN"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.partial" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.partial" "$BIN/etcd"
}

case "${1:-build}" in
  bin)
    have_all || { echo "control plane not built: run scripts/control-plane.sh build" >&2; exit 1; }
    echo "$BIN"
    ;;
  build)
    if ! have_all; then
      command -v go >/dev/null || { echo "control-plane.sh: Go is needed (go 1.24 or newer)" >&2; exit 1; }
      command -v python3 >/dev/null || { echo "control-plane.sh: python3 is needed" >&2; exit 1; }
      # One build at a time: two would rewrite each other's wrapper modules.
      mkdir -p "$CACHE"
      exec 9>"$CACHE/.build.lock"
      flock 9
    fi
    if ! have_all; then
      echo "building the control plane (Kubernetes v$K8S_VERSION, etcd v$ETCD_VERSION) into $BIN" >&2
      start=$(date +%s)
      [[ -x "$BIN/etcd" ]] || (build_etcd) >&2
      [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kube-scheduler" ]] ||
        (build_kubernetes) >&2
      echo "control plane built in $(( $(date +%s) - start )) s" >&2
      du -sh "$BIN" "$GOPATH/pkg/mod" 2>/dev/null | sed 's/^/disk: /' >&2 || true
    fi
    echo "$BIN"
    ;;
  *)
    echo "usage: $0 build|bin" >&2
    exit 2
    ;;
esac
