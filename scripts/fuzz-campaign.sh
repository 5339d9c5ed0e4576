#!/usr/bin/env bash
# Fuzz campaign: long runs of the cargo-fuzz targets on a corpus kept
# between runs, a log of every run and the executions it adds up to, corpus
# minimisation and a coverage summary (docs/FUZZING.md, "Campaigns").
#
#   scripts/fuzz-campaign.sh [run] [TARGET...]   runs (default: the decoders)
#   scripts/fuzz-campaign.sh totals              executions per target so far
#   scripts/fuzz-campaign.sh merge [TARGET...]   minimise the corpus (-merge=1)
#   scripts/fuzz-campaign.sh coverage [TARGET...]  coverage of the decoder files
#
# Settings (environment):
#   MECOM_FUZZ_SANITIZER=address|none  default address
#   MECOM_FUZZ_RUN_SECONDS=N   one run lasts N seconds (default 600) ...
#   MECOM_FUZZ_RUN_EXECS=N     ... or N executions (-runs=N, no time limit)
#   MECOM_FUZZ_GOAL=N          repeat runs of a target until the log holds N
#                              executions of it (all sanitizers); default 0:
#                              one run per target
#   MECOM_FUZZ_BUDGET=S        start no run S seconds or more after the
#                              script started, and cut a timed run to end by
#                              then; default none
#   MECOM_FUZZ_MERGE=1         minimise each target's corpus after its runs
#   MECOM_FUZZ_CORPUS_DIR=D    corpora in D/<target> (default fuzz/corpus)
#   MECOM_FUZZ_CAMPAIGN_LOG=F  the run log (default fuzz/target/campaign.tsv)
#
# Run it niced on a shared machine: nice -n 19 scripts/fuzz-campaign.sh.
# One libFuzzer process at a time.  A crash is kept as scripts/fuzz.sh
# keeps it (tests/data/fuzz/<target>-<hash>), ends that target's runs, and
# makes the script exit 1 after the other targets.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh

DECODER_TARGETS="codec_decoders decode_frame ffi_decode decode_frame_structured"
corpus_root=${MECOM_FUZZ_CORPUS_DIR:-fuzz/corpus}
campaign_log=${MECOM_FUZZ_CAMPAIGN_LOG:-fuzz/target/campaign.tsv}
run_secs=${MECOM_FUZZ_RUN_SECONDS:-600}
run_execs=${MECOM_FUZZ_RUN_EXECS:-}
goal=${MECOM_FUZZ_GOAL:-0}
budget=${MECOM_FUZZ_BUDGET:-}
for v in "$run_secs" "$run_execs" "$goal" "$budget"; do
    case "$v" in *[!0-9]*) echo "fuzz-campaign: settings take whole numbers" >&2; exit 2 ;; esac
done

cmd=run
case "${1:-}" in run | totals | merge | coverage) cmd=$1; shift ;; esac
read -r -a targets <<<"${*:-$DECODER_TARGETS}"
for t in "${targets[@]}"; do
    case " $ALL_TARGETS " in *" $t "*) ;; *) echo "fuzz-campaign: no target $t" >&2; exit 2 ;; esac
done

# Executions of TARGET in the campaign log, all sanitizers.
logged_execs() {
    [ -f "$campaign_log" ] || { echo 0; return; }
    awk -F'\t' -v t="$1" 'NR > 1 && $3 == t { n += $6 } END { printf "%d\n", n }' "$campaign_log"
}

# Per target: runs, executions (and per sanitizer), hours, crashes.
totals() {
    [ -f "$campaign_log" ] || { echo "fuzz-campaign: no runs logged in $campaign_log"; return; }
    echo "cumulative executions per target ($campaign_log):"
    awk -F'\t' 'NR > 1 {
            if (!($3 in runs)) order[++k] = $3
            runs[$3]++; execs[$3] += $6; secs[$3] += $5; crashes[$3] += $9
            by[$3 "\t" $4] += $6
        }
        END {
            for (i = 1; i <= k; i++) {
                t = order[i]; s = ""
                for (key in by) {
                    split(key, p, "\t")
                    if (p[1] == t) s = s sprintf(" %s %.0f", p[2], by[key])
                }
                printf "  %-24s %12.0f execs in %3d runs, %6.2f h, %d crashes; by sanitizer:%s\n",
                    t, execs[t], runs[t], secs[t] / 3600, crashes[t], s
            }
        }' "$campaign_log"
}

