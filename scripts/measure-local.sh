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

PAYMENT_COUNT=${PAYMENT_COUNT:-3}
SETTLE_SECONDS_MAX=60

CLOUD_NAME=measure-local
# shellcheck source=scripts/ephemeral-cloud.sh
. scripts/ephemeral-cloud.sh

json_field() { python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

pay_and_settle() {
    local user=$1 reply id status=""
    reply=$(curl -sf -m 10 -XPOST "$API/payments" -H 'content-type: application/json' \
        -H "x-api-key: $API_KEY" \
        -d "{\"userId\":\"$user\",\"amount\":\"10\",\"currency\":\"USD\"}")
    id=$(echo "$reply" | json_field paymentId)
    local deadline=$(( $(now_ms) + SETTLE_SECONDS_MAX * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        status=$(curl -sf -m 5 "$API/payments/$id" -H "x-api-key: $API_KEY" | json_field status)
        case "$status" in COMPLETED | FAILED | RECONCILIATION_REQUIRED) break ;; esac
        sleep 0.05
    done
    echo "$id $status"
}

echo "== local cloud from $BIN_DIR, data in $DATA, edge $EDGE, api $API"
start
echo "   healthy after ${HEALTHY_MS} ms (fresh data directory: tables created)"

# shellcheck source=scripts/local-auth.sh
. scripts/local-auth.sh
API_KEY=$(local_api_key)
user="measure_$(date +%s)"
curl -sf -m 10 -XPOST "$API/wallets/$user/credit" -H 'content-type: application/json' \
    "${OPERATOR_SIGV4[@]}" \
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
