#!/usr/bin/env bash
# Runs every Rust test in the workspace and prints one closing line
# "N passed, M failed". A run in which no test executed is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The end-to-end tests run the real Lambda and mock-gateway binaries, and the
# Lambda runtime tests run local/examples/echo_lambda.
echo "== building every binary (the end-to-end tests start them)"
cargo build --workspace --bins --examples

status=0
cargo test --workspace --all-targets --color never 2>&1 | tee "$log" || status=$?

passed=$(grep -E '^test result:' "$log" | awk '{ sum += $4 } END { print sum + 0 }')
failed=$(grep -E '^test result:' "$log" | awk '{ sum += $6 } END { print sum + 0 }')
echo
echo "tests: ${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if [ "$passed" -eq 0 ]; then
    echo "error: no tests ran" >&2
    exit 1
fi

# The API against api/openapi.yaml on a local cloud of its own (schemathesis, bounded).
echo
echo "== the API against its contract (scripts/api-contract.sh)"
scripts/api-contract.sh 2>&1 | tee "$log" || status=$?
cases=$(grep -oE '^  [0-9]+ generated' "$log" | grep -oE '[0-9]+' || echo 0)
echo
echo "tests: ${passed} passed, ${failed} failed; api contract: ${cases} cases, status ${status}"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if [ "$cases" -eq 0 ]; then
    echo "error: the API contract run generated no case" >&2
    exit 1
fi
