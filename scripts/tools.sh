#!/usr/bin/env bash
# Installs the deploy-side tools into a git-ignored virtualenv (.tools/venv), without
# Docker: cfn-lint, the AWS SAM CLI, cargo-lambda, zig (cargo-lambda's cross linker) and
# statelint, pinned in scripts/tools-requirements.txt; plus the Rust arm64 target that
# the Lambdas are built for; plus the aws CLI (v1, from PyPI) to talk to the local cloud:
# `.tools/venv/bin/aws --endpoint-url http://localhost:4566 stepfunctions list-executions ...`.
# Idempotent: a second run only checks and returns.
#
#   scripts/tools.sh          install what is missing
#   scripts/tools.sh --check  exit 1 (and say why) when anything is missing; install nothing
#                             (a missing aws CLI is only reported: validation does not need it)
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR=.tools
VENV="$TOOLS_DIR/venv"
REQUIREMENTS=scripts/tools-requirements.txt
STAMP="$VENV/.requirements.sha256"
RUST_TARGET=aarch64-unknown-linux-gnu
# awscli v1 vendors its own botocore, so it cannot disturb the one SAM uses.
AWSCLI_VERSION=1.46.3
PYTHON="${PYTHON:-python3}"
export SAM_CLI_TELEMETRY=0  # no usage reporting (and no network call) from sam

check_only=false
if [ "${1:-}" = "--check" ]; then
    check_only=true
fi

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)

if [ "$want" = "$have" ] && [ -x "$VENV/bin/sam" ]; then
    say "python tools up to date in $VENV"
elif $check_only; then
    fail "deploy tools are missing or outdated: run \`make tools\`"
else
    say "installing python tools into $VENV (cfn-lint, aws-sam-cli, cargo-lambda, ziglang, statelint)"
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (Python >= 3.10 is needed)"
    start=$(date +%s)
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$STAMP"
    say "installed in $(( $(date +%s) - start ))s"
fi

if [ -x "$VENV/bin/aws" ]; then
    say "aws CLI present in $VENV"
elif $check_only; then
    say "aws CLI missing (optional, for the local cloud): run \`make tools\`"
else
    say "installing the aws CLI $AWSCLI_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_VERSION"
fi

if rustup target list --installed | grep -qx "$RUST_TARGET"; then
    say "rust target $RUST_TARGET installed"
elif $check_only; then
    fail "rust target $RUST_TARGET is missing: run \`make tools\`"
else
    say "adding rust target $RUST_TARGET"
    rustup target add "$RUST_TARGET"
fi

# Versions, so a log shows what validated or built the artifacts.
export PATH="$PWD/$VENV/bin:$PATH"
printf '    %-13s %s\n' \
    cfn-lint "$(cfn-lint --version 2>&1 | awk '{print $NF}')" \
    sam "$(sam --version 2>&1 | awk '{print $NF}')" \
    cargo-lambda "$(cargo lambda --version 2>&1 | awk '{print $2}')" \
    zig "$(python3 -m ziglang version 2>&1)" \
    statelint "$(python3 -m pip show statelint 2>/dev/null | awk '/^Version:/ {print $2}')" \
    aws "$( (aws --version 2>&1 || echo missing) | awk '{print $1}')"
