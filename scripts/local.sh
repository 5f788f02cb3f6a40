#!/usr/bin/env bash
# Starts / stops / inspects the local cloud in the background (pid in .local/local.pid).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.local
PID_FILE=$DATA/local.pid
API=${API_URL:-http://127.0.0.1:3001}
EDGE=${EDGE_URL:-http://127.0.0.1:4566}

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

start() {
    if running; then echo "local cloud already running (pid $(cat "$PID_FILE"))"; return 0; fi
    echo "== building the local cloud, the Lambdas and the mock gateway"
    cargo build --workspace --bins
    mkdir -p "$DATA/logs"
    nohup ./target/debug/local --data-dir "$DATA" > "$DATA/logs/local.log" 2>&1 &
    echo $! > "$PID_FILE"
    printf "== waiting for the local cloud"
    for _ in $(seq 1 120); do
        if curl -sf "$EDGE/health" >/dev/null 2>&1 && curl -sf "$API/health" >/dev/null 2>&1; then
            echo " ready"
            echo "   AWS edge (DynamoDB, Step Functions, Lambda): $EDGE"
            echo "   HTTP API:                                    $API"
            echo "   mock gateway:                                http://127.0.0.1:3000"
            echo "   logs: $DATA/logs/   stop: make stop-all"
            return 0
        fi
        if ! running; then echo " failed:"; tail -20 "$DATA/logs/local.log"; exit 1; fi
        printf "."; sleep 0.5
    done
    echo " timed out after 60 s; see $DATA/logs/local.log"; exit 1
}

stop() {
    if running; then
        pid=$(cat "$PID_FILE"); kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        echo "local cloud stopped"
    else
        echo "local cloud not running"
    fi
    rm -f "$PID_FILE"
}

demo() {
    # shellcheck source=scripts/local-auth.sh
    . scripts/local-auth.sh
    user=${USER_ID:-demo_user}
    echo "== an operator credits $user with 1000.00 USD (SigV4-signed top-up)"
    curl -s -XPOST "$API/wallets/$user/credit" -H 'content-type: application/json' \
        "${OPERATOR_SIGV4[@]}" -d '{"amount":"1000","currency":"USD"}'; echo
    token=$(local_token "$user")
    echo "== $user pays 50.00 USD with their own token (POST /payments, Authorization: Bearer …)"
    reply=$(curl -s -XPOST "$API/payments" -H 'content-type: application/json' \
        -H "Authorization: Bearer $token" \
        -d "{\"userId\":\"$user\",\"amount\":\"50\",\"currency\":\"USD\"}")
    echo "$reply"
    id=$(echo "$reply" | python3 -c 'import sys,json;print(json.load(sys.stdin)["paymentId"])')
    for _ in $(seq 1 60); do
        status=$(curl -s "$API/payments/$id" -H "Authorization: Bearer $token" \
            | python3 -c 'import sys,json;print(json.load(sys.stdin)["status"])')
        case "$status" in COMPLETED|FAILED|RECONCILIATION_REQUIRED) break;; esac
        sleep 0.5
    done
    echo "== payment $id: $status"
    curl -s "$API/wallets/$user" -H "Authorization: Bearer $token"; echo
    echo "== without a credential the API answers 401:"
    curl -s "$API/wallets/$user"; echo
}

status() {
    if running; then
        echo "local cloud running (pid $(cat "$PID_FILE"))"; cat "$DATA/endpoints.json" 2>/dev/null || true
        # Lambda instances, from the edge's local-only admin route (local/src/lambda/invoke_api.rs).
        curl -sf -m 5 "$EDGE/_local/lambda/stats" 2>/dev/null | python3 -c '
import sys, json
for f in json.load(sys.stdin)["functions"]:
    print("   %-28s instances %d (busy %d)  invocations %d  crashes %d  timeouts %d" % (
        f["functionName"], f["instanceCountAlive"], f["instanceCountBusy"],
        f["invocationCount"], f["crashCount"], f["timeoutCount"]))
' || true
    else echo "local cloud not running (make start-local)"; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    demo) demo ;;
    status) status ;;
    *) echo "usage: $0 start|stop|demo|status" >&2; exit 2 ;;
esac
