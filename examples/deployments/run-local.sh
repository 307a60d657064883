#!/usr/bin/env bash
# Starts one deployment mode of the order/payment example as local processes against the local
# servers (what the compose file of that mode runs in containers), drives a paid and a refused
# order through its REST API, checks how each ended, and stops everything.
#
# Usage: run-local.sh MODE   with MODE one of:
#   monolith            serve both components, embedded SQLite store, in-memory bus
#   monolith-postgres   serve both components on PostgreSQL
#   redis               order and payment runtimes over Redis streams, dashboard
#   redis-only          the same with the Redis store too (no PostgreSQL)
#   rabbitmq            order and payment runtimes over RabbitMQ, PostgreSQL store, dashboard
#   kafka               order and payment runtimes over Kafka, PostgreSQL store, dashboard
#   nats                order and payment runtimes over NATS JetStream, PostgreSQL store, dashboard
# Env: BIN (default: the debug binary in $CARGO_TARGET_DIR or ./target), REDIS_URL, AMQP_URL,
#      KAFKA_URL, NATS_URL, POSTGRES_URL (the local servers by default).
set -euo pipefail
mode=${1:?usage: run-local.sh MODE}
root="$(cd "$(dirname "$0")/../.." && pwd)"
BIN=${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/xcomponent-ai}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
KAFKA_URL=${KAFKA_URL:-kafka://127.0.0.1:9092}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
# How long to wait for a process to answer or a flow to end.
WAIT_SECONDS=60

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Unique component names, so queues and tables left by other runs are not shared.
suffix="D$(date +%s%N)"
sed "s/OrderComponent/OrderComponent$suffix/g; s/PaymentComponent/PaymentComponent$suffix/g" \
  "$root/examples/order-payment/order.yaml" >"$work/order.yaml"
sed "s/OrderComponent/OrderComponent$suffix/g; s/PaymentComponent/PaymentComponent$suffix/g" \
  "$root/examples/order-payment/payment.yaml" >"$work/payment.yaml"
order="OrderComponent$suffix"
payment="PaymentComponent$suffix"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start() { # log name, args...
  local name=$1; shift
  (cd "$work" && exec "$BIN" "$@" >"$work/$name.log" 2>&1) &
  pids+=($!)
}

distributed() { # broker, store for the runtimes
  local broker=$1 store=$2
  start orders runtime order.yaml --broker "$broker" --store "$store" --name "orders-$suffix" --heartbeat-ms 1000
  start payments runtime payment.yaml --broker "$broker" --store "$store" --name "payments-$suffix" --heartbeat-ms 1000
  start dashboard dashboard --broker "$broker" --port "$port" --refresh-ms 1000
}

case "$mode" in
  monolith) start serve serve order.yaml payment.yaml --port "$port" --data-dir data --broker memory ;;
  monolith-postgres) start serve serve order.yaml payment.yaml --port "$port" --store "$POSTGRES_URL" --broker memory ;;
  redis) distributed "$REDIS_URL" "$POSTGRES_URL" ;;
  redis-only) distributed "$REDIS_URL" "$REDIS_URL" ;;
  rabbitmq) distributed "$AMQP_URL" "$POSTGRES_URL" ;;
  kafka) distributed "$KAFKA_URL" "$POSTGRES_URL" ;;
  nats) distributed "$NATS_URL" "$POSTGRES_URL" ;;
  *) echo "run-local.sh: unknown mode $mode" >&2; exit 2 ;;
esac

python3 - "$port" "$order" "$payment" "$mode" "$WAIT_SECONDS" <<'PY'
import http.client, json, sys, time
port, order, payment, mode, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def call(method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    return reply.status, (json.loads(data) if data else None)

def until(what, check):
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    sys.exit(f"{mode}: {what}: not within {wait}s")

if mode.startswith("monolith"):
    until("serve answers", lambda: call("GET", "/health")[0] == 200)
else:
    until("the dashboard sees both runtimes",
          lambda: len(call("GET", "/api/runtimes")[1]["runtimes"]) >= 2)
    until("both components are announced",
          lambda: {order, payment} <= {c["name"] for c in call("GET", "/api/components")[1]["components"]})

def flow(order_id, method, steps):
    status, body = call("POST", f"/api/components/{order}/instances",
                        {"machineName": "Order", "context": {"orderId": order_id, "amount": 25, "paymentMethod": method}})
    assert status in (200, 201, 202), (status, body)
    order_instance = body["instanceId"]
    status, body = call("POST", f"/api/components/{order}/instances/{order_instance}/events", {"type": "SUBMIT"})
    assert status in (200, 202), (status, body)
    def payment_instance():
        status, body = call("GET", f"/api/instances?component={payment}&q={order_id}&limit=10")
        items = (body or {}).get("items") or (body or {}).get("instances") or []
        return next((i.get("instanceId") or i.get("id") for i in items
                     if i.get("context", {}).get("orderId") == order_id), None)
    pay = until(f"payment of {order_id}", payment_instance)
    for step in steps:
        status, body = call("POST", f"/api/components/{payment}/instances/{pay}/events", {"type": step})
        assert status in (200, 202), (step, status, body)
    return order_instance

paid = flow("DEP-1", "visa", ["PROCESS", "VALIDATE", "COMPLETE"])
refused = flow("DEP-2", "cash", ["PROCESS", "REJECT"])

def state_of(instance):
    status, body = call("GET", f"/api/instances/{instance}")
    return body["instance"]["currentState"] if status == 200 else None

until("the visa order is paid", lambda: state_of(paid) == "Paid")
# A finished order leaves the live view; the dashboard reads its stored record from the order
# runtime's store (over the bus when it has no store of its own).
until("the cash order is cancelled", lambda: state_of(refused) == "Cancelled")
print(f"{mode}: a paid and a refused order went through")
PY
