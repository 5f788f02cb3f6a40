#!/usr/bin/env bash
# Static checks beyond rustfmt and clippy: the domain stays pure and exact.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
if grep -rnE 'aws_sdk|aws_config|aws_smithy|lambda_runtime|tokio|axum|reqwest|hyper' shared/src/domain; then
    echo "error: shared/src/domain must not import the AWS SDK, an async runtime or HTTP" >&2
    fail=1
fi
if grep -rnwE 'f32|f64|from_f64|to_f64' shared/src/domain; then
    echo "error: shared/src/domain must not use floating point: money is exact" >&2
    fail=1
fi
if grep -rnE 'aws_sdk_dynamodb' --include='*.rs' shared/src | grep -v '^shared/src/dynamo/'; then
    echo "error: only shared/src/dynamo may import aws_sdk_dynamodb" >&2
    fail=1
fi
exit "$fail"
