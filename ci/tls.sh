#!/usr/bin/env bash
# TLS services for integration_test/tls: a throwaway CA, a server certificate for
# localhost / 127.0.0.1, TLS on the local PostgreSQL cluster, and a second RabbitMQ
# node that speaks amqps://. Idempotent: run it as often as you like.
#
#   PostgreSQL  the existing local cluster gets `ssl = on` (reloaded, not restarted);
#               plain connections keep working. Certificate and key are copied into
#               its data directory, so a restart never finds them missing.
#   RabbitMQ    the main node (5672) is left alone: a separate node segue-tls@localhost
#               runs from $TLS_DIR/rabbitmq, plain AMQP on 5682, amqps on 5681,
#               distribution on 25682. Stop it with
#               `rabbitmqctl -n segue-tls@localhost stop`.
#
# Needs root (files are handed to the postgres and rabbitmq users), openssl, psql
# and a running PostgreSQL (ci/services.sh starts it). Exports nothing; the URLs
# the tests use by default are printed at the end.
set -euo pipefail

TLS_DIR=/tmp/segue-tls
NODE=segue-tls@localhost
AMQPS_PORT=5681
AMQP_PORT=5682
DIST_PORT=25682
PG_URL=postgresql://postgres@127.0.0.1:5432/postgres
RMQ_DIR=$TLS_DIR/rabbitmq