# One logged run of TARGET for at most SECONDS (0: no time limit) and at
# most EXECS executions (0: no limit).  Sets `crashes`.
campaign_run() {
    local t=$1 secs=$2 n=$3 corpus=$corpus_root/$1 started commit log begin wall execs limit=()
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # What the binary is built from (fuzz_build ran before the first run).
    commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src fuzz/src fuzz/fuzz_targets || echo +)
    log=$log_dir/campaign-$t-$sanitizer-$(date -u +%Y%m%dT%H%M%S).log
    [ "$secs" -eq 0 ] || limit+=(-max_total_time="$secs")
    [ "$n" -eq 0 ] || limit+=(-runs="$n")
    echo "fuzz-campaign: $t ($sanitizer) ${limit[*]}, log $log" >&2
    begin=$(date +%s)
    fuzz_run "$t" "$corpus" "$log" "${limit[@]}"
    wall=$(($(date +%s) - begin))
    fuzz_keep_crashes "$t" "$log"
    execs=$(fuzz_execs "$log")
    [ -f "$campaign_log" ] ||
        printf 'date\tcommit\ttarget\tsanitizer\tseconds\texecs\texec_per_s\tcorpus\tcrashes\n' >"$campaign_log"
    printf '%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n' "$started" "$commit" \
        "$t" "$sanitizer" "$wall" "$execs" $((execs / (wall > 0 ? wall : 1))) \
        "$(find "$corpus" -type f | wc -l)" "$crashes" >>"$campaign_log"
    echo "fuzz-campaign: $t: $execs execs in ${wall}s, $crashes crashes, $(logged_execs "$t") execs logged" >&2
}

# Minimises TARGET's corpus: libFuzzer -merge=1 into a fresh directory.
merge() {
    local t=$1 corpus=$corpus_root/$1 before
    [ -d "$corpus" ] || return 0
    before=$(find "$corpus" -type f | wc -l)
    if ! cargo fuzz cmin "${build_flags[@]}" "$t" "$corpus" -- \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len="$(fuzz_max_len "$t")" >"$log_dir/cmin-$t.log" 2>&1; then
        tail -n 30 "$log_dir/cmin-$t.log" >&2
        echo "fuzz-campaign: merge of $t failed" >&2
        return 1
    fi
    echo "fuzz-campaign: $t corpus merged: $before -> $(find "$corpus" -type f | wc -l) inputs" >&2
}

# llvm-cov from the toolchain's llvm-tools component (LLVM of rustc's own
# version: an older system llvm-cov cannot read its profiles).
llvm_tool() {
    local tool
    tool=$(rustc --print sysroot)/lib/rustlib/$triple/bin/$1
    if [ ! -x "$tool" ]; then
        echo "fuzz-campaign: installing llvm-tools-preview" >&2
        rustup component add llvm-tools-preview >&2
    fi
    echo "$tool"
}

