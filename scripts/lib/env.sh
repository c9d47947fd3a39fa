# Sourced by the project's scripts: puts the project's Node runtime and
# node_modules/.bin first on PATH, and names the kubectl scripts/setup builds.
EDGELB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export EDGELB_ROOT
EDGELB_NODE_VERSION=24.21.0
EDGELB_TOOLS="$EDGELB_ROOT/.tools"
if [ -x "$EDGELB_TOOLS/node/bin/node" ]; then
  EDGELB_NODEDIR="$EDGELB_TOOLS/node"
  PATH="$EDGELB_TOOLS/node/bin:$PATH"
else
  EDGELB_NODEDIR=$(dirname "$(dirname "$(command -v node)")")
fi
export EDGELB_NODEDIR
# kubectl of the Kubernetes release pinned in tools/kube (the machine's
# /usr/bin/kubectl, if any, may be another version).
export KUBECTL="$EDGELB_TOOLS/kube/bin/kubectl"
export PATH="$EDGELB_ROOT/node_modules/.bin:$PATH"
