# Sourced by the project's scripts: puts the project's Node runtime, the
# Debian kubectl we unpack, and node_modules/.bin first on PATH.
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
# kubectl 1.20 from Debian's kubernetes-client, unpacked here because the
# machine's /usr/bin/kubectl may belong to another package.
export KUBECTL="$EDGELB_TOOLS/kubectl/usr/bin/kubectl"
export PATH="$EDGELB_ROOT/node_modules/.bin:$PATH"
