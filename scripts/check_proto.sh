#!/usr/bin/env bash
# Regenerate the bindings into a scratch copy and fail if they differ from what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r proto scripts "$tmp/"
mkdir -p "$tmp/vigil"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" bash "$tmp/scripts/gen_proto.sh" >/dev/null 2>&1 || { echo "proto-check: generation failed" >&2; exit 1; }
stale=0
while IFS= read -r f; do
  rel=${f#"$tmp/"}
  if ! cmp -s "$f" "$rel"; then echo "proto-check: stale or missing $rel" >&2; stale=1; fi
done < <(find "$tmp/vigil" -name '*_pb2*')
while IFS= read -r f; do
  [ -f "$tmp/$f" ] || { echo "proto-check: $f has no .proto behind it" >&2; stale=1; }
done < <(find vigil -path '*/v1/*_pb2*' -not -path '*/__pycache__/*')
if [ $stale -ne 0 ]; then echo "proto-check: run 'make proto' and commit the result" >&2; exit 1; fi
echo "proto-check: bindings are fresh"
