#!/usr/bin/env bash
# A well-behaved client's throughput while another process floods `xcomponent-ai serve` with
# new connections from one address (fault injection for the per-address connection rate limit).
#
# The server hosts the order/payment example (memory store) on a free loopback port. The good
# client (127.0.0.2, one connection per request, as a simple HTTP client does) alternates
# `GET /api/components` and an Order creation, alone, then beside the flood. The flood (127.0.0.1,
# its own process) cycles connections as fast as it can: connect, send the start of a request
# head, reset. With IDLE_WS, that many WebSocket clients (127.0.0.3) are also held open beside
# the good client, never reading (every event is written to each of them until its socket
# buffers fill). Prints both figures and what the flood achieved.
#
# Usage: flood.sh [extra serve options]   e.g. flood.sh --max-new-connections-per-address=0
# Env: BIN (default: the debug binary in $CARGO_TARGET_DIR or ./target), SECONDS_PER_PHASE (5),
#      GOOD_THREADS (1: one client stays below the default 1,000 new connections/s of an
#      address), FLOOD_THREADS (1; 0: no flood), IDLE_WS (0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/xcomponent-ai}"
PHASE="${SECONDS_PER_PHASE:-5}"
GOOD_THREADS="${GOOD_THREADS:-1}"
IDLE_WS="${IDLE_WS:-0}"
FLOOD_THREADS="${FLOOD_THREADS:-1}"
[ -x "$BIN" ] || { echo "flood: no binary at $BIN (cargo build -p xcomponent-cli)" >&2; exit 1; }
work="$(mktemp -d)"
server=""
flood=""
idle=""
cleanup() {
  for pid in $flood $idle $server; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
RUST_LOG=error "$BIN" serve "$root/examples/order-payment/order.yaml" "$root/examples/order-payment/payment.yaml" \
  --port 0 --store memory "$@" >"$work/server.out" 2>"$work/server.log" &
server=$!
port=""
for _ in $(seq 300); do
  port="$(sed -n 's/^xcomponent-ai serving .* on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")"
  [ -n "$port" ] && curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  port=""
  sleep 0.1
done
[ -n "$port" ] || { echo "flood: serve did not start" >&2; exit 1; }

# The good client: prints "requests/s errors".
cat >"$work/good.py" <<'PY'
import http.client, json, socket, sys, threading, time
port, seconds, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: the port is chosen at connect, so TIME_WAIT ports are reused.
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))
done, errors, lock = [0], [0], threading.Lock()
def run(index):
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        try:
            conn = Connection("127.0.0.1", port, timeout=10)
            if n % 2:
                conn.request("GET", "/api/components")
            else:
                body = json.dumps({"machineName": "Order", "context": {"orderId": f"G{index}-{n}", "amount": 1}})
                conn.request("POST", "/api/components/OrderComponent/instances", body, {"Content-Type": "application/json"})
            ok = 200 <= conn.getresponse().status < 300
            conn.close()
        except OSError:
            ok = False
        with lock:
            done[0] += 1
            errors[0] += 0 if ok else 1
started = time.monotonic()
workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(f"{done[0] / (time.monotonic() - started):.0f} {errors[0]}")
PY

# The flood, in C so that it outpaces the server (cc is there wherever cargo links): FLOOD_THREADS
# threads cycling connections from 127.0.0.1 until SIGTERM, then "connections/s refused/s"
# (refused: answered 429 or 503; one connection in 32 waits up to 20 ms to see, the share is
# extrapolated; an admitted connection gets no answer, its head being incomplete). Each connection is reset, not closed, so no TIME_WAIT exhausts the ports.
cat >"$work/flood.c" <<'C'
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static atomic_long opened, sampled, refused;
static volatile sig_atomic_t stop;
static int port;
static void on_term(int sig) { (void)sig; stop = 1; }
static void *cycle(void *arg) {
  (void)arg;
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  const char head[] = "GET /api/components HTTP/1.1\r\n";
  struct linger reset = {1, 0};
  char buffer[32];
  long n = 0;
  while (!stop) {
    int sample = (++n % 32) == 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) continue;
    if (connect(fd, (struct sockaddr *)&to, sizeof to) == 0) {
      atomic_fetch_add(&opened, 1);
      if (write(fd, head, sizeof head - 1) > 0 && sample) {
        atomic_fetch_add(&sampled, 1);
        struct pollfd wait = {.fd = fd, .events = POLLIN};
        if (poll(&wait, 1, 20) == 1) {
          ssize_t got = read(fd, buffer, sizeof buffer);
          if (got >= 12 && (!memcmp(buffer, "HTTP/1.1 429", 12) || !memcmp(buffer, "HTTP/1.1 503", 12)))
            atomic_fetch_add(&refused, 1);
        }
      }
    }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
  }
  return NULL;
}
int main(int argc, char **argv) {
  port = atoi(argv[1]);
  int threads = atoi(argv[2]);
  signal(SIGTERM, on_term);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pthread_t workers[64];
  if (threads > 64) threads = 64;
  for (int i = 0; i < threads; i++) pthread_create(&workers[i], NULL, cycle, NULL);
  for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  long tried = atomic_load(&sampled);
  printf("%.0f %.0f\n", atomic_load(&opened) / seconds,
         tried ? atomic_load(&opened) * ((double)atomic_load(&refused) / tried) / seconds : 0.0);
  return 0;
}
C
cc -O2 -pthread -o "$work/flood" "$work/flood.c"

# Idle WebSocket clients: handshakes that never read.
cat >"$work/idle.py" <<'PY'
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.3", 0))
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    held.append(s)
time.sleep(3600)
PY

read -r alone alone_errors < <(python3 "$work/good.py" "$port" "$PHASE" "$GOOD_THREADS")
if [ "$FLOOD_THREADS" -gt 0 ]; then
  "$work/flood" "$port" "$FLOOD_THREADS" >"$work/flood.out" 2>&1 &
  flood=$!
fi
if [ "$IDLE_WS" -gt 0 ]; then
  python3 "$work/idle.py" "$port" "$IDLE_WS" &
  idle=$!
fi
sleep 1
read -r beside beside_errors < <(python3 "$work/good.py" "$port" "$PHASE" "$GOOD_THREADS")
if [ -n "$flood" ]; then
  kill -TERM "$flood"
  wait "$flood" 2>/dev/null || true
  flood=""
  read -r flood_rate flood_refused <"$work/flood.out" || true
fi
echo "serve options: ${*:-(defaults)}"
echo "good client alone:        $alone req/s ($alone_errors errors)"
echo "good client beside flood: $beside req/s ($beside_errors errors), flood threads $FLOOD_THREADS, idle WebSockets $IDLE_WS"
echo "flood: ${flood_rate:-0} connections/s from 127.0.0.1, ${flood_refused:-0}/s refused"
