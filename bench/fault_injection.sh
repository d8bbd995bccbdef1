#!/usr/bin/env bash
# The fault-injection suite in its long mode: thousands of jobs while orchestrators
# and workers are SIGKILLed, the orchestrators are frozen (SIGSTOP) past a heartbeat
# timeout, RabbitMQ and PostgreSQL restart (one round of faults per 300 jobs), task
# messages are delivered twice, jobs are cancelled before, at and after their
# submission, and crafted duplicate, reordered and stale worker events arrive.
# Prints the seed first and one summary line at the end; every problem count in it
# (lost, duplicated, stuck, wrong, cancelled_ran, cancel_lost, double_run,
# false_lost, update_order, dead_letters) must be 0.
#
#   bench/fault_injection.sh                          3000 jobs, 5 submitted per second
#   SEGUE_FAULT_JOBS=1000 bench/fault_injection.sh    another number of jobs
#   SEGUE_FAULT_RATE=8 bench/fault_injection.sh       submit faster
#   SEGUE_FAULT_SEED=1234 bench/fault_injection.sh    replay the random choices of a run
#
# Needs local RabbitMQ and PostgreSQL that this user may stop and start
# (rabbitmqctl, pg_ctlcluster): the run restarts both, and leaves both running.
set -euo pipefail
cd "$(dirname "$0")/.."
export SEGUE_FAULT_JOBS="${SEGUE_FAULT_JOBS:-3000}"
exec .venv/bin/pytest integration_test/faults/test_fault_injection.py -s -q -p no:cacheprovider "$@"
