# shellcheck shell=bash
# Shared by scripts/fuzz.sh and scripts/fuzz-campaign.sh (sourced, not run):
# installing cargo-fuzz, building the targets, running one target, reading
# libFuzzer's log and keeping crashes.  Expects the repository root as the
# current directory and `set -euo pipefail`.
#
# Settings read here:
#   MECOM_FUZZ_SANITIZER   address (default) or none
#
# Builds of each sanitizer go to a target dir of their own,
# fuzz/target/<sanitizer> (gitignored), so switching between them does not
# rebuild everything.

CARGO_FUZZ_VERSION=0.13.2
# shellcheck disable=SC2034 # used by the scripts that source this file
ALL_TARGETS="decode_frame decode_frame_structured roundtrip codec_decoders ffi_decode"

sanitizer=${MECOM_FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=fuzz/target/$sanitizer
bin_dir=$target_dir/$triple/release
log_dir=fuzz/target/fuzz-logs
build_flags=(--sanitizer "$sanitizer" --target-dir "$target_dir")
mkdir -p "$log_dir" tests/data/fuzz

# The pinned cargo-fuzz, installed from crates.io when it is missing (about
# 2-4 minutes, once per machine).
fuzz_install() {
    if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
        echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
    fi
}

# One build of every target; `cargo fuzz run` with the same flags reuses it.
fuzz_build() {
    local start
    echo "fuzz: building targets (sanitizer: $sanitizer)" >&2
    start=$(date +%s)
    if ! cargo fuzz build "${build_flags[@]}" >"$log_dir/build-$sanitizer.log" 2>&1; then
        tail -n 60 "$log_dir/build-$sanitizer.log" >&2
        echo "fuzz: build failed" >&2
        exit 1
    fi
    echo "fuzz: build took $(($(date +%s) - start)) s" >&2
}

# Longest input libFuzzer makes per target (frames need room for raw pages;
# the structured targets' generator needs few bytes).
fuzz_max_len() {
    case "$1" in
        decode_frame | ffi_decode) echo 32768 ;;
        codec_decoders) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

# fuzz_run TARGET CORPUS LOG [LIBFUZZER_ARG...]: one libFuzzer run of
# TARGET on CORPUS (seeded from fuzz/seeds/TARGET first), its output in LOG.
# Clears fuzz/artifacts/TARGET first (earlier crashes were kept already).
# Sets `rc` to libFuzzer's exit status.
fuzz_run() {
    local t=$1 corpus=$2 log=$3
    shift 3
    mkdir -p "$corpus"
    cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    rm -rf "fuzz/artifacts/$t"
    mkdir -p "fuzz/artifacts/$t"
    set +e
    cargo fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len="$(fuzz_max_len "$t")" -print_final_stats=1 "$@" >"$log" 2>&1
    rc=$?
    set -e
}

# Executions a run's LOG reports: libFuzzer's final stats, or (killed, or
# fork mode) the count of its last status line.
fuzz_execs() {
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$1" | tail -n1 | tr -d '#')
    fi
    echo "${execs:-0}"
}

# fuzz_keep_crashes TARGET LOG: copies each artifact of the run just made to
# tests/data/fuzz/TARGET-<hash> (plus TARGET-<hash>.case for the
# structured targets: the frames and pages the input generated, which
# tests/fuzz_regressions.rs replays), shows the crash from LOG, and sets
# `crashes` (a failed run without an artifact counts as one).
fuzz_keep_crashes() {
    local t=$1 log=$2 f hash kept
    crashes=0
    for f in "fuzz/artifacts/$t"/crash-* "fuzz/artifacts/$t"/leak-* \
        "fuzz/artifacts/$t"/timeout-* "fuzz/artifacts/$t"/oom-*; do
        [ -f "$f" ] || continue
        crashes=$((crashes + 1))
        hash=$(sha1sum "$f" | cut -c1-16)
        kept=tests/data/fuzz/$t-$hash
        cp "$f" "$kept"
        case "$t" in
            decode_frame_structured | roundtrip)
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
}