cov_dir=fuzz/target/coverage
cov_files=(src/decoder.rs src/format.rs src/codec/*.rs src/ffi/*.rs)

# llvm-cov report of the decoding side of the library into FILE, from
# PROFDATA and the coverage binaries BIN..., then its region and line
# coverage per file.
cov_report() {
    local out=$1 profdata=$2 objects=() b
    shift 2
    for b in "${@:2}"; do objects+=(-object "$b"); done
    "$(llvm_tool llvm-cov)" report "$1" "${objects[@]}" -instr-profile="$profdata" \
        "${cov_files[@]}" >"$out"
    # llvm-cov names the files below their common directory, src/.
    awk 'NR > 2 && NF >= 10 && $1 !~ /^-/ { printf "  %-22s regions %7s  lines %7s\n", $1, $4, $10 }' "$out"
}

# cargo fuzz coverage of TARGET's corpus, then the region and line coverage
# of the decoding side of the library.
coverage() {
    local t=$1 corpus=$corpus_root/$1
    # cargo-fuzz calls llvm-profdata; llvm_tool installs both with llvm-cov.
    llvm_tool llvm-profdata >/dev/null
    echo "fuzz-campaign: coverage of $t ($(find "$corpus" -type f | wc -l) inputs)" >&2
    # Profiles of an earlier run (or binary) must not be merged in.
    rm -rf "fuzz/coverage/$t"
    # One process at a time (cargo-fuzz runs one per CPU by default).
    if ! cargo fuzz coverage --jobs 1 --sanitizer none --target-dir "$cov_dir" "$t" "$corpus" -- -rss_limit_mb=2048 \
        >"$log_dir/coverage-$t.log" 2>&1; then
        tail -n 30 "$log_dir/coverage-$t.log" >&2
        echo "fuzz-campaign: cargo fuzz coverage $t failed" >&2
        return 1
    fi
    echo "coverage of $t, src/ (regions, lines; full report $log_dir/coverage-$t.txt):"
    cov_report "$log_dir/coverage-$t.txt" "fuzz/coverage/$t/coverage.profdata" \
        "$cov_dir/$triple/release/$t"
}

# The union of the coverage of TARGET... (after `coverage` of each).
coverage_union() {
    local t profiles=() bins=()
    for t in "$@"; do
        profiles+=("fuzz/coverage/$t/coverage.profdata")
        bins+=("$cov_dir/$triple/release/$t")
    done
    "$(llvm_tool llvm-profdata)" merge -sparse "${profiles[@]}" -o fuzz/coverage/union.profdata
    echo "coverage of $*, together (full report $log_dir/coverage-union.txt):"
    cov_report "$log_dir/coverage-union.txt" fuzz/coverage/union.profdata "${bins[@]}"
}

case "$cmd" in
    totals)
        totals
        exit 0
        ;;
    merge | coverage)
        fuzz_install
        for t in "${targets[@]}"; do "$cmd" "$t"; done
        if [ "$cmd" = coverage ] && [ "${#targets[@]}" -gt 1 ]; then coverage_union "${targets[@]}"; fi
        exit 0
        ;;
esac

fuzz_install
fuzz_build
start=$(date +%s)
found=0
out_of_budget=
for t in "${targets[@]}"; do
    while :; do
        # This run's limits: its time (or executions), within the budget
        # and what the goal still wants.
        secs=$run_secs n=0
        if [ -n "$run_execs" ]; then
            secs=0 n=$run_execs
            todo=$((goal - $(logged_execs "$t")))
            [ "$todo" -le 0 ] || [ "$todo" -ge "$n" ] || n=$todo
        fi
        if [ -n "$budget" ]; then
            left=$((start + budget - $(date +%s)))
            if [ "$left" -lt 10 ]; then
                echo "fuzz-campaign: budget of ${budget}s used up" >&2
                out_of_budget=1
                break
            fi
            [ "$secs" -ne 0 ] && [ "$secs" -le "$left" ] || secs=$left
        fi
        campaign_run "$t" "$secs" "$n"
        found=$((found + crashes))
        [ "$crashes" -eq 0 ] || break
        [ "$(logged_execs "$t")" -lt "$goal" ] || break
    done
    if [ "${MECOM_FUZZ_MERGE:-0}" = 1 ]; then merge "$t"; fi
    [ -z "$out_of_budget" ] || break
done
totals
if [ "$found" -gt 0 ]; then
    echo "fuzz-campaign: $found crash(es); inputs kept in tests/data/fuzz/ (cargo test --test fuzz_regressions replays them)" >&2
    exit 1
fi
