#!/usr/bin/env bash
# Migration benchmark: none, zlib-1, zstd-1, cbc fixed and cbc adaptive over
# the e2e harness, on emulated 1 and 10 Gbit/s links (docs/benchmark.md).
#
#   scripts/bench-migration.sh [--link-mode maxbw|tc] [--repeats N] [--quick]
#                              [harness/bench.py options...]
#
# Builds (or reuses) the patched QEMU and the test guest, installs what the
# benchmark needs (iproute2 for --link-mode tc, python3-matplotlib for the
# plots) when it is missing, and runs harness/bench.py.  Results go to
# docs/results/.  --link-mode tc needs root (network namespaces, tc).
# MECOM_QEMU=/path/to/qemu-system-x86_64 skips scripts/build-qemu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
# Debian's matplotlib is for Debian's python3; prefer that interpreter.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
"$PY" -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench-migration: installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y --no-install-recommends "${need[@]}" >&2 || {
        $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "${need[@]}" >&2; }
fi

if [ -n "${MECOM_QEMU:-}" ]; then
    qemu=$MECOM_QEMU                      # an already built patched QEMU
else
    build=$(scripts/build-qemu.sh | tail -n 1)
    build=${build#QEMU_BUILD=}
    qemu="$build/qemu-system-x86_64"
fi
[ -x "$qemu" ] || { echo "bench-migration: no QEMU binary at '$qemu'" >&2; exit 1; }
guest=$(harness/build-guest.sh | tail -n 1)
[ -f "$guest/vmlinuz" ] || { echo "bench-migration: no guest in '$guest'" >&2; exit 1; }

exec "$PY" harness/bench.py --qemu "$qemu" --guest "$guest" "$@"
