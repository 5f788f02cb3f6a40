#!/usr/bin/env bash
# `make deploy`: prints how to deploy the stack. Runs nothing against AWS: deploying needs
# an AWS account and credentials, which no machine of this project has. docs/deploy.md
# has the full procedure.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_NAME=${1:-payment-saga-dev}
STAGE=${STAGE:-dev}
PARAMETER=${GATEWAY_API_KEY_PARAMETER:-/payment-saga/$STAGE/gateway-api-key}

cat <<EOF
make deploy runs nothing here: deploying needs an AWS account and credentials.
On a machine that has them (AWS CLI v2 configured, e.g. AWS_PROFILE), in this order:

  1. Tools and artefacts, no Docker needed:
       make tools validate-template sam-build

  2. The gateway API key, once per account/region/stage, as an SSM SecureString (the
     template only names it; the key never enters the template or the environment):
       aws ssm put-parameter --type SecureString \\
         --name $PARAMETER --value '<gateway api key>'

  3. The first deploy, guided (saves the answers to samconfig.toml for the next ones):
       PATH="\$PWD/.tools/venv/bin:\$PATH" sam deploy --guided \\
         --stack-name $STACK_NAME \\
         --capabilities CAPABILITY_IAM \\
         --parameter-overrides Stage=$STAGE WorkflowType=STANDARD \\
           GatewayUrl=https://<your gateway> \\
           GatewayApiKeyParameterName=$PARAMETER \\
           AlarmEmail=<ops e-mail, optional>
     (GatewayUrl must be set: the template refuses its local default.)
     Later deploys: PATH="\$PWD/.tools/venv/bin:\$PATH" sam deploy

  4. Smoke test with the stack outputs (ApiUrl, ApiKeyId):
       aws apigateway get-api-key --include-value --api-key <ApiKeyId> --query value --output text
       curl -s <ApiUrl>/health
       curl -s -H "x-api-key: <key>" -H 'content-type: application/json' \\
         -d '{"userId":"u1","amount":"10.00","currency":"USD"}' <ApiUrl>/payments

See docs/deploy.md (IAM for the operator credit route, EXPRESS vs STANDARD, retained tables).
EOF
