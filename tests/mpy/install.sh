#!/bin/sh
# Install the MicroPython WebAssembly port pinned in tests/mpy/portable.json into <repo>/.deps
# (or $SITE_AGENT_NODE_MODULES/..). Idempotent: does nothing when the pinned version is there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
command -v node >/dev/null || { echo "install.sh: node (>= 18) is required" >&2; exit 2; }
command -v npm >/dev/null || { echo "install.sh: npm is required" >&2; exit 2; }
spec=$(node -e 'const m = require(process.argv[1]).micropython; console.log(m.package + "@" + m.version)' "$here/portable.json")
prefix=${SITE_AGENT_NODE_MODULES:+$(dirname "$SITE_AGENT_NODE_MODULES")}
prefix=${prefix:-$repo/.deps}
pj="$prefix/node_modules/${spec%@*}/package.json"
if [ -f "$pj" ] && node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' "$pj" "${spec##*@}"; then
    exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-save --no-audit --no-fund "$spec"
