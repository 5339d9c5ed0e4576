#!/usr/bin/env bash
# libvirt end-to-end tests of the cbc multifd compression method.
#
# Usage: scripts/libvirt-tests.sh [--jobs N] [--keep-logs DIR] [--no-stock]
#                                 [--qemu PATH] [--baseline]
#
#   --qemu PATH  use this cbc-enabled qemu-system-x86_64 instead of running
#                scripts/build-qemu.sh.
#   --baseline   also migrate once without compression (byte-count reference).
#
#  1. builds (or reuses) the patched QEMU      (scripts/build-qemu.sh),
#     the patched libvirt 11.3.0 and installs stock libvirt 11.3.0
#                                              (scripts/build-libvirt.sh),
#     and the test guest                       (harness/build-guest.sh);
#  2. runs harness/lvtest.py: two patched and two stock libvirtd
#     daemons, each in its own mount namespace, live-migrate a TCG guest
#     running memwrite over loopback:
#       - patched libvirt: virsh migrate --live --parallel
#         --parallel-connections 2 --comp-methods cbc (A->B), then back with
#         the four --comp-cbc-* tunables and --p2p (B->A), plus the patch's
#         own errors
#         and QEMU's range checks as virsh reports them;
#       - stock libvirt: --comp-methods cbc must fail with "Unsupported
#         compression method 'cbc'"; the -global
#         migration.multifd-compression=cbc route (<qemu:commandline>) must
#         work (C->D), and fail cleanly if only the source has it; a sparse (mapped-ram) save must then fail because
#         compression is set ("Mapped-ram only available for non-compressed
#         non-TLS multifd migration").
#     Every migration checks that both QEMUs used cbc (query-migrate-parameters
#     and query-migrate's cbc statistics sampled on an extra QMP socket, and
#     the libvirtd debug logs), compares the whole guest RAM of source and
#     destination while the destination is paused (--suspend), then resumes
#     the guest and checks that its heartbeat continues.
#
# Prints PASS:/FAIL: lines; exits non-zero if any check fails.  Needs root.
# The measured summary goes to ${MECOM_RESULTS:-target/e2e}/libvirt.json.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

jobs=$(nproc 2>/dev/null || echo 2)
keep=""
qemu=""
extra=()
build_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --jobs|-j) jobs=$2; shift 2 ;;
    --keep-logs) keep=$2; shift 2 ;;
    --qemu) qemu=$2; shift 2 ;;
    --no-stock) extra+=(--no-stock); build_extra+=(--no-stock); shift ;;
    --baseline) extra+=(--baseline); shift ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "libvirt-tests: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "libvirt-tests: needs root (privileged libvirtd daemons)" >&2; exit 1; }

t0=$(date +%s)
if [ -z "$qemu" ]; then
    qemu_build=$(scripts/build-qemu.sh --jobs "$jobs" | tail -n 1)
    qemu_build=${qemu_build#QEMU_BUILD=}
    qemu=$qemu_build/qemu-system-x86_64
fi
[ -x "$qemu" ] || { echo "libvirt-tests: no QEMU binary at '$qemu'" >&2; exit 1; }

libvirt_build=$(scripts/build-libvirt.sh --jobs "$jobs" ${build_extra[@]+"${build_extra[@]}"} | tail -n 1)
libvirt_build=${libvirt_build#LIBVIRT_BUILD=}
[ -x "$libvirt_build/src/libvirtd" ] || { echo "libvirt-tests: no libvirtd in '$libvirt_build'" >&2; exit 1; }

guest=$(harness/build-guest.sh | tail -n 1)
[ -f "$guest/vmlinuz" ] || { echo "libvirt-tests: no guest in '$guest'" >&2; exit 1; }
echo "libvirt-tests: builds ready after $(( $(date +%s) - t0 )) s" >&2

results=${MECOM_RESULTS:-$repo/target/e2e}
mkdir -p "$results"
args=(--qemu "$qemu" --libvirt-build "$libvirt_build" --guest "$guest"
      --json "$results/libvirt.json")
[ -n "$keep" ] && args+=(--workdir "$keep")

echo "--- libvirt e2e: patched libvirt (--comp-methods cbc, tunables), stock libvirt (-global route, errors)"
# lvtest.py cleans up its daemons and QEMUs itself (also on SIGINT/SIGTERM);
# forward those signals to it.
python3 harness/lvtest.py "${args[@]}" ${extra[@]+"${extra[@]}"} &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
rc=0
wait "$pid" || rc=$?
trap - INT TERM
echo "libvirt-tests: total $(( $(date +%s) - t0 )) s, exit $rc" >&2
exit "$rc"
