#!/usr/bin/env bash
# Creates a service client (a merchant's backend) of a deployed stack: an API Gateway API key,
# its own usage plan (the stack's ClientThrottle output: rate/burst) on the API's stage, and
# the ApiClientsTable item the authorizer reads (key hash -> client id, scopes).
#
#   scripts/create-client.sh <stack-name> <client-id> <scope>...
#   scripts/create-client.sh payment-saga-dev merchant-a payments:write payments:read refunds:write
#
# Scopes: payments:write payments:read refunds:write wallets:read. The key is printed once, on
# stdout; store it in the merchant's secret store. Disable a client by setting its item's status
# to DISABLED (the authorizer refuses it at once) and its API key to disabled.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 3 ] || usage
stack=$1 client_id=$2; shift 2
for scope in "$@"; do
    case $scope in
        payments:write|payments:read|refunds:write|wallets:read) ;;
        *) echo "error: unknown scope '$scope'" >&2; usage ;;
    esac
done
[[ $client_id =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "error: client id: 1-64 of A-Z a-z 0-9 _ . -" >&2; exit 2; }
command -v aws >/dev/null || { echo "error: the aws CLI is needed (make tools installs it in .tools/venv)" >&2; exit 1; }

output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
api_id=$(output ApiId)
stage=$(aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='Stage'].ParameterValue" --output text)
throttle=$(output ClientThrottle)
table=$(output ApiClientsTableName)
[ -n "$api_id" ] && [ -n "$table" ] && [ -n "$throttle" ] || {
    echo "error: stack $stack has no ApiId / ClientThrottle / ApiClientsTableName output" >&2; exit 1; }
rate=${throttle%/*} burst=${throttle#*/}

# 40 random url-safe characters; API Gateway keys are 20-128 characters.
key=$(python3 -c 'import secrets; print("sk_" + secrets.token_urlsafe(30))')
key_hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)

echo "==> API key and usage plan for $client_id ($rate rps, burst $burst) on $api_id/$stage" >&2
key_id=$(aws apigateway create-api-key --name "$stack-$client_id" --enabled --value "$key" \
    --query id --output text)
plan_id=$(aws apigateway create-usage-plan --name "$stack-$client_id" \
    --api-stages "apiId=$api_id,stage=$stage" \
    --throttle "rateLimit=$rate,burstLimit=$burst" --query id --output text)
aws apigateway create-usage-plan-key --usage-plan-id "$plan_id" --key-id "$key_id" \
    --key-type API_KEY >/dev/null

echo "==> $table: $client_id with scopes $*" >&2
scopes_json=$(printf '{"S":"%s"},' "$@"); scopes_json="[${scopes_json%,}]"
aws dynamodb put-item --table-name "$table" --condition-expression "attribute_not_exists(keyHash)" \
    --item "{\"keyHash\":{\"S\":\"$key_hash\"},\"clientId\":{\"S\":\"$client_id\"},\"scopes\":{\"L\":$scopes_json},\"status\":{\"S\":\"ACTIVE\"}}"

echo "==> done: send it as x-api-key (shown once):" >&2
echo "$key"
