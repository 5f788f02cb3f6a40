#!/usr/bin/env bash
# The tester's make targets (test-payment*, test-refund, test-e2e, test-circuit-breaker,
# test-curl-*, logs-stepfunction). Each one starts the local cloud first when it is not
# running, so no manual step is needed in between.
#   scripts/tester.sh pay AMOUNT [saga pay options…]    one payment through the flow monitor
#   scripts/tester.sh refund                            a 50.00 payment, then a full refund
#   scripts/tester.sh credit | balance                  the wallet, with curl
#   scripts/tester.sh e2e | breaker | executions
#   scripts/tester.sh reconcile [saga reconcile options…]   run the reconciler now, print its report
#   scripts/tester.sh reconcile-demo                    a payment left RECONCILIATION_REQUIRED with
#                                                       the gateway captured, then reconciled
# Environment: USER_ID (user_test_001), CURRENCY (USD), ORDER_ID, AMOUNT, API_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

API=${API_URL:-http://127.0.0.1:3001}
EDGE=${EDGE_URL:-http://127.0.0.1:4566}
# shellcheck source=scripts/local-auth.sh
. scripts/local-auth.sh
USER_ID=${USER_ID:-user_test_001}
CURRENCY=${CURRENCY:-USD}
SAGA=./target/debug/saga

ensure_local() {
    if [ "$API" = "http://127.0.0.1:3001" ] && ! curl -sf "$API/health" >/dev/null 2>&1; then
        echo "== the local cloud is not running: starting it (make start-local)"
        ./scripts/local.sh start
    fi
    if ! curl -sf "$API/health" >/dev/null 2>&1; then
        echo "error: nothing answers at $API/health; run \`make start-local\` first" >&2
        exit 2
    fi
    # The CLI is small next to the rest; build it only when missing or stale.
    cargo build --quiet -p cli --bin saga
}

pay() {
    local amount=$1; shift
    local args=(pay --user "$USER_ID" --amount "$amount" --currency "$CURRENCY" --watch)
    if [ -n "${ORDER_ID:-}" ]; then args+=(--order-id "$ORDER_ID"); fi
    exec "$SAGA" "${args[@]}" "$@"
}

case "${1:-}" in
    pay)
        shift
        amount=${1:?usage: scripts/tester.sh pay AMOUNT [options]}; shift
        ensure_local
        pay "$amount" "$@"
        ;;
    fail)
        # 5000 on a wallet that holds less: the saga must fail it, and give nothing away.
        ensure_local
        if ! "$SAGA" wallet show "$USER_ID" >/dev/null 2>&1; then
            "$SAGA" wallet credit "$USER_ID" --amount 1000 --currency "$CURRENCY"
        fi
        pay 5000 --expect FAILED
        ;;
    refund)
        ensure_local
        echo "== a 50.00 $CURRENCY payment for $USER_ID"
        # Watched from before it is sent, so the balance shows the debit; the
        # paymentId is read back from the monitor's own output.
        watched=$(mktemp)
        trap 'rm -f "$watched"' EXIT
        if [ -t 1 ]; then export CLICOLOR_FORCE=1; fi
        "$SAGA" pay --user "$USER_ID" --amount 50 --currency "$CURRENCY" --fund --watch | tee "$watched"
        unset CLICOLOR_FORCE
        id=$(grep -o -m1 'pay_[0-9A-Z]\{26\}' "$watched")
        echo
        echo "== refunding ${AMOUNT:-the whole} ${AMOUNT:+$CURRENCY }of $id"
        if [ -n "${AMOUNT:-}" ]; then "$SAGA" refund "$id" --amount "$AMOUNT" --reason "make test-refund" --watch
        else "$SAGA" refund "$id" --reason "make test-refund" --watch; fi
        echo
        "$SAGA" payment show "$id"
        echo
        "$SAGA" wallet show "$USER_ID"
        ;;
    reconcile)
        shift
        ensure_local
        exec "$SAGA" reconcile "$@"
        ;;
    reconcile-demo)
        ensure_local
        gateway=${GATEWAY_URL:-http://127.0.0.1:3000}
        restore() {
            curl -sf -X POST "$gateway/control/mode" -H 'Content-Type: application/json' \
                -d '{"mode":"normal","pendingDelayMs":2000}' >/dev/null || true
        }
        trap restore EXIT
        # The saga waits for the gateway's webhook 10 s at a time and checks the status
        # after each wait, 10 checks at most: a charge pending for 150 s outlasts it, so
        # the payment ends RECONCILIATION_REQUIRED while its debit is held.
        echo "== gateway: every charge PENDING for 150 s (longer than the saga waits)"
        curl -sf -X POST "$gateway/control/mode" -H 'Content-Type: application/json' \
            -d '{"mode":"pending_then_approve","pendingDelayMs":150000}' >/dev/null
        watched=$(mktemp)
        trap 'rm -f "$watched"; restore' EXIT
        if [ -t 1 ]; then export CLICOLOR_FORCE=1; fi
        "$SAGA" pay --user "$USER_ID" --amount 50 --currency "$CURRENCY" --fund --watch \
            --expect RECONCILIATION_REQUIRED --timeout 240 | tee "$watched"
        unset CLICOLOR_FORCE
        id=$(grep -o -m1 'pay_[0-9A-Z]\{26\}' "$watched")
        restore
        echo
        echo "== waiting for the gateway to capture $id (its 150 s are up)"
        deadline=$((SECONDS + 90))
        until curl -sf "$gateway/v1/payments/$id" -H "X-API-Key: ${GATEWAY_API_KEY:-local-gateway-key}" \
                | grep -q '"APPROVED"'; do
            if [ "$SECONDS" -ge "$deadline" ]; then echo "error: the gateway never captured $id" >&2; exit 1; fi
            printf '.'; sleep 2
        done
        echo " captured"
        echo
        echo "== make reconcile (the gateway's webhook for the capture may have had it reconciled already)"
        "$SAGA" reconcile || true
        echo
        "$SAGA" payment show "$id"
        ;;
    credit)
        ensure_local
        amount=${AMOUNT:-1000}
        body="{\"amount\":\"$amount\",\"currency\":\"$CURRENCY\",\"reference\":\"make test-curl-wallet-credit\"}"
        echo "curl -s -X POST $API/wallets/$USER_ID/credit -H 'Content-Type: application/json' ${OPERATOR_SIGV4[*]} -d '$body'"
        curl -s -X POST "$API/wallets/$USER_ID/credit" -H 'Content-Type: application/json' \
            "${OPERATOR_SIGV4[@]}" -d "$body" | python3 -m json.tool
        ;;
    balance)
        ensure_local
        echo "curl -s $API/wallets/$USER_ID -H \"Authorization: Bearer \$(saga token $USER_ID)\""
        curl -s "$API/wallets/$USER_ID" -H "Authorization: Bearer $(local_token "$USER_ID")" \
            | python3 -m json.tool
        ;;
    e2e)
        ensure_local
        exec "$SAGA" scenarios
        ;;
    breaker)
        ensure_local
        exec "$SAGA" scenarios circuit-breaker
        ;;
    executions)
        ensure_local
        exec "$SAGA" executions --limit "${LIMIT:-5}" --history
        ;;
    *)
        sed -n '2,9p' "$0" >&2
        exit 2
        ;;
esac
