#!/usr/bin/env bash
# Instructions per page for encode and decode of each fixed CBC setting,
# counted by callgrind: a count, not a time, so it does not move with the
# load of a shared machine and two builds can be compared on it.
#
# Usage: scripts/callgrind-pages.sh [--mecom BIN] [--pages N]
#                                   [--settings LIST] [IMAGE]
#
#   --mecom BIN      the mecom tool to measure (default: target/release/mecom,
#                    built first).  Give an older build to compare.
#   --pages N        pages read from the image (default 2048).
#   --settings LIST  comma-separated `mecom bench` settings (default
#                    fast,fast-lzo,ratio,ratio-g8).  The adaptive ones route
#                    by measured time, so their work can differ run to run.
#   IMAGE            a raw or .pages.zst image (default:
#                    ../shared/corpus/compile.pages.zst).
#
# Prints one Markdown row per setting: instructions per non-zero page inside
# Encoder::encode and inside Decoder::decode_into (callgrind inclusive
# counts over `mecom bench --repeat 1`).
set -euo pipefail
cd "$(dirname "$0")/.."

mecom=
pages=2048
settings=fast,fast-lzo,ratio,ratio-g8
image=../shared/corpus/compile.pages.zst
while [ $# -gt 0 ]; do
    case "$1" in
    --mecom) mecom=$2; shift 2 ;;
    --pages) pages=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) image=$1; shift ;;
    esac
done
if [ -z "$mecom" ]; then
    cargo build --release --locked --quiet -p mecom-cli
    mecom=target/release/mecom
fi
command -v valgrind >/dev/null || { echo "callgrind-pages: valgrind is needed" >&2; exit 2; }

mecom=$(realpath "$mecom")
image=$(realpath "$image")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Run from a directory without the sources: from the checkout, callgrind
# files part of a function's cost under the crate-relative path of its
# source and the total under that name comes out short.
cd "$tmp"
echo "| setting | encode instr/page | decode instr/page |"
echo "|---|---:|---:|"
for setting in ${settings//,/ }; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
        "$mecom" bench --quiet --json --limit "$pages" --repeat 1 \
        --settings "$setting" --baselines none "$image" \
        > "$tmp/bench.json" 2>"$tmp/valgrind.log"
    python3 - "$tmp/cg.out" "$tmp/bench.json" "$setting" <<'EOF'
import json, subprocess, sys
out, bench, setting = sys.argv[1:4]
nonzero = json.load(open(bench))[0]["nonzero_pages"]
ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                     capture_output=True, text=True, check=True).stdout
def count(symbol):
    # A function's lines: "<count> (<pct>) <file>:<symbol> [<binary>]".
    # Debug info may name its source file twice (relative and absolute
    # paths), each line counting part of it: the largest is the function.
    counts = [int(line.split()[0].replace(",", ""))
              for line in ann.splitlines()
              if line.rstrip().endswith("]") and f":{symbol} [" in line]
    if not counts:
        raise SystemExit(f"callgrind-pages: {symbol} not in the profile")
    return max(counts)
enc = count("mecom::encoder::Encoder::encode")
dec = count("mecom::decoder::Decoder::decode_into")
print(f"| {setting} | {enc / nonzero:,.0f} | {dec / nonzero:,.0f} |")
EOF
done
