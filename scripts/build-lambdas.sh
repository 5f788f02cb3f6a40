#!/usr/bin/env bash
# Builds Lambda artefacts for AWS: release, arm64 (aarch64-unknown-linux-gnu, linked by
# zig through cargo-lambda, no Docker), one package at a time exactly as `sam build` does,
# into target/lambda/<name>/bootstrap; then prints each binary's size.
# Needs `make tools` first.
#
#   scripts/build-lambdas.sh                 all five Lambdas
#   scripts/build-lambdas.sh wallet-service  one (or several) by crate name
set -euo pipefail
cd "$(dirname "$0")/.."

LAMBDAS=(invoice-processor wallet-service payments-adapter refund-service api-handler)
VENV=.tools/venv
TARGET_DIR=${CARGO_TARGET_DIR:-target}

usage() {
    echo "usage: $0 [NAME...]   where NAME is one of: ${LAMBDAS[*]}" >&2
    exit 2
}

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
    names=("${LAMBDAS[@]}")
fi
for name in "${names[@]}"; do
    known=false
    for lambda in "${LAMBDAS[@]}"; do
        [ "$name" = "$lambda" ] && known=true
    done
    if ! $known; then
        echo "error: unknown Lambda '$name'" >&2
        usage
    fi
done

scripts/tools.sh --check >/dev/null || exit 1
# cargo-lambda finds zig as `python3 -m ziglang`: the venv's python3 must come first.
export PATH="$PWD/$VENV/bin:$PATH"

failed=()
for name in "${names[@]}"; do
    printf '==> cargo lambda build --release --arm64 --package %s\n' "$name"
    start=$(date +%s)
    if cargo lambda build --release --arm64 --package "$name" --bin "$name"; then
        printf '    built %s in %ss\n' "$name" "$(( $(date +%s) - start ))"
    else
        printf '    FAILED: %s (after %ss)\n' "$name" "$(( $(date +%s) - start ))" >&2
        failed+=("$name")
    fi
done

echo
printf '%-20s %12s %9s  %s\n' lambda bytes MiB binary
for name in "${names[@]}"; do
    bin="$TARGET_DIR/lambda/$name/bootstrap"
    if [ -f "$bin" ]; then
        bytes=$(stat -c %s "$bin")
        stripped=$(file -b "$bin" | grep -oE '(not )?stripped' || echo '?')
        arch=$(file -b "$bin" | grep -oE 'ARM aarch64|x86-64' || echo '?')
        # provided.al2023 ships glibc 2.34: the newest symbol version needed must not exceed it.
        glibc=$(readelf -V "$bin" 2>/dev/null | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)
        printf '%-20s %12s %9s  %s (%s, %s, needs %s)\n' "$name" "$bytes" \
            "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" "$bin" "$arch" "$stripped" \
            "${glibc:-?}"
    else
        printf '%-20s %12s %9s  %s\n' "$name" - - "missing"
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo >&2
    echo "error: ${#failed[@]} Lambda(s) did not build: ${failed[*]}" >&2
    exit 1
fi
