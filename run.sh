#!/usr/bin/env bash
# Run the Segue orchestrator with the demo workers against local RabbitMQ and
# PostgreSQL (started here if they are down). Ctrl-C stops everything.
#
#   ./run.sh                 orchestrator + demo workers
#   WORKERS=3 ./run.sh       three demo worker processes
set -euo pipefail
cd "$(dirname "$0")"

ci/setup.sh
ci/services.sh

export SEGUE_AMQP_URL=${SEGUE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
export SEGUE_DATABASE_URL=${SEGUE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/segue}
export SEGUE_WORKFLOW_CONFIG=${SEGUE_WORKFLOW_CONFIG:-config/workflow_config.json}
export SEGUE_WEB_ENABLED=${SEGUE_WEB_ENABLED:-true}  # the read-only jobs page, for the demo
WORKERS=${WORKERS:-2}

.venv/bin/segue workflows check "$SEGUE_WORKFLOW_CONFIG"
.venv/bin/segue db upgrade

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

.venv/bin/segue serve &
pids+=($!)
for _ in $(seq "$WORKERS"); do
  .venv/bin/segue worker run segue.demo:worker &
  pids+=($!)
done

cat <<MSG

Segue is running (orchestrator + $WORKERS demo workers). In another terminal:
  .venv/bin/segue workflows list
  .venv/bin/segue submit energy_plan -p horizon_years=20 -p step_seconds=2 --wait
  .venv/bin/segue jobs show JOB_ID
  .venv/bin/segue jobs list --status running
Jobs in a browser: http://127.0.0.1:${SEGUE_HTTP_PORT:-8080}/jobs
Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
