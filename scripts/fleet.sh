#!/usr/bin/env bash
# rolecall's fleet simulator (issue 14, docs/SCALE.md): N real sidecars against a fake STS
# with an account-wide rate limit.
#
#   make fleet                                   scenarios a, b, c, d at N=1000, P=3, 50/s, burst 100
#   ROLECALL_FLEET_SCENARIOS=a make fleet        one scenario
#   ROLECALL_FLEET_N=200 ROLECALL_FLEET_SCENARIOS=a,b make fleet   a smaller run
#
# 1. builds the static binary exactly as scripts/bench.sh does:
#      RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu
# 2. runs the ignored test fleet_scenarios of tests/fleet.rs with ROLECALL_FLEET_BIN set to it and
#    ROLECALL_FLEET_WRITE_DOCS=1 when no knob is set (a full run at the defaults): target/fleet/results.md,
#    and the measured section of docs/SCALE.md between <!-- fleet:begin --> and <!-- fleet:end -->;
#    with any knob set, the results file only (ROLECALL_FLEET_WRITE_DOCS=1 forces the docs).
#
# Environment (tests/fleet.rs, Knobs): ROLECALL_FLEET_N, _P, _RATE, _BURST, _SURGE, _SESSION_SECS,
# _STEADY_SECS, _OUTAGE_SECS, _SCENARIOS, _WRITE_DOCS; CARGO_TARGET_DIR.
# The defaults need about 6 GiB of memory, 1,000 processes and a few thousand descriptors;
# all four scenarios take about 35 minutes ((d) alone about 25). Sidecar logs: target/fleet/logs/SCENARIO/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf '>> %s\n' "$*" >&2; }

# shellcheck source=scripts/static-build.sh
. "$ROOT/scripts/static-build.sh"

# A thousand sidecars keep a thousand connections open in the test process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# docs/SCALE.md records the full run at the defaults: a run with any knob set (one
# scenario, a smaller N) writes target/fleet/results.md only, unless
# ROLECALL_FLEET_WRITE_DOCS=1 asks for the docs too.
write_docs=1
for knob in N P RATE BURST SURGE SESSION_SECS STEADY_SECS OUTAGE_SECS SCENARIOS; do
	var=ROLECALL_FLEET_$knob
	[ -n "${!var:-}" ] && write_docs=0
done
write_docs=${ROLECALL_FLEET_WRITE_DOCS:-$write_docs}
[ "$write_docs" = 1 ] || say "a knob is set: docs/SCALE.md is left as it is (ROLECALL_FLEET_WRITE_DOCS=1 writes it)"

say "fleet: $BIN, scenarios ${ROLECALL_FLEET_SCENARIOS:-a,b,c,d}"
ROLECALL_FLEET_BIN=$BIN ROLECALL_FLEET_WRITE_DOCS=$write_docs \
	cargo test --locked --test fleet fleet_scenarios -- --ignored --nocapture --test-threads=1
say "results: $TARGET_DIR/fleet/results.md"
