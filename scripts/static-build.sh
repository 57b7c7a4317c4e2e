# Sourced by scripts/bench.sh and scripts/fleet.sh: builds the static release binary exactly as
# images/build-local.sh and the Containerfile do, and sets BIN to it.
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --target x86_64-unknown-linux-gnu
# (--no-default-features: the sidecar is built without `rolecall inject`, docs/INJECTION.md).
# Needs ROOT; honours CARGO_TARGET_DIR.
TRIPLE=$(uname -m)-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$TRIPLE/release/rolecall

printf '>> %s\n' "static release build: cargo build --release --locked --no-default-features --target $TRIPLE (RUSTFLAGS=-C target-feature=+crt-static)" >&2
(
	unset CARGO_ENCODED_RUSTFLAGS
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --target "$TRIPLE"
)
[ -x "$BIN" ] || {
	echo "${0##*/}: cargo did not produce $BIN" >&2
	exit 1
}
