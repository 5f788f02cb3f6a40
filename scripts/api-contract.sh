#!/usr/bin/env bash
# The API against its contract: schemathesis (PyPI, pinned below, in its own venv under
# .tools) generates requests from api/openapi.yaml and checks every answer against it —
# status codes, headers, bodies, no server errors, bad input refused, undeclared methods
# 405 — on a throwaway local cloud of its own (scripts/ephemeral-cloud.sh), called as the
# local demo merchant (every scope). Bounded: at most EXAMPLES cases per operation
# (default 30) and MAX_SECONDS in all (default 120). The operator top-up (SigV4, which
# schemathesis cannot sign) and the gateway webhook (HMAC-signed) are checked by the
# handler's own contract tests instead. Every check runs but positive_data_acceptance: an
# amount's allowed decimals depend on its currency (for a refund, on the payment's), which
# a schema cannot state, so a schema-valid "1.005" USD is rightly refused with 400
# amount_too_precise; the handler's tests cover those rules.
#
#   scripts/api-contract.sh                 (make test-api-contract; part of make test)
#   EXAMPLES=100 scripts/api-contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=.tools/schemathesis
EXAMPLES=${EXAMPLES:-30}
MAX_SECONDS=${MAX_SECONDS:-120}
SEED=${SEED:-20261204}

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

CLOUD_NAME=api-contract
# shellcheck source=scripts/ephemeral-cloud.sh
. scripts/ephemeral-cloud.sh
# shellcheck source=scripts/local-auth.sh
. scripts/local-auth.sh

echo "== local cloud on $API (edge $EDGE), data in $DATA"
start
echo "   healthy after ${HEALTHY_MS} ms"
key=$(local_api_key)
# The spec's example user gets a wallet, so its examples reach the money, not a 404.
curl -sf -m 10 -XPOST "$API/wallets/user_test_001/credit" -H 'content-type: application/json' \
    "${OPERATOR_SIGV4[@]}" -d '{"amount":"100000","currency":"USD"}' >/dev/null

echo "== schemathesis: api/openapi.yaml, ≤ $EXAMPLES cases per operation, ≤ $MAX_SECONDS s, seed $SEED"
status=0
"$VENV/bin/schemathesis" run api/openapi.yaml --url "$API" \
    --header "x-api-key: $key" \
    --exclude-operation-id creditWallet --exclude-operation-id receiveGatewayWebhook \
    --checks all --exclude-checks positive_data_acceptance \
    --generation-with-security-parameters false \
    --max-examples "$EXAMPLES" --max-time "$MAX_SECONDS" --seed "$SEED" \
    --generation-database none --workers 1 --no-color \
    --report junit --report-dir "$DATA/report" || status=$?
if [ "$status" -ne 0 ]; then
    echo "error: schemathesis found failures (above); the cloud's log: $DATA/local.out" >&2
    cp -r "$DATA/report" target/api-contract-report 2>/dev/null || true
fi
exit "$status"
