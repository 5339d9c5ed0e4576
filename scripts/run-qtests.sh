#!/usr/bin/env bash
# Run QEMU's migration-test for the cbc multifd compression method (plain,
# live, mismatch, tunables) and for zstd as a reference, under TCG.
#
# Usage: scripts/run-qtests.sh [build-qemu.sh options...]
#
# Builds QEMU first with scripts/build-qemu.sh (seconds when cached), passing
# the options through.  QEMU_BUILD=<dir> skips the build and uses <dir>.
# Prints migration-test's TAP output; exits non-zero if any test failed or
# did not run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ -z "${QEMU_BUILD:-}" ]; then
    QEMU_BUILD=$("$repo/scripts/build-qemu.sh" "$@" | tail -n1)
    QEMU_BUILD=${QEMU_BUILD#QEMU_BUILD=}
fi
[ -x "$QEMU_BUILD/tests/qtest/migration-test" ] ||
    { echo "run-qtests: no migration-test in '$QEMU_BUILD'" >&2; exit 1; }

tests=(
    /x86_64/migration/multifd/tcp/plain/cbc
    /x86_64/migration/multifd/tcp/plain/cbc/live
    /x86_64/migration/multifd/tcp/plain/cbc/mismatch
    /x86_64/migration/multifd/cbc/tunables
    /x86_64/migration/multifd/tcp/plain/zstd
)
args=(--full --tap -k)
for t in "${tests[@]}"; do
    args+=(-p "$t")
done

cmd=(env QTEST_QEMU_BINARY=./qemu-system-x86_64
     ./tests/qtest/migration-test "${args[@]}")

# The tests use '-accel kvm -accel tcg'.  /dev/kvm is not reliable on the
# machines this runs on, and TCG is faster for these small guests: hide it
# in a private mount namespace when we can.
if [ -e /dev/kvm ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    run=(unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh "${cmd[@]}")
else
    run=("${cmd[@]}")
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
(cd "$QEMU_BUILD" && "${run[@]}") 2>&1 | tee "$out" || rc=$?

passed=$(grep -c '^ok ' "$out" || true)
failed=$(grep -c '^not ok ' "$out" || true)
echo "run-qtests: $passed passed, $failed failed, ${#tests[@]} expected (exit $rc)" >&2
if [ "$rc" != 0 ] || [ "$failed" != 0 ] || [ "$passed" != "${#tests[@]}" ]; then
    exit 1
fi
