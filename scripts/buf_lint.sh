#!/usr/bin/env bash
# buf lint when npm's @bufbuild/buf is available (installed into .tools/ by this script when npm exists).
set -uo pipefail
cd "$(dirname "$0")/.."
buf=.tools/node_modules/.bin/buf
if [ ! -x "$buf" ] && command -v npm >/dev/null; then
  npm install --silent --prefix .tools @bufbuild/buf@1 >/dev/null 2>&1 || true
fi
if [ -x "$buf" ]; then
  (cd proto && "../$buf" lint) && echo "buf lint: ok"
else
  echo "buf lint: skipped (npm or @bufbuild/buf unavailable)"
fi
