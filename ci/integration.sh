#!/usr/bin/env bash
# Integration tests against real RabbitMQ and PostgreSQL (URLs from
# SEGUE_TEST_AMQP_URL / SEGUE_TEST_DATABASE_URL, default the local services).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest integration_test -q "$@"
