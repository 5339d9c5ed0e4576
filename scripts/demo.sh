#!/usr/bin/env bash
# The demo: real live migrations of a guest holding real RAM content, over a
# link a user has, with cbc next to none and zstd, each method several times
# (interleaved), the whole guest RAM compared byte for byte after each, and a
# plain verdict per metric with the spread.
#
#   scripts/demo.sh [--link RATE] [--image NAME|FILE] [--repeats N] [bench.py options...]
#
#   --link RATE     the shaped link (default 1g = 1 Gbit/s; e.g. 100m, 10g)
#   --image X       the RAM image the guest replays (default compile, from the
#                   sample corpus: $MECOM_CORPUS, default ../shared/corpus next
#                   to the checkout; or sort, idle, randwrite, or a file of raw
#                   4 KiB pages / a .pages.zst)
#   --repeats N     migrations per method (default 3)
#
# The guest (harness/guest/replay.c) loads the image from a read-only virtio
# disk and changes pages at 8 MiB/s the way real guests do (whole pages
# replaced by other image pages, slices rewritten, counters bumped).  The link
# is a tc token bucket on a veth pair between two network namespaces (root
# needed; without root the demo falls back to QEMU's max-bandwidth and says
# so).  Methods: none, zstd-1 (multifd-zstd-level=1) and cbc-adaptive, with
# their defaults; every number is printed, whichever method it favours.
#
# First run: installs packages, builds the library and the patched QEMU 10.0.2
# and the test guest (about 10 minutes on 2 cores); later runs reuse the cache
# under ${MECOM_CACHE:-~/.cache/mecom}.  MECOM_QEMU=/path/to/qemu-system-x86_64
# skips building QEMU.  Results (CSV, table) go to a temporary directory,
# printed at the end; docs/results/ is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

link=1g image=compile repeats=3 rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --link) link=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) rest+=("$1"); shift ;;
    esac
done

t0=$(date +%s)
if [ -n "${MECOM_QEMU:-}" ]; then
    qemu=$MECOM_QEMU
else
    scripts/install-deps.sh
    build=$(scripts/build-qemu.sh | tail -n 1)
    qemu="${build#QEMU_BUILD=}/qemu-system-x86_64"
fi
[ -x "$qemu" ] || { echo "demo: no QEMU binary at '$qemu'" >&2; exit 1; }
command -v zstd >/dev/null || { echo "demo: needs the zstd command (apt-get install zstd)" >&2; exit 1; }
guest=$(harness/build-guest.sh | tail -n 1)

mode=tc
if [ "$(id -u)" != 0 ]; then
    mode=maxbw
    echo "demo: not root, so no tc-shaped veth: the link is QEMU's max-bandwidth" \
         "(which lets 'none' overshoot the rate, docs/benchmark.md)" >&2
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/mecom-demo.XXXXXX")
echo "demo: replay of '$image' over a $mode-shaped $link link, none / zstd-1 / cbc-adaptive," \
     "$repeats runs each (interleaved); results in $out" >&2
rc=0
python3 harness/bench.py --qemu "$qemu" --guest "$guest" --link-mode "$mode" --links "$link" \
    --workloads "replay:$image" --methods none,zstd-1,cbc-adaptive --repeats "$repeats" \
    --out "$out" --workdir "$out/logs" --verdict "${rest[@]}" || rc=$?
echo "demo: wall time $(( $(date +%s) - t0 )) s; CSV and table under $out"
exit $rc
