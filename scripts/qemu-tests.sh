#!/usr/bin/env bash
# QEMU integration tests (called by scripts/test.sh, i.e. by CI):
#  1. build the patched QEMU 10.0.2 with the library (cached: seconds when
#     nothing changed);
#  2. QEMU's own migration-test for cbc (plain, live, deltas, mismatch both
#     ways, tunables) and
#     zstd, under TCG;
#  3. live end-to-end migrations of the test guest with cbc while a workload
#     dirties memory, at 2 and 4 channels, each followed by a byte-for-byte
#     comparison of the whole guest RAM of source and destination;
#  4. cbc on one side and none on the other (both ways) must fail cleanly,
#     the source must keep running, and a matching retry must succeed;
#  5. cbc and none over TLS (tls-creds-x509, test certificates made by the
#     harness), whole-RAM compare; a source without TLS must be refused by
#     a destination that requires it;
#  6. fault injection: a proxy breaks one cbc packet per trial (14 kinds,
#     MECOM_FAULT_TRIALS each); every fault must fire and fail the migration
#     on the destination without running its guest, the source must keep
#     running, and a clean retry must give identical RAM;
#  7. 20 cycles of migrate_cancel of a running migration (active,
#     pre-switchover, in the final sync, before the final round), each
#     followed by a full migration with a RAM comparison; the source's RSS
#     must not grow.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

build=$(scripts/build-qemu.sh | tail -n 1)
build=${build#QEMU_BUILD=}
qemu=$build/qemu-system-x86_64
[ -x "$qemu" ] || { echo "qemu-tests: no QEMU binary in '$build'" >&2; exit 1; }

echo "--- migration-test (cbc, zstd)"
QEMU_BUILD=$build scripts/run-qtests.sh

echo "--- harness unit tests"
python3 -m unittest discover -s harness -p 'test_*.py'

results=${MECOM_RESULTS:-$repo/target/e2e}
mkdir -p "$results"

echo "--- live e2e: cbc vs none/zstd, memwrite, 2 and 4 channels, full-RAM compare"
python3 harness/migrate.py --qemu "$qemu" --methods none,zstd,cbc --channels 2,4 \
    --workload memwrite --mem 384 --json "$results/e2e-memwrite.json"

echo "--- live e2e: cbc, compile-like workload, 2 channels"
python3 harness/migrate.py --qemu "$qemu" --methods cbc --channels 2 \
    --workload compile --mem 384 --json "$results/e2e-compile.json"

echo "--- live e2e: cbc deltas of re-sent pages (memwrite rewrites parts of pages, 1 Gbit/s), full-RAM compare"
python3 harness/migrate.py --qemu "$qemu" --methods cbc --channels 2 \
    --workload memwrite --mem 384 --max-bandwidth 1g --expect-stat 'cbc.pages-delta>0' \
    --json "$results/e2e-delta.json"

echo "--- cbc on the source, none on the destination: must fail cleanly, then retry"
python3 harness/migrate.py --qemu "$qemu" --methods cbc --mismatch --channels 2 \
    --workload idle --mem 256 --json "$results/e2e-mismatch.json"

echo "--- none on the source, cbc on the destination: cbc's own receive check fails it, then retry"
python3 harness/migrate.py --qemu "$qemu" --methods none --dst-method cbc --expect-fail \
    --expect-error 'flags received 0 flags expected 6' --channels 2 \
    --workload idle --mem 256 --json "$results/e2e-mismatch-dst-cbc.json"

echo "--- cbc and none over TLS (x509 certificates made for the run), full-RAM compare"
python3 harness/migrate.py --qemu "$qemu" --methods none,cbc --channels 2 --tls \
    --src-param multifd-cbc-tcp-info=true --workload compile --mem 384 \
    --json "$results/e2e-tls.json"

echo "--- a source without TLS is refused by a destination that requires it"
python3 harness/migrate.py --qemu "$qemu" --methods cbc --channels 2 --tls --src-param tls-creds= \
    --expect-fail --no-retry --expect-error 'TLS handshake failed' \
    --workload idle --mem 256 --json "$results/e2e-tls-required.json"

echo "--- fault injection: every kind of broken cbc packet fails cleanly"
python3 harness/faults.py inject --qemu "$qemu" --trials "${MECOM_FAULT_TRIALS:-3}" \
    --json "$results/faults-inject.json"

echo "--- lifecycle: migrate_cancel of a running migration at 4 points, then a full migration, 20 cycles"
python3 harness/faults.py cancel --qemu "$qemu" --cycles "${MECOM_CANCEL_CYCLES:-20}" \
    --json "$results/faults-cancel.json"

echo "--- libvirt: virsh migrate --comp-methods cbc (patched 11.3.0), and -global with stock 11.3.0"
scripts/libvirt-tests.sh --qemu "$qemu"
