#!/usr/bin/env bash
# Runs the webhook example end to end and checks how it ends: payment_hook.py (Python standard
# library) serves checkPaymentMethod, `serve --handlers handlers.yaml` runs the order and payment
# components; a visa payment must end Validated, a cash one Failed (the hook's REJECT), and with
# a secret the script does not share, a visa payment must end Failed through onError (the script
# answers 401, the history records the failed call). Stops everything it started.
# Env: BIN (default: the debug binary in $CARGO_TARGET_DIR or ./target).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
BIN=${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/xcomponent-ai}
# How long to wait for a process to answer or a flow to end.
WAIT_SECONDS=30

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hook_port=$(free_port)
PAYMENT_HOOK_SECRET=example-secret python3 "$here/payment_hook.py" "$hook_port" >"$work/hook.log" 2>&1 &
pids+=($!)

run_case() { # serve's secret, payment method, expected final state
  local secret=$1 method=$2 expected=$3 port
  port=$(free_port)
  PAYMENT_HOOK_SECRET=$secret PAYMENT_HOOK_PORT=$hook_port \
    "$BIN" serve --store memory --port "$port" --handlers "$here/handlers.yaml" \
    "$root/examples/order-payment/order.yaml" "$root/examples/order-payment/payment.yaml" \
    >"$work/serve-$method.log" 2>&1 &
  local serve=$!
  pids+=("$serve")
  if ! python3 - "$port" "$method" "$expected" "$WAIT_SECONDS" <<'PY'
import http.client, json, sys, time
port, method, expected, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def call(verb, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(verb, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read() or b"null")

deadline = time.time() + wait
while True:
    try:
        if call("GET", "/health")[0] == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("serve did not start")
    time.sleep(0.2)
status, created = call("POST", "/api/components/PaymentComponent/instances", {
    "machineName": "Payment",
    "context": {"orderId": "O-" + method, "amount": 10, "paymentMethod": method}})
assert status == 201, (status, created)
payment = created["instanceId"]
status, sent = call("POST", f"/api/instances/{payment}/events", {"type": "PROCESS"})
assert status == 200 and sent["newState"] == "Processing", (status, sent)
while True:
    history = call("GET", f"/api/instances/{payment}/history")[1]["history"]
    if history[-1]["stateAfter"] == expected:
        break
    if time.time() > deadline:
        sys.exit(f"{method}: payment still in {history[-1]['stateAfter']}, expected {expected}")
    time.sleep(0.1)
hook = [event for event in history if event["eventType"] == "hook:checkPaymentMethod"]
assert len(hook) == 1, history
if method == "mastercard":  # signed with the wrong secret: the failed call is in the history
    assert hook[0]["payload"]["ok"] is False and "401" in hook[0]["payload"]["error"], hook
    assert history[-1]["eventType"] == "REJECT", history
else:
    assert hook[0]["payload"]["ok"] is True and hook[0]["changes"]["set"]["checkedMethod"] == method, hook
print(f"webhook example: {method} payment ended {expected}; hook reply {json.dumps(hook[0]['payload'])}")
PY
  then
    echo "--- serve log" >&2; cat "$work/serve-$method.log" >&2
    echo "--- hook log" >&2; cat "$work/hook.log" >&2
    exit 1
  fi
  kill "$serve"
  wait "$serve" 2>/dev/null || true
}

run_case example-secret visa Validated
run_case example-secret cash Failed
# serve signs with a secret the script does not share: 401, not retried, onError (REJECT).
run_case wrong-secret mastercard Failed
