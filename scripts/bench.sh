#!/usr/bin/env bash
# make bench: builds the release binaries, starts a local cloud of its own on
# other ports (in memory, so nothing of .local/ is touched and a running dev cloud
# is not disturbed), runs `saga bench` against it, stops it. Everything listens on
# 127.0.0.1 and every step is bounded (start-up 90 s, the benchmark BENCH_TIMEOUT).
#
#   N=2000 C=32 U=200 MODE=approve_all HOT=1 COLD=10 FLOOR=2000 ./scripts/bench.sh
#   BENCH_TARGET=running ./scripts/bench.sh   # the cloud already on 4566/3001/3000
#
# Profile: the Lambdas, the local cloud, the mock gateway and saga are all built
# with the workspace's `release` profile (fat LTO, 1 codegen unit): the binaries
# measured for cold start and size are the ones the load ran. A second, faster
# profile for the local cloud would compile every dependency a second time
# (cargo keys artefacts by profile), which costs more on a fresh clone than the
# three extra LTO links it saves.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
C=${C:-32}
U=${U:-200}
MODE=${MODE:-approve_all}
HOT=${HOT:-}
COLD=${COLD:-10}
FLOOR=${FLOOR:-}
WARMUP=${WARMUP:-64}
INSTANCES=${INSTANCES:-8}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
TARGET=${BENCH_TARGET:-own}
EDGE_PORT=${BENCH_EDGE_PORT:-4576}
API_PORT=${BENCH_API_PORT:-3011}
GATEWAY_PORT=${BENCH_GATEWAY_PORT:-3010}
OUT=target/bench
DATA=$OUT/local

LAMBDAS=(invoice-processor wallet-service payments-adapter refund-service api-handler)
packages=()
for p in "${LAMBDAS[@]}" mock-gateway local cli; do packages+=(-p "$p"); done
# bench/hello-lambda is the baseline once it is a workspace member; until then
# local's echo_lambda example (lambda_runtime + tokio, same profile) stands in.
if cargo metadata --no-deps --format-version 1 2>/dev/null | grep -q '"name":"hello-lambda"'; then
    packages+=(-p hello-lambda)
    HELLO=target/release/hello-lambda
    hello_build=()
else
    HELLO=target/release/examples/echo_lambda
    hello_build=(-p local --example echo_lambda)
fi

echo "== building release binaries (profile release: fat LTO; the first build takes minutes)"
start=$(date +%s)
cargo build --release "${packages[@]}"
if [ ${#hello_build[@]} -gt 0 ]; then cargo build --release "${hello_build[@]}"; fi
echo "== built in $(( $(date +%s) - start )) s"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid=""
stop_cloud() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        echo "== bench local cloud stopped"
    fi
}
trap stop_cloud EXIT INT TERM

if [ "$TARGET" = running ]; then
    EDGE=http://127.0.0.1:4566 API=http://127.0.0.1:3001 GATEWAY=http://127.0.0.1:3000 LOCAL_DIR=.local
    if ! curl -sf "$API/health" >/dev/null; then
        echo "no local cloud answers on $API: run \`make start-local\` first, or drop BENCH_TARGET=running" >&2
        exit 2
    fi
    echo "== against the running local cloud ($API); its binaries' profile is reported"
else
    EDGE=http://127.0.0.1:$EDGE_PORT API=http://127.0.0.1:$API_PORT GATEWAY=http://127.0.0.1:$GATEWAY_PORT LOCAL_DIR=$DATA
    for port in "$EDGE_PORT" "$API_PORT" "$GATEWAY_PORT"; do
        if port_busy "$port"; then
            echo "port $port is in use: stop what listens there or set BENCH_EDGE_PORT/BENCH_API_PORT/BENCH_GATEWAY_PORT" >&2
            exit 2
        fi
    done
    rm -rf "$DATA"
    mkdir -p "$DATA/logs"
    echo "== starting a release local cloud for the benchmark (edge $EDGE_PORT, api $API_PORT, gateway $GATEWAY_PORT, in memory, ≤ $INSTANCES instances per function)"
    # The bench measures the saga, not API Gateway's throttles (AWS applies those the same
    # way): the stage's and the demo merchant's limits are raised far above any load it sends.
    ./target/release/local --in-memory --data-dir "$DATA" --bin-dir target/release \
        --edge-port "$EDGE_PORT" --api-port "$API_PORT" --gateway-port "$GATEWAY_PORT" \
        --instance-count-max "$INSTANCES" \
        --parameter-overrides ClientRateLimit=1000000 ClientBurstLimit=1000000 \
        ApiRateLimit=1000000 ApiBurstLimit=1000000 TopUpRateLimit=1000000 TopUpBurstLimit=1000000 \
        >"$DATA/logs/local.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 180); do
        if curl -sf "$EDGE/health" >/dev/null 2>&1 && curl -sf "$API/health" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then echo "the local cloud failed to start:" >&2; tail -20 "$DATA/logs/local.log" >&2; exit 1; fi
        sleep 0.5
    done
    curl -sf "$API/health" >/dev/null || { echo "the local cloud did not answer within 90 s; see $DATA/logs/local.log" >&2; exit 1; }
fi

command="make bench N=$N C=$C U=$U MODE=$MODE${HOT:+ HOT=1}"
args=(bench -n "$N" -c "$C" -u "$U" --gateway-mode "$MODE" --warmup "$WARMUP"
      --cold-starts "$COLD" --local-dir "$LOCAL_DIR" --command "$command")
[ -n "$HOT" ] && [ "$HOT" != 0 ] && args+=(--hot-wallet)
[ -n "$FLOOR" ] && args+=(--floor-payments "$FLOOR")
[ -f "$HELLO" ] && args+=(--hello-bin "$HELLO")

status=0
timeout --signal=INT "$BENCH_TIMEOUT" ./target/release/saga \
    --api-url "$API" --endpoint-url "$EDGE" "${args[@]}" --gateway-url "$GATEWAY" || status=$?
if [ "$status" = 124 ]; then echo "the benchmark did not finish within $BENCH_TIMEOUT s (BENCH_TIMEOUT)" >&2; fi
exit "$status"
