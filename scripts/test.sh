#!/usr/bin/env bash
# The project's test command (README.md; CI runs it through .ci/run).
#
#   scripts/test.sh           library checks, then the QEMU integration
#   MECOM_SKIP_QEMU=1 ...     library checks only
#
# Library: rustfmt, clippy -D warnings, rustdoc -D warnings, cargo test (unit,
# proptest, malformed-frame table, C ABI; the workspace's default members
# include the `mecom` tool in cli/, so these cover it too), header drift
# check, the C test under ASan/UBSan and under valgrind, and a bounded fuzz
# run of every target.
# QEMU: build the patched QEMU (cached), run the migration qtests, and a live
# end-to-end migration with a full-RAM comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

step "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
# The tool's binary has the library's crate name, so its pages would land on
# the library's; it is documented on its own (cli/Cargo.toml: doc = false).
CARGO_TARGET_DIR=target/doc-cli RUSTDOCFLAGS="-D warnings" \
    cargo doc --no-deps --locked --quiet -p mecom-cli --bin mecom

step "cargo test"
cargo test --locked 2>&1 | tee target/cargo-test.log
# Keep the runner's closing lines visible in CI's tail.
grep -E '^test result:' target/cargo-test.log | tail -n 20

step "header drift"
scripts/check-header.sh

step "C test (ASan/UBSan)"
make --no-print-directory c-test

step "C test (valgrind)"
make --no-print-directory valgrind-test

if [ -x scripts/fuzz.sh ]; then
    step "fuzz (bounded)"
    scripts/fuzz.sh "${MECOM_FUZZ_SECONDS:-30}"
fi

if [ "${MECOM_SKIP_QEMU:-0}" != 1 ] && [ -x scripts/qemu-tests.sh ]; then
    step "QEMU integration"
    scripts/qemu-tests.sh
fi

step "summary"
passed=$(grep -E '^test result:' target/cargo-test.log | awk '{s += $4} END {print s + 0}')
failed=$(grep -E '^test result:' target/cargo-test.log | awk '{s += $6} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
