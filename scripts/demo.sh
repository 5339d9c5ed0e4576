#!/usr/bin/env bash
# The main job: a real live migration between two local QEMUs with cbc, next
# to none and zstd, with the whole guest RAM compared byte for byte after each.
#
#   scripts/demo.sh [harness options...]
#
# First run: installs packages, builds the library and the patched QEMU 10.0.2
# and the test guest (about 10 minutes on 2 cores); later runs reuse the cache
# under ${MECOM_CACHE:-~/.cache/mecom}.  Extra options go to harness/migrate.py
# (e.g. --workload compile --channels 4 --max-bandwidth 1g); see docs/harness.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=$(scripts/build-qemu.sh | tail -n 1)
build=${build#QEMU_BUILD=}
[ -x "$build/qemu-system-x86_64" ] || { echo "demo: no QEMU binary in '$build'" >&2; exit 1; }

exec python3 harness/migrate.py --qemu "$build/qemu-system-x86_64" \
    --methods none,zstd,cbc --channels 2 --workload memwrite "$@"