fail() { echo "error (ci/tls.sh): $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ "$(id -u)" = 0 ] || fail "run as root: certificates are installed for the postgres and rabbitmq users"
for tool in openssl psql rabbitmq-server rabbitmqctl rabbitmq-diagnostics flock; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

install -d -m 0755 "$TLS_DIR"
exec 9>"$TLS_DIR/.lock"
flock 9  # concurrent runs (two CI jobs on one machine) take turns

# --- certificates -------------------------------------------------------------

certs_valid() {
  [ -s "$TLS_DIR/ca.pem" ] && [ -s "$TLS_DIR/server.pem" ] && [ -s "$TLS_DIR/server.key" ] \
    && [ -s "$TLS_DIR/other-ca.pem" ] \
    && openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.pem" >/dev/null \
    && openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1
}

new_ca() {  # key-file cert-file common-name
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout "$1" -out "$2" -subj "/CN=$3" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

generate_certs() {
  local work
  work=$(mktemp -d "$TLS_DIR/.new.XXXXXX")
  new_ca "$work/ca.key" "$work/ca.pem" "Segue test CA"
  # A CA that signed nothing here: the tests' "wrong CA" that must be refused.
  new_ca "$work/other-ca.key" "$work/other-ca.pem" "Segue unrelated CA"
  openssl req -newkey rsa:2048 -nodes -keyout "$work/server.key" -out "$work/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
  cat >"$work/server.ext" <<'EOF'
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 30 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
  chmod 0600 "$work"/*.key
  chmod 0644 "$work/ca.pem" "$work/other-ca.pem" "$work/server.pem"
  mv -f "$work/ca.key" "$work/ca.pem" "$work/other-ca.pem" "$work/server.key" "$work/server.pem" \
    "$TLS_DIR/"
  rm -rf "$work"
  echo "generated a CA and a certificate for localhost in $TLS_DIR"
}

certs_valid || generate_certs

# --- PostgreSQL -----------------------------------------------------------------

psql_admin() { psql "$PG_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

psql_admin "SELECT 1" >/dev/null || fail "PostgreSQL does not answer at $PG_URL (run ci/services.sh)"
pg_data=$(psql_admin "SHOW data_directory")
pg_tls=$pg_data/segue-tls
install -d -o postgres -g postgres -m 0700 "$pg_tls"
changed=0
for name in server.pem server.key; do
  if ! cmp -s "$TLS_DIR/$name" "$pg_tls/$name"; then
    install -o postgres -g postgres -m 0600 "$TLS_DIR/$name" "$pg_tls/$name"
    changed=1
  fi
done
want_cert=$pg_tls/server.pem
want_key=$pg_tls/server.key
if [ "$changed" = 1 ] || [ "$(psql_admin "SHOW ssl")" != on ] \
  || [ "$(psql_admin "SHOW ssl_cert_file")" != "$want_cert" ] \
  || [ "$(psql_admin "SHOW ssl_key_file")" != "$want_key" ]; then
  psql_admin "ALTER SYSTEM SET ssl_cert_file = '$want_cert'"
  psql_admin "ALTER SYSTEM SET ssl_key_file = '$want_key'"
  psql_admin "ALTER SYSTEM SET ssl = on"
  psql_admin "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 20); do
    [ "$(psql_admin "SHOW ssl")" = on ] && break
    sleep 0.5
  done
  echo "PostgreSQL: TLS enabled with the certificate in $pg_tls"
fi
[ "$(psql_admin "SHOW ssl")" = on ] \
  || fail "PostgreSQL did not turn ssl on; see its log (a bad certificate is logged at reload)"
psql "postgresql://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem" \
  -X -q -At -c "SELECT 1" >/dev/null || fail "PostgreSQL refuses sslmode=verify-full connections"

# --- RabbitMQ: a second node -------------------------------------------------------

# rabbitmq-server and rabbitmqctl run as root switch to the rabbitmq user (keeping this
# environment), so the node and the CLI share /var/lib/rabbitmq/.erlang.cookie.
rmq_env() {
  env RABBITMQ_NODENAME="$NODE" \
    RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
    RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
    RABBITMQ_PID_FILE="$RMQ_DIR/node.pid" \
    RABBITMQ_DIST_PORT="$DIST_PORT" \
    "$@"
}

node_running() { rabbitmq-diagnostics -n "$NODE" -q ping >/dev/null 2>&1; }

install -d -o rabbitmq -g rabbitmq -m 0750 "$RMQ_DIR" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
rmq_changed=0
for name in ca.pem server.pem server.key; do
  if ! cmp -s "$TLS_DIR/$name" "$RMQ_DIR/$name"; then
    install -o rabbitmq -g rabbitmq -m 0600 "$TLS_DIR/$name" "$RMQ_DIR/$name"
    rmq_changed=1
  fi
done
write_if_changed() {  # path; content on stdin
  local content
  content=$(cat)
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$content" ]; then
    printf '%s\n' "$content" >"$1"
    chown rabbitmq:rabbitmq "$1"
    rmq_changed=1
  fi
}
# Clients are not asked for certificates: the tests prove server authentication.
write_if_changed "$RMQ_DIR/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$AMQP_PORT
listeners.ssl.local = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $RMQ_DIR/ca.pem
ssl_options.certfile = $RMQ_DIR/server.pem
ssl_options.keyfile = $RMQ_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
write_if_changed "$RMQ_DIR/enabled_plugins" <<<"[]."
write_if_changed "$RMQ_DIR/advanced.config" <<<"[]."
# Replaces /etc/rabbitmq/rabbitmq-env.conf (which names the main node) for this node.
write_if_changed "$RMQ_DIR/rabbitmq-env.conf" <<'EOF'
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF

if node_running && [ "$rmq_changed" = 1 ]; then
  echo "RabbitMQ $NODE: configuration or certificate changed, restarting it"
  rabbitmqctl -n "$NODE" -q stop >/dev/null
  for _ in $(seq 30); do
    node_running || break
    sleep 1
  done
fi
if ! node_running; then
  if port_open "$AMQPS_PORT" || port_open "$AMQP_PORT"; then
    fail "ports $AMQPS_PORT/$AMQP_PORT are taken by something other than $NODE"
  fi
  echo "starting RabbitMQ node $NODE (amqps on $AMQPS_PORT, log in $RMQ_DIR/log)"
  rmq_env rabbitmq-server -detached 9>&-  # the node must not inherit the lock
fi
for _ in $(seq 90); do
  port_open "$AMQPS_PORT" && break
  sleep 1
done
port_open "$AMQPS_PORT" || fail "RabbitMQ $NODE is not answering on $AMQPS_PORT; see $RMQ_DIR/log"
timeout 90 rabbitmqctl -n "$NODE" -q await_startup >/dev/null \
  || fail "RabbitMQ $NODE did not finish booting; see $RMQ_DIR/log"

cat <<EOF
TLS services are up. The TLS integration tests use, unless these are set:
  SEGUE_TEST_TLS_AMQP_URL=amqps://guest:guest@localhost:$AMQPS_PORT/?cafile=$TLS_DIR/ca.pem
  SEGUE_TEST_TLS_DATABASE_URL=postgresql://postgres@localhost:5432/postgres?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem
EOF
