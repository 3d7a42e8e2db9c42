#!/usr/bin/env bash
# Regenerates the committed Python bindings under vigil/<area>/v1/ from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
mapfile -t files < <(cd proto && find vigil -name '*.proto' | sort)
# Drop stale generated files so a removed .proto leaves nothing behind.
find vigil -path '*/v1/*_pb2*.py*' -delete
PATH="$BIN:$PATH" "$PY" -m grpc_tools.protoc -I proto \
  --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. "${files[@]}"
for d in $(cd proto && find vigil -type d); do
  [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
# protoc writes a _grpc module for every file; keep only those that define a service.
for f in $(find vigil -path '*/v1/*_pb2_grpc.py'); do
  grep -q "Stub" "$f" || rm -f "$f" "${f}i"
done
