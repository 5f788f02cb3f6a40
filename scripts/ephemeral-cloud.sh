# Sourced: a throwaway local cloud of this script's own, on free loopback ports, over a
# temporary data directory, so it never touches a cloud already running (e.g. `make
# start-local`'s); stopped with everything it started, by pid, on exit. Every wait is bounded.
# Before sourcing, set CLOUD_NAME (the data directory's prefix); optionally BIN_DIR,
# HEALTHY_SECONDS_MAX, STOP_SECONDS_MAX, CLOUD_ARGS (extra `local` options, an array).
# Defines EDGE, API, DATA, PID, now_ms, descendants, start (sets HEALTHY_MS), stop.
BIN_DIR=${BIN_DIR:-${LOCAL_BIN_DIR:-target/debug}}
HEALTHY_SECONDS_MAX=${HEALTHY_SECONDS_MAX:-60}
STOP_SECONDS_MAX=${STOP_SECONDS_MAX:-10}
if [ -z "${CLOUD_ARGS+set}" ]; then CLOUD_ARGS=(); fi

for binary in local mock-gateway api-handler operator-api authorizer invoice-processor \
    wallet-service payments-adapter refund-service; do
    if [ ! -x "$BIN_DIR/$binary" ]; then
        echo "error: $BIN_DIR/$binary is not built: run \`cargo build --workspace --bins\`" >&2
        exit 1
    fi
done
command -v curl >/dev/null || { echo "error: curl is needed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is needed" >&2; exit 1; }

DATA=$(mktemp -d "${TMPDIR:-/tmp}/${CLOUD_NAME:-local-cloud}.XXXXXX")
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
        --api-port "$API_PORT" --gateway-port "$GATEWAY_PORT" "${CLOUD_ARGS[@]}" \
        >>"$DATA/local.out" 2>&1 &
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

