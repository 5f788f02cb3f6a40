#!/usr/bin/env bash
# `make deploy`: prints how to deploy the stack. Runs nothing against AWS: deploying needs
# an AWS account and credentials, which no machine of this project has. docs/deploy.md
# has the full procedure.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_NAME=${1:-payment-saga-dev}
STAGE=${STAGE:-dev}
PARAMETER=${GATEWAY_API_KEY_PARAMETER:-/payment-saga/$STAGE/gateway-api-key}
WEBHOOK_PARAMETER=${WEBHOOK_SECRET_PARAMETER:-/payment-saga/$STAGE/gateway-webhook-secret}

cat <<EOF
make deploy runs nothing here: deploying needs an AWS account and credentials.
On a machine that has them (AWS CLI v2 configured, e.g. AWS_PROFILE), in this order:

  1. Tools and artefacts, no Docker needed:
       make tools validate-template sam-build

  2. The gateway API key and webhook secret, once per account/region/stage, as SSM
     SecureStrings (the template only names them; they never enter the template or the
     environment):
       aws ssm put-parameter --type SecureString \\
         --name $PARAMETER --value '<gateway api key>'
       aws ssm put-parameter --type SecureString \\
         --name $WEBHOOK_PARAMETER --value '<gateway webhook secret>'

  3. Check that both SecureStrings exist before deploying (a missing one fails every charge
     or every webhook at runtime, not the deploy):
       for name in $PARAMETER $WEBHOOK_PARAMETER; do
         aws ssm get-parameter --name "\$name" --query Parameter.Type --output text \\
           || { echo "missing SSM parameter \$name: create it (step 2)"; exit 1; }
       done

  4. The first deploy, guided (saves the answers to samconfig.toml for the next ones):
       PATH="\$PWD/.tools/venv/bin:\$PATH" sam deploy --guided \\
         --stack-name $STACK_NAME \\
         --capabilities CAPABILITY_IAM \\
         --parameter-overrides Stage=$STAGE WorkflowType=STANDARD \\
           GatewayUrl=https://<your gateway> \\
           GatewayApiKeyParameterName=$PARAMETER \\
           WebhookSecretParameterName=$WEBHOOK_PARAMETER \\
           OperatorRoleArn=arn:aws:iam::<account>:role/<operators> \\
           AlarmEmail=<ops e-mail, optional>
     (GatewayUrl must be https: the template refuses its local default and plain http.
      UserPoolId/UserPoolClientId: an existing Cognito pool, else the stack creates one.)
     Later deploys: PATH="\$PWD/.tools/venv/bin:\$PATH" sam deploy

  5. A service client and a smoke test with the stack outputs (ApiUrl):
       KEY=\$(scripts/create-client.sh $STACK_NAME smoke-test payments:write payments:read)
       curl -s <ApiUrl>/health
       curl -s -H "x-api-key: \$KEY" -H 'content-type: application/json' \\
         -d '{"userId":"u1","amount":"10.00","currency":"USD"}' <ApiUrl>/payments
     (401 without the key; an end user sends a Cognito token instead: docs/auth.md.)

See docs/deploy.md (IAM for the operator credit route, EXPRESS vs STANDARD, retained tables).
EOF
