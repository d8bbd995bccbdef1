#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on 127.0.0.1; start them if they are down.
# Exits non-zero (never skips) when a service cannot be brought up.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port seconds
  for _ in $(seq "$3"); do
    port_open "$2" && return 0
    sleep 1
  done
  echo "error: $1 is not answering on 127.0.0.1:$2" >&2
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    echo "error: PostgreSQL is down and pg_ctlcluster is not installed" >&2
    exit 1
  fi
fi
if ! port_open 5672; then
  echo "starting RabbitMQ"
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached
  else
    echo "error: RabbitMQ is down and rabbitmq-server is not installed" >&2
    exit 1
  fi
fi
wait_for PostgreSQL 5432 60 || exit 1
wait_for RabbitMQ 5672 90 || exit 1
# RabbitMQ opens its port before it accepts logins; wait until it does.
if command -v rabbitmqctl >/dev/null; then
  timeout 90 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
# The OMOTES drop-in talks to OMOTES clients and Celery workers in vhosts of their own.
if command -v rabbitmqctl >/dev/null; then
  for vhost in omotes omotes_celery; do
    rabbitmqctl add_vhost "$vhost" >/dev/null 2>&1 < /dev/null || true
    rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null 2>&1 < /dev/null || true
  done
fi
echo "PostgreSQL and RabbitMQ are up"
