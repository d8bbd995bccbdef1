#!/usr/bin/env bash
# Unit tests: pure code, no services.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest unit_test -q "$@"
