#!/usr/bin/env bash
# The whole test suite: Rust workspace (unit, store conformance, herald end-to-end against the
# real binary) and the Python client (unit + end-to-end against the herald).
# Runs on a fresh Debian machine with the Rust toolchain and python3; installs what it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v cc >/dev/null || need_apt+=(gcc)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "installing ${need_apt[*]}"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi

# Optional parts contribute their own set-up (PostgreSQL for the store suite, Chromium for the
# UI tests); each script installs what it needs and exports what the tests read.
for setup in scripts/test.d/*-setup.sh; do
    [ -e "$setup" ] || continue
    step "set-up: $setup"
    # shellcheck disable=SC1090
    source "$setup"
done

# The stricter build: formatting, clippy with every warning an error (lints in Cargo.toml's
# [workspace.lints]) and the Python client's ruff and mypy --strict. Each stops the run with
# the tool's own message.
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "Python client: ruff and mypy --strict"
bash clients/python/lint.sh

step "building the workspace"
cargo build --workspace --all-targets --locked

status=0
rm -f target/extra-tests.log
step "Rust tests"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/rust-tests.log || status=1

for extra in scripts/test.d/*-tests.sh; do
    [ -e "$extra" ] || continue
    step "tests: $extra"
    bash "$extra" 2>&1 | tee -a target/extra-tests.log || status=1
done

step "Python client tests (against target/debug/herald)"
export HERALD_BIN="$PWD/target/debug/herald"
bash clients/python/run-tests.sh 2>&1 | tee target/python-tests.log || status=1
# Sum "N passed" / "N failed" / "N error(s)" from pytest's closing line (awk: no match is fine).
read -r py_passed py_failed < <(grep -E '[0-9]+ (passed|failed)' target/python-tests.log | tail -n 1 |
    awk '{ for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^(failed|error)/) f += $(i-1) } } END { print p + 0, f + 0 }')
read -r rust_passed rust_failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' target/rust-tests.log)
read -r extra_passed extra_failed < <(grep -hE '^[0-9]+ passed, [0-9]+ failed' target/extra-tests.log 2>/dev/null |
    awk '{ p += $1; f += $3 } END { print p + 0, f + 0 }')

echo
echo "Rust:   ${rust_passed} passed, ${rust_failed} failed"
echo "Extra:  ${extra_passed} passed, ${extra_failed} failed"
echo "Python: ${py_passed:-0} passed, ${py_failed:-0} failed"
echo "Total: $((rust_passed + extra_passed + ${py_passed:-0})) passed, $((rust_failed + extra_failed + ${py_failed:-0})) failed"
exit $status
