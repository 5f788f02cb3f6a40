#!/usr/bin/env bash
# Measures the local cloud, with the binaries already built (`cargo build --workspace --bins`):
#   (a) the time from starting it to healthy (both /health endpoints answer), on a fresh
#       data directory and again on a restart over that data;
#   (b) after a few payments, the processes of the running cloud (local, its Lambda
#       instances, the mock gateway: the local process and all its descendants) and their
#       total RSS, read from /proc.
# It starts its own cloud on free loopback ports with a temporary data directory (so it
# never touches a cloud already running, e.g. `make start-local`'s), and stops it, and
# everything it started, on exit. Every wait is bounded.
#
#   scripts/measure-local.sh                 3 payments
#   PAYMENT_COUNT=10 scripts/measure-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR=${LOCAL_BIN_DIR:-target/debug}
PAYMENT_COUNT=${PAYMENT_COUNT:-3}
HEALTHY_SECONDS_MAX=60
SETTLE_SECONDS_MAX=60
STOP_SECONDS_MAX=10

for binary in local mock-gateway api-handler invoice-processor wallet-service payments-adapter \
    refund-service; do
    if [ ! -x "$BIN_DIR/$binary" ]; then
        echo "error: $BIN_DIR/$binary is not built: run \`cargo build --workspace --bins\`" >&2
        exit 1
    fi
done
command -v curl >/dev/null || { echo "error: curl is needed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is needed" >&2; exit 1; }

DATA=$(mktemp -d "${TMPDIR:-/tmp}/measure-local.XXXXXX")
PID=""

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Three distinct free loopback ports (the kernel picks them; they are released just before
# the cloud binds them, a race no other process on this machine is likely to win).
read -r EDGE_PORT API_PORT GATEWAY_PORT < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
')
EDGE=http://127.0.0.1:$EDGE_PORT
API=http://127.0.0.1:$API_PORT

# Every pid descending from $1 (children, grandchildren, ...), from /proc.
descendants() {
    python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
children = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    # the command may hold spaces and parentheses: fields resume after the last ')'
    ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    children.setdefault(ppid, []).append(int(entry))
stack, found = [root], []
while stack:
    for child in children.get(stack.pop(), []):
        found.append(child)
        stack.append(child)
print(" ".join(map(str, found)))
EOF
}

stop() {
    [ -n "$PID" ] || return 0
    local pids
    pids="$PID $(descendants "$PID")"
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 $((STOP_SECONDS_MAX * 10))); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    # Anything it started and left behind (it should leave nothing): by pid, never by name.
    local left=""
    for pid in $pids; do
        if kill -0 "$pid" 2>/dev/null; then
            left="$left $pid"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    [ -z "$left" ] || echo "warning: processes left behind and killed:$left" >&2
    PID=""
}

cleanup() {
    stop
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts the cloud over $DATA; sets HEALTHY_MS to the milliseconds until both /health answer.
HEALTHY_MS=""
start() {
    local started
    started=$(now_ms)
    "$BIN_DIR/local" --data-dir "$DATA" --bin-dir "$BIN_DIR" --edge-port "$EDGE_PORT" \
        --api-port "$API_PORT" --gateway-port "$GATEWAY_PORT" >>"$DATA/local.out" 2>&1 &
    PID=$!
    local deadline=$((started + HEALTHY_SECONDS_MAX * 1000))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        if curl -sf -m 1 "$EDGE/health" >/dev/null && curl -sf -m 1 "$API/health" >/dev/null; then
            HEALTHY_MS=$(( $(now_ms) - started ))
            return 0
        fi
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "error: the local cloud exited:" >&2
            tail -20 "$DATA/local.out" >&2
            return 1
        fi
        sleep 0.02
    done
    echo "error: not healthy after ${HEALTHY_SECONDS_MAX} s; see $DATA/local.out" >&2
    return 1
}

json_field() { python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

pay_and_settle() {
    local user=$1 reply id status=""
    reply=$(curl -sf -m 10 -XPOST "$API/payments" -H 'content-type: application/json' \
        -d "{\"userId\":\"$user\",\"amount\":\"10\",\"currency\":\"USD\"}")
    id=$(echo "$reply" | json_field paymentId)
    local deadline=$(( $(now_ms) + SETTLE_SECONDS_MAX * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        status=$(curl -sf -m 5 "$API/payments/$id" | json_field status)
        case "$status" in COMPLETED | FAILED | RECONCILIATION_REQUIRED) break ;; esac
        sleep 0.05
    done
    echo "$id $status"
}

echo "== local cloud from $BIN_DIR, data in $DATA, edge $EDGE, api $API"
start
echo "   healthy after ${HEALTHY_MS} ms (fresh data directory: tables created)"

user="measure_$(date +%s)"
curl -sf -m 10 -XPOST "$API/wallets/$user/credit" -H 'content-type: application/json' \
    -d '{"amount":"1000","currency":"USD"}' >/dev/null
payments_started=$(now_ms)
for _ in $(seq 1 "$PAYMENT_COUNT"); do
    echo "   payment $(pay_and_settle "$user")"
done
echo "   $PAYMENT_COUNT sequential payments in $(( $(now_ms) - payments_started )) ms"

echo "== processes of the running cloud (pid, RSS, command)"
python3 - "$PID" $(descendants "$PID") <<'EOF'
import sys
total_kb, rows = 0, []
for pid in sys.argv[1:]:
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1]
    except OSError:
        continue  # exited meanwhile
    rss_kb = int(fields.get("VmRSS", "0 kB").split()[0])
    total_kb += rss_kb
    rows.append((pid, rss_kb, command))
for pid, rss_kb, command in rows:
    print(f"   {pid:>8} {rss_kb / 1024:8.1f} MiB  {command}")
print(f"   {len(rows)} processes, total RSS {total_kb / 1024:.1f} MiB")
EOF
curl -sf -m 5 "$EDGE/_local/lambda/stats" | python3 -c '
import sys, json
functions = json.load(sys.stdin)["functions"]
alive = sum(f["instanceCountAlive"] for f in functions)
detail = ", ".join("%s %d" % (f["binary"], f["instanceCountAlive"]) for f in functions)
print(f"   Lambda instances alive: {alive} ({detail})")
'

stop
start
echo "== restart over the same data: healthy after ${HEALTHY_MS} ms"
stop
echo "== stopped; nothing left running"
