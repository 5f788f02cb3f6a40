# Sourced by the scripts that call the local cloud's API with curl: who they call as.
#   local_token USER     an end user's bearer token from the local issuer (like `saga token`)
#   local_api_key        the local demo merchant's API key (every scope), from the edge
#   OPERATOR_SIGV4       curl options that SigV4-sign a top-up with the local credentials
# EDGE must be set (the local edge, http://127.0.0.1:4566).
local_token() {
    curl -sf -m 5 -XPOST "$EDGE/local-issuer/token" -H 'content-type: application/json' \
        -d "{\"sub\":\"$1\"}" | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])'
}
local_api_key() {
    curl -sf -m 5 "$EDGE/local-issuer/clients" | python3 -c '
import sys, json
print(next(c["apiKey"] for c in json.load(sys.stdin) if c["clientId"] == "demo-merchant"))'
}
OPERATOR_SIGV4=(--aws-sigv4 "aws:amz:us-east-1:execute-api" --user local:local)
