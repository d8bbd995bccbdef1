#!/usr/bin/env bash
# Regenerate the Python code of Segue's OMOTES wire messages from
# src/segue/omotes/wire/omotes_wire.proto (with type stubs for mypy).
set -euo pipefail
cd "$(dirname "$0")/.."
wire=src/segue/omotes/wire
.venv/bin/python -m grpc_tools.protoc \
  --proto_path="$wire" \
  --python_out="$wire" \
  --mypy_out="$wire" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy \
  "$wire/omotes_wire.proto"
echo "generated $wire/omotes_wire_pb2.py and .pyi"
