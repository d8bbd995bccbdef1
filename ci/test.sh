#!/usr/bin/env bash
# Every check: install, lint, typecheck, unit tests, integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
ci/setup.sh
ci/services.sh
ci/tls.sh  # TLS services for integration_test/tls (needs root; see the script)
ci/lint.sh
ci/typecheck.sh
ci/unit.sh
ci/integration.sh
echo "all checks passed in $(( $(date +%s) - start ))s"
