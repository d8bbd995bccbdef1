#!/bin/sh
# Vhosts and users of an OMOTES deployment with Segue (idempotent): the OMOTES ones
# as omotes-system's rabbitmq/rabbitmq-init.sh makes them, and Segue's, through
# RabbitMQ's management API.
set -eu
API=http://rabbitmq:15672/api

put() {  # path json
  curl -fsS -u "$RABBITMQ_ROOT_USER:$RABBITMQ_ROOT_PASSWORD" \
    -H "content-type: application/json" -X PUT "$API/$1" -d "$2" >/dev/null
}
user() {  # name password
  put "users/$1" "{\"password\": \"$2\", \"tags\": \"\"}"
}
allow() {  # vhost user
  put "permissions/$1/$2" '{"configure": ".*", "write": ".*", "read": ".*"}'
}

for vhost in omotes omotes_celery segue; do
  put "vhosts/$vhost" '{}'
  allow "$vhost" "$RABBITMQ_ROOT_USER"
done
user "$RABBITMQ_OMOTES_USER_NAME" "$RABBITMQ_OMOTES_USER_PASSWORD"
allow omotes "$RABBITMQ_OMOTES_USER_NAME"
user "$RABBITMQ_CELERY_USER_NAME" "$RABBITMQ_CELERY_USER_PASSWORD"
allow omotes_celery "$RABBITMQ_CELERY_USER_NAME"
# Segue talks on all three vhosts: its own, the clients' and the workers'.
user "$RABBITMQ_SEGUE_USER_NAME" "$RABBITMQ_SEGUE_USER_PASSWORD"
for vhost in omotes omotes_celery segue; do
  allow "$vhost" "$RABBITMQ_SEGUE_USER_NAME"
done
echo "vhosts omotes, omotes_celery and segue are ready"
