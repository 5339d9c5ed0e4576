#!/usr/bin/env bash
# Bounded fuzz run of every cargo-fuzz target in fuzz/ (docs/FUZZING.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        default 30
#   MECOM_FUZZ_TARGETS="decode_frame roundtrip" only these targets
#   MECOM_FUZZ_SANITIZER=none                   build without ASan
#   MECOM_FUZZ_JOBS=N                           N libFuzzer workers per target
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

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS="decode_frame decode_frame_structured roundtrip codec_decoders ffi_decode"

secs=${1:-30}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
read -r -a targets <<<"${MECOM_FUZZ_TARGETS:-$ALL_TARGETS}"
sanitizer=${MECOM_FUZZ_SANITIZER:-address}
jobs=${MECOM_FUZZ_JOBS:-1}

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

export RUSTC_BOOTSTRAP=1
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release
log_dir=fuzz/target/fuzz-logs
mkdir -p "$log_dir" tests/data/fuzz

# One build of every target; `cargo fuzz run` with the same flags reuses it.
build_flags=(--sanitizer "$sanitizer")
echo "fuzz: building targets (sanitizer: $sanitizer)" >&2
start=$(date +%s)
if ! cargo fuzz build "${build_flags[@]}" >"$log_dir/build.log" 2>&1; then
    tail -n 60 "$log_dir/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi
echo "fuzz: build took $(( $(date +%s) - start )) s" >&2

# Longest input libFuzzer makes per target (frames need room for raw pages;
# the structured targets' generator needs few bytes).
max_len() {
    case "$1" in
        decode_frame | ffi_decode) echo 32768 ;;
        codec_decoders) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

found=0
summary=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    artifacts=fuzz/artifacts/$t
    mkdir -p "$corpus"
    cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    # Crashes of earlier runs were copied to tests/data/fuzz already.
    rm -rf "$artifacts"
    mkdir -p "$artifacts"
    log=$log_dir/$t.log
    fork=()
    if [ "$jobs" -gt 1 ]; then fork=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1); fi
    echo "fuzz: $t for ${secs}s" >&2
    set +e
    cargo fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len="$(max_len "$t")" -print_final_stats=1 "${fork[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    if [ -z "$execs" ]; then
        # No final stats (killed, or fork mode): the last status line's count.
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#')
    fi
    crashes=0
    for f in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
        [ -f "$f" ] || continue
        crashes=$((crashes + 1))
        hash=$(sha1sum "$f" | cut -c1-16)
        kept=tests/data/fuzz/$t-$hash
        cp "$f" "$kept"
        case " decode_frame_structured roundtrip " in
            *" $t "*)
                # The case the input generated, replayable without libFuzzer.
                MECOM_FUZZ_CASE_OUT="$kept.case" "$bin_dir/$t" "$f" >/dev/null 2>&1 || true
                ;;
        esac
        echo "fuzz: $t: $(basename "$f") kept as $kept" >&2
    done
    if [ "$crashes" -eq 0 ] && [ "$rc" -ne 0 ]; then
        echo "fuzz: $t exited $rc without an artifact; see $log" >&2
        tail -n 30 "$log" >&2
        crashes=1
    elif [ "$crashes" -gt 0 ]; then
        grep -m1 -B2 -A25 -E '^(thread .* panicked|==[0-9]+==ERROR)' "$log" >&2 || tail -n 40 "$log" >&2
    fi
    found=$((found + crashes))
    summary+=("$t: ${execs:-0} execs, $crashes crashes")
    echo "${summary[-1]}"
done

echo "fuzz summary (${secs}s per target, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if [ "$found" -gt 0 ]; then
    echo "fuzz: $found crash(es); inputs kept in tests/data/fuzz/ (cargo test --test fuzz_regressions replays them)" >&2
    exit 1
fi
