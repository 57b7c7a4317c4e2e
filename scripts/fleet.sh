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
#    ROLECALL_FLEET_WRITE_DOCS=1 (unless already set): target/fleet/results.md, and the measured
#    section of docs/SCALE.md between <!-- fleet:begin --> and <!-- fleet:end -->.
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

say "fleet: $BIN, scenarios ${ROLECALL_FLEET_SCENARIOS:-a,b,c,d}"
ROLECALL_FLEET_BIN=$BIN ROLECALL_FLEET_WRITE_DOCS=${ROLECALL_FLEET_WRITE_DOCS:-1} \
	cargo test --locked --test fleet fleet_scenarios -- --ignored --nocapture --test-threads=1
say "results: $TARGET_DIR/fleet/results.md"
