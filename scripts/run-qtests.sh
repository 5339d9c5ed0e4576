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
    /x86_64/migration/multifd/tcp/plain/cbc/delta
    /x86_64/migration/multifd/tcp/plain/cbc/delta-legacy
    /x86_64/migration/multifd/tcp/plain/cbc/mismatch
    /x86_64/migration/multifd/tcp/plain/cbc/mismatch-dst
    /x86_64/migration/multifd/cbc/tunables
    /x86_64/migration/multifd/cbc/forbidden
    /x86_64/migration/multifd/tcp/plain/zstd
)
# GLib's -p also runs every test below the given path, so .../plain/cbc
# covers .../cbc/live, .../cbc/delta(-legacy), .../cbc/mismatch and .../cbc/mismatch-dst, and .../multifd/cbc covers
# .../cbc/tunables and .../cbc/forbidden.  Do not name those again: a test
# selected twice runs twice, and migration-test does not survive that.
args=(--full --tap -k
      -p /x86_64/migration/multifd/tcp/plain/cbc
      -p /x86_64/migration/multifd/cbc
      -p /x86_64/migration/multifd/tcp/plain/zstd)

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

failed=$(grep -c '^not ok ' "$out" || true)
missing=0
for t in "${tests[@]}"; do
    if ! grep -Eq "^ok [0-9]+ $t\$" "$out"; then
        echo "run-qtests: did not pass: $t" >&2
        missing=$((missing + 1))
    fi
done
echo "run-qtests: $((${#tests[@]} - missing)) of ${#tests[@]} passed, $failed failed (exit $rc)" >&2
if [ "$rc" != 0 ] || [ "$failed" != 0 ] || [ "$missing" != 0 ]; then
    exit 1
fi
