#!/usr/bin/env bash
# Fuzzes rolecall's parsers and renderer with cargo-fuzz (libFuzzer + ASan).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the targets in fuzz/ and runs each for SECONDS (default 20) with
# -max_total_time; exits non-zero if any target crashes (the input is kept in
# fuzz/artifacts/TARGET/). A longer run is the same command with a bigger
# number. Targets: config_yaml, token, ini_render (default: all three).
#
# Stable toolchain: cargo-fuzz passes -Zsanitizer=address, a nightly flag;
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept it. Cargo caches the
# compiler probe in fuzz/target/.rustc_info.json without keying it on
# RUSTC_BOOTSTRAP, so one run without the variable would poison the cache:
# CARGO_CACHE_RUSTC_INFO=0 turns that cache off.
#
# Seeds live in fuzz/seeds/TARGET/ (tracked); each run copies them into
# fuzz/corpus/TARGET/ (ignored), which keeps what the fuzzer finds between
# runs. A per-target line (runs, seconds, result) goes to
# target/reliability/fuzz.txt.
#
# ROLECALL_FUZZ_KNOWN_BUGS=name,... skips the checks for bugs already
# reported (see the targets); empty by default.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-20}
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(config_yaml token ini_render)
case $seconds in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 64
    ;;
esac

export RUSTC_BOOTSTRAP=1
export CARGO_CACHE_RUSTC_INFO=0

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

report_dir=$root/target/reliability
mkdir -p "$report_dir"

echo "fuzz: building ${targets[*]} with $(rustc --version)" >&2
start=$(date +%s)
for t in "${targets[@]}"; do
    if ! cargo fuzz build "$t" >"$report_dir/fuzz-build.log" 2>&1; then
        tail -30 "$report_dir/fuzz-build.log" >&2
        echo "fuzz: build of $t failed (log: target/reliability/fuzz-build.log)" >&2
        exit 1
    fi
done
echo "fuzz: built in $(($(date +%s) - start)) s" >&2
report=$report_dir/fuzz.txt
: >"$report"

failed=()
for t in "${targets[@]}"; do
    corpus=$root/fuzz/corpus/$t
    mkdir -p "$corpus" "$root/fuzz/artifacts/$t"
    if [[ -d $root/fuzz/seeds/$t ]]; then
        cp -n "$root/fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    log=$report_dir/fuzz-$t.log
    echo "fuzz: $t for ${seconds} s (log: ${log#"$root"/})" >&2
    status=ok
    # -timeout: an input that takes 10 s is a hang, reported like a crash.
    if ! cargo fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=CRASH
        failed+=("$t")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    inputs=$(find "$corpus" -type f | wc -l)
    if [[ $status == ok ]]; then
        line="$t: ${runs:-?} runs in ${seconds} s, ${cov:-cov: ?}, corpus $inputs inputs, no crash"
    else
        line="$t: CRASH after ${runs:-?} runs"
    fi
    echo "$line" | tee -a "$report" >&2
    if [[ $status != ok ]]; then
        grep -A3 -m1 'panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer' "$log" >&2 || true
        artifact=$(sed -n "s|.*Test unit written to $root/||p" "$log" | tail -1)
        echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t ${artifact:-fuzz/artifacts/$t/...}" >&2
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash" >&2
