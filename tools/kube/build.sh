#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl of the release
# go.mod pins into $1/bin (scripts/setup calls this; it rebuilds only when
# go.mod, go.sum or this file change). Everything comes from the Go module
# proxy; the version is stamped in like the release build does, so
# `kubectl version` and the API server's /version tell the truth.
set -euo pipefail
cd "$(dirname "$0")"
out=$1
GO=${EDGELB_GO:-/usr/local/go/bin/go}
v=$(./version.sh)
minor=$(echo "$v" | cut -d. -f2)
pkgs=k8s.io/component-base/version
cgv=k8s.io/client-go/pkg/version
ld="-s -w"
for p in $pkgs $cgv; do
  ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
rm -rf "$out/bin.new"
mkdir -p "$out/bin.new"
"$GO" build -trimpath -ldflags "$ld" -o "$out/bin.new/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
# A binary without its version panics at start (component-base parses it).
"$out/bin.new/kubectl" version --client | grep -q "Client Version: $v\$" || { echo "build.sh: kubectl does not report $v" >&2; exit 1; }
rm -rf "$out/bin"
mv "$out/bin.new" "$out/bin"
