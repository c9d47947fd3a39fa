#!/bin/sh
# The Kubernetes release go.mod pins (go mod tidy may put the require in a block).
set -eu
cd "$(dirname "$0")"
v=$(awk '{ for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v[0-9]+\.[0-9]+\.[0-9]+$/) { print $(i + 1); exit } }' go.mod)
[ -n "$v" ] || { echo "tools/kube/version.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
echo "$v"
