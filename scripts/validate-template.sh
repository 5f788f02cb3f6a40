#!/usr/bin/env bash
# Validates the deployable artefacts offline: template.yml (cfn-lint, then `sam validate
# --lint`), every state-machine/*.asl.json (statelint), and the wiring between them
# (scripts/check_template_wiring.py). Runs every check, then fails if any failed.
# Needs `make tools` first.
#
#   scripts/validate-template.sh                 template.yml + state-machine/*.asl.json
#   ASL_FILES="/tmp/x.asl.json" scripts/validate-template.sh   other ASL files
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=.tools/venv
TEMPLATE=${TEMPLATE:-template.yml}
export PATH="$PWD/$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# sam needs a region to name ARNs while it transforms; nothing here talks to AWS.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

scripts/tools.sh --check >/dev/null || exit 1

failed=()
step() {
    local name=$1
    shift
    printf '==> %s\n' "$name"
    if "$@"; then
        printf '    ok\n'
    else
        printf '    FAILED: %s\n' "$name" >&2
        failed+=("$name")
    fi
}

# cfn-lint transforms the SAM template and checks the resulting CloudFormation against
# the resource specs (types, required properties, intrinsics, IAM policy syntax, ...).
step "cfn-lint $TEMPLATE" cfn-lint --format parseable -- "$TEMPLATE"

# SAM's own translator (catches SAM-only mistakes cfn-lint lets through) + its lint pass.
step "sam validate --lint" sam validate --lint --template "$TEMPLATE"

# statelint: --ignore=URI because Resource holds ${...} DefinitionSubstitutions
# placeholders, not ARNs yet; --ignore=FLOAT because it also wants BackoffRate written
# as 2.0, while Step Functions accepts 2.
if [ -n "${ASL_FILES:-}" ]; then
    read -r -a asl_files <<<"$ASL_FILES"
else
    shopt -s nullglob
    asl_files=(state-machine/*.asl.json)
    shopt -u nullglob
fi
if [ "${#asl_files[@]}" -eq 0 ]; then
    printf '==> statelint\n    FAILED: no state-machine/*.asl.json found\n' >&2
    failed+=("statelint: no ASL files")
fi
for asl in "${asl_files[@]}"; do
    step "statelint $asl" statelint --ignore=URI,FLOAT "$asl"
done

step "template wiring (ASL placeholders, crates, table env)" \
    python3 scripts/check_template_wiring.py "$TEMPLATE"

echo
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'validate-template: %d check(s) failed:\n' "${#failed[@]}" >&2
    printf '  - %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "validate-template: all checks passed"
