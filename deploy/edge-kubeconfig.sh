#!/bin/sh
# Mints the kubeconfig an edge appliance runs with: the API server and CA of
# your current kubectl context, and a bound token of the edgelb-edge
# ServiceAccount (deploy/rbac.yaml), nothing else.
#
#   deploy/edge-kubeconfig.sh [--duration 8760h] [--server https://api.example:6443] > edge.kubeconfig
#
# Put the file on the edge and point kubernetes.kubeconfig at it. The token
# expires after --duration (the API server may cap it with
# --service-account-max-token-expiration); mint a new one before then.
set -eu
KUBECTL=${KUBECTL:-kubectl}
duration=8760h
server=
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "edge-kubeconfig.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$server" ] || server=$("$KUBECTL" config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
ca=$("$KUBECTL" config view --raw --minify -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
if [ -z "$ca" ]; then
  cafile=$("$KUBECTL" config view --raw --minify -o 'jsonpath={.clusters[0].cluster.certificate-authority}')
  [ -n "$cafile" ] || { echo "edge-kubeconfig.sh: the current context names no CA" >&2; exit 1; }
  ca=$(base64 -w0 < "$cafile")
fi
token=$("$KUBECTL" create token edgelb-edge --namespace edgelb-system --duration "$duration")
cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: edgelb
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: edgelb-edge
  user:
    token: $token
contexts:
- name: edgelb
  context:
    cluster: edgelb
    user: edgelb-edge
current-context: edgelb
YAML
