#!/usr/bin/env bash
# Bounded fuzz run of every cargo-fuzz target in fuzz/ (docs/FUZZING.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        default 30
#   MECOM_FUZZ_TARGETS="decode_frame roundtrip" only these targets
#   MECOM_FUZZ_SANITIZER=none                   build without ASan
#   MECOM_FUZZ_JOBS=N                           N libFuzzer workers per target
#
# Long runs with a kept corpus and a log of executions: scripts/fuzz-campaign.sh.
#
# Runs on the stable toolchain: cargo-fuzz passes -Z flags (-Zsanitizer) to
# rustc, which RUSTC_BOOTSTRAP=1 lets a stable compiler accept.  Installs the
# pinned cargo-fuzz when it is missing, seeds fuzz/corpus/<target> from the
# checked-in fuzz/seeds/<target>, runs each target for the given time, and
# prints "target: N execs, M crashes".  A crash is copied to
# tests/data/fuzz/<target>-<hash> (plus <target>-<hash>.case for the
# structured targets: the frames and pages the input generated, which
# tests/fuzz_regressions.rs replays) and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh

secs=${1:-30}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
read -r -a targets <<<"${MECOM_FUZZ_TARGETS:-$ALL_TARGETS}"
jobs=${MECOM_FUZZ_JOBS:-1}

fuzz_install
fuzz_build

found=0
summary=()
for t in "${targets[@]}"; do
    fork=()
    if [ "$jobs" -gt 1 ]; then fork=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1); fi
    echo "fuzz: $t for ${secs}s" >&2
    fuzz_run "$t" "fuzz/corpus/$t" "$log_dir/$t.log" -max_total_time="$secs" "${fork[@]}"
    fuzz_keep_crashes "$t" "$log_dir/$t.log"
    found=$((found + crashes))
    summary+=("$t: $(fuzz_execs "$log_dir/$t.log") execs, $crashes crashes")
    echo "${summary[-1]}"
done

echo "fuzz summary (${secs}s per target, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if [ "$found" -gt 0 ]; then
    echo "fuzz: $found crash(es); inputs kept in tests/data/fuzz/ (cargo test --test fuzz_regressions replays them)" >&2
    exit 1
fi
