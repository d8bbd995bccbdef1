#!/usr/bin/env bash
# mypy --strict over src, tests and benchmarks (configured in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mypy
