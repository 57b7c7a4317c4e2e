#!/usr/bin/env bash
# rolecall benchmarks (docs/BENCHMARKS.md): the static release binary, measured.
#
#   make bench                    every row (about 4.5 minutes once built; the 60 s windows and the five 25 s layout windows dominate)
#   make bench ROWS="rss idle"    some rows: rss size startup rotation idle idle-layouts sts-calls burst compare writes
#   scripts/bench.sh rss          the same, without make
#
# 1. builds the static binary exactly as images/build-local.sh and the Containerfile do:
#      RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu
# 2. makes sure .venv holds moto, the AWS CLI and boto3 (make venv; only for the startup and compare rows);
# 3. runs the harness benches/sidecar/ (main.rs and a module per group of rows), which starts that binary as a child process against
#    the in-process fake STS and moto, prints the table and writes target/bench/results.md:
#      ROLECALL_BIN=... ROLECALL_VENV=... cargo bench --bench sidecar -- [ROW...]
#
# Environment: ROWS (rows to run), ROLECALL_BENCH_IDLE_SECS and ROLECALL_BENCH_STS_SECS (length
# of the idle and schedule windows, default 60), ROLECALL_BENCH_LAYOUT_SECS (idle window per
# token layout, default 20), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/.venv
START=$(date +%s)

say() { printf '>> %s\n' "$*" >&2; }

# shellcheck source=scripts/static-build.sh
. "$ROOT/scripts/static-build.sh"

# Only the startup (moto) and compare (AWS CLI, boto3) rows use the venv.
case " ${ROWS:-all} $* " in
*" all "* | *" startup "* | *" compare "*)
	say "make venv (moto, awscli, boto3)"
	make --no-print-directory -C "$ROOT" venv >&2
	;;
esac

# The harness itself need not be optimised like the release binary: without fat LTO and with
# parallel codegen it builds in seconds after a change to src/ (cargo bench also builds the
# library and the bin target under this profile; the figures come from $BIN only).
export CARGO_PROFILE_BENCH_LTO=off
export CARGO_PROFILE_BENCH_CODEGEN_UNITS=16

# shellcheck disable=SC2086 # ROWS is a space-separated list
set -- ${ROWS:-} "$@"
say "ROLECALL_BIN=$BIN ROLECALL_VENV=$VENV cargo bench --locked --bench sidecar -- $*"
ROLECALL_BIN=$BIN ROLECALL_VENV=$VENV cargo bench --locked --bench sidecar -- "$@"

say "make bench took $(($(date +%s) - START)) s; results in $TARGET_DIR/bench/results.md"
