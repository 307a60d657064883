#!/usr/bin/env python3
"""checkPaymentMethod as a webhook: the PaymentComponent's triggeredMethod served over HTTP
with nothing but the Python standard library.

The runtime POSTs {method, hook, component, machine, instanceId, state, event, payload, context,
messageId} with an Idempotency-Key header (the same on every retry) and, with a secret, an
X-Xcomponent-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
This endpoint checks the signature (401 otherwise), remembers the replies it gave by key (a
retried call gets the same answer), and answers with a data patch and a sendToSelf action.

Run: PAYMENT_HOOK_SECRET=change-me python3 payment_hook.py [port]   (default port 8181)
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("PAYMENT_HOOK_SECRET", "").encode()
ACCEPTED_METHODS = {"visa", "mastercard", "cb"}
# Signatures older than this are refused (replay of a captured request).
MAX_SKEW_SECONDS = 300
# Replies by idempotency key, so a retried call is answered the same way (bounded).
REPLIES = {}
MAX_REMEMBERED = 10_000


def signature_ok(header, body):
    if not SECRET:
        return True
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > MAX_SKEW_SECONDS:
        return False
    expected = hmac.new(SECRET, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def decide(call):
    method = call.get("context", {}).get("paymentMethod", "")
    decision = "VALIDATE" if method in ACCEPTED_METHODS else "REJECT"
    return {
        "context": {"checkedMethod": method},
        "actions": [{"type": "sendToSelf", "event": decision}],
    }


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not signature_ok(self.headers.get("X-Xcomponent-Signature", ""), body):
            self.send_error(401, "bad signature")
            return
        key = self.headers.get("Idempotency-Key", "")
        reply = REPLIES.get(key)
        if reply is None:
            reply = decide(json.loads(body))
            if len(REPLIES) >= MAX_REMEMBERED:
                REPLIES.pop(next(iter(REPLIES)))
            REPLIES[key] = reply
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        sys.stderr.write("payment_hook: " + format % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8181
    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    print(f"payment_hook listening on http://127.0.0.1:{port}/check", flush=True)
    server.serve_forever()
