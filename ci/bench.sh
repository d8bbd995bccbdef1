#!/usr/bin/env bash
# Benchmark suite: Segue side by side with a bare baseline of its design.
#   ci/bench.sh            full run (3 rounds; bench/results/latest.{md,json})
#   ci/bench.sh --quick    every scenario at a small size, 1 round (< 2 minutes)
#   ci/bench.sh --profile  py-spy profile of `segue serve` draining (bench/results/profile.txt)
# Other options: .venv/bin/python -m bench.suite --help. Figures are reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
ci/services.sh
if [[ " $* " == *" --profile "* ]] && ! .venv/bin/python -m pip show py-spy >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet py-spy
fi
PATH="$PWD/.venv/bin:$PATH" exec .venv/bin/python -m bench.suite "$@"
