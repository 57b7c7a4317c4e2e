#!/usr/bin/env bash
# Build a release of rolecall: the version is Cargo.toml's, and everything goes into
# target/dist/VERSION/ (docs/RELEASING.md).
#
#   scripts/release.sh          (make release)
#
# What it makes, in this order:
#   1. both images, built and checked by scripts/image-test.sh (images/build-local.sh: static
#      host builds, FROM scratch; then the image checks, including that `rolecall --version` in
#      each image is the image's version label and its version tag):
#        localhost/rolecall:VERSION           the sidecar (--no-default-features)
#        localhost/rolecall-webhook:VERSION   the webhook (the full build)
#      (each also tagged :dev), exported as OCI archives:
#        rolecall-VERSION.oci.tar, rolecall-webhook-VERSION.oci.tar
#   2. the two static binaries, copied out of those images (so the files released are the
#      files in the images, byte for byte):
#        rolecall-VERSION-x86_64-unknown-linux-gnu           the full build: every command,
#                                                            inject, krm and webhook included
#        rolecall-sidecar-VERSION-x86_64-unknown-linux-gnu   the sidecar's build
#   3. CycloneDX SBOMs of each build (cargo-cyclonedx, pinned below, installed from crates.io
#      into target/tools when missing): rolecall-VERSION.cdx.json (default features) and
#      rolecall-sidecar-VERSION.cdx.json (--no-default-features)
#   4. release-notes.md: the CHANGELOG's section for VERSION
#   5. SHA256SUMS of all of the above (sha256sum -c SHA256SUMS checks them)
#
# Refuses, before building anything: a tree with uncommitted changes (the images' revision
# label would say -dirty; ROLECALL_RELEASE_ALLOW_DIRTY=1 allows it for a trial run), a
# CHANGELOG without a "## [VERSION]" section, and, when RELEASE_TAG is set (the CI workflow
# sets it to the pushed tag), a tag other than vVERSION.
#
# As root (buildah and chroot; as make image-test). Prints each step's time and the
# artifacts' sizes at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TRIPLE=$(uname -m)-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
IMAGE=${ROLECALL_IMAGE:-localhost/rolecall:dev}
WEBHOOK_IMAGE=${ROLECALL_WEBHOOK_IMAGE:-localhost/rolecall-webhook:dev}
CYCLONEDX_VERSION=0.5.9
TOOLS=$TARGET_DIR/tools

say() { printf '\n>> %s\n' "$*" >&2; }
die() {
	printf 'release.sh: %s\n' "$*" >&2
	exit 1
}
STARTED=$(date +%s)
STEP_STARTED=$STARTED
TIMINGS=()
# timed NAME: records the time since the previous step under NAME.
timed() {
	local now
	now=$(date +%s)
	TIMINGS+=("$(printf '%-34s %5d s' "$1" $((now - STEP_STARTED)))")
	STEP_STARTED=$now
}

# ------------------------------------------------------------------ preconditions

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "Cargo.toml's version '$VERSION' is not X.Y.Z"
if [ -n "${RELEASE_TAG:-}" ] && [ "$RELEASE_TAG" != "v$VERSION" ]; then
	die "the tag is $RELEASE_TAG but Cargo.toml says $VERSION: tag the commit v$VERSION (docs/RELEASING.md)"
fi
grep -q "^## \[$VERSION\]" CHANGELOG.md || die "CHANGELOG.md has no '## [$VERSION]' section (docs/RELEASING.md)"
# Every other place that names the version says the same (docs/RELEASING.md, step 2).
while read -r arg; do
	[ "$arg" = "$VERSION" ] || die "images/Containerfile has ARG VERSION=$arg, Cargo.toml says $VERSION"
done < <(sed -n 's/^ARG VERSION=//p' images/Containerfile)
plugin=$(sed -n 's/^version: //p' examples/helm/rolecall-plugin/plugin.yaml)
[ "$plugin" = "$VERSION" ] || die "examples/helm/rolecall-plugin/plugin.yaml has version $plugin, Cargo.toml says $VERSION"
grep -q "^name = \"rolecall\"\$" Cargo.toml || die "Cargo.toml is not rolecall's"
grep -A1 '^name = "rolecall"$' Cargo.lock | grep -qx "version = \"$VERSION\"" ||
	die "Cargo.lock records another version of rolecall than $VERSION: run cargo update --workspace"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	[ "${ROLECALL_RELEASE_ALLOW_DIRTY:-}" = 1 ] || die "the tree has uncommitted changes: commit them (or ROLECALL_RELEASE_ALLOW_DIRTY=1 for a trial run)"
	say "WARNING: uncommitted changes (ROLECALL_RELEASE_ALLOW_DIRTY=1): this is a trial, not a release"
fi
[ "$(id -u)" = 0 ] || die "run as root (buildah mount and chroot need it, as for make image-test)"
REVISION=$(git rev-parse HEAD)
DIST=$TARGET_DIR/dist/$VERSION
rm -rf "$DIST"
mkdir -p "$DIST"
say "rolecall $VERSION at ${REVISION:0:12} -> $DIST"

# image_repository NAME: NAME without its tag.
image_repository() {
	case ${1##*/} in
	*:*) echo "${1%:*}" ;;
	*) echo "$1" ;;
	esac
}
SIDECAR_VERSIONED=$(image_repository "$IMAGE"):$VERSION
WEBHOOK_VERSIONED=$(image_repository "$WEBHOOK_IMAGE"):$VERSION

# ------------------------------------------------------------------ 1. images

say "1. images: scripts/image-test.sh (builds both with images/build-local.sh, then checks them)"
ROLECALL_IMAGE=$IMAGE ROLECALL_WEBHOOK_IMAGE=$WEBHOOK_IMAGE "$ROOT/scripts/image-test.sh" || die "scripts/image-test.sh failed"
timed "images built and checked"
DRIVER=$("$ROOT/images/build-local.sh" --print-storage-driver)
buildah() { command buildah --storage-driver "$DRIVER" "$@"; }
for image in "$SIDECAR_VERSIONED" "$WEBHOOK_VERSIONED"; do
	label=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "$image") ||
		die "no image $image"
	[ "$label" = "$VERSION" ] || die "$image's version label is $label"
	revision=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.revision"}}' "$image")
	# -dirty: a file changed during the build (only a trial with ROLECALL_RELEASE_ALLOW_DIRTY=1 may).
	case $revision in
	"$REVISION") ;;
	"$REVISION-dirty") [ "${ROLECALL_RELEASE_ALLOW_DIRTY:-}" = 1 ] || die "$image was built from a tree with uncommitted changes ($revision)" ;;
	*) die "$image's revision label is $revision, HEAD was $REVISION when the release started (a commit during the build?)" ;;
	esac
done
buildah push --quiet "$SIDECAR_VERSIONED" "oci-archive:$DIST/rolecall-$VERSION.oci.tar:$SIDECAR_VERSIONED" >/dev/null
buildah push --quiet "$WEBHOOK_VERSIONED" "oci-archive:$DIST/rolecall-webhook-$VERSION.oci.tar:$WEBHOOK_VERSIONED" >/dev/null
timed "images exported (oci-archive)"

# ------------------------------------------------------------------ 2. binaries

say "2. the static binaries, from the images' root filesystems"
WORKING=rolecall-release-extract
cleanup() { buildah rm "$WORKING" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# extract IMAGE DEST: copies IMAGE's /rolecall to DEST and checks that it is static and
# prints `rolecall VERSION`.
extract() {
	local image=$1 dest=$2 root printed
	buildah rm "$WORKING" >/dev/null 2>&1 || true
	buildah from --name "$WORKING" --pull=never "$image" >/dev/null
	root=$(buildah mount "$WORKING")
	install -m 0755 "$root/rolecall" "$dest"
	buildah umount "$WORKING" >/dev/null
	buildah rm "$WORKING" >/dev/null
	if readelf -l "$dest" | grep -q INTERP; then die "$dest is not static"; fi
	printed=$("$dest" --version)
	[ "$printed" = "rolecall $VERSION" ] || die "$dest --version printed '$printed', want 'rolecall $VERSION'"
}
BIN_FULL=rolecall-$VERSION-$TRIPLE
BIN_SIDECAR=rolecall-sidecar-$VERSION-$TRIPLE
extract "$WEBHOOK_VERSIONED" "$DIST/$BIN_FULL"
extract "$SIDECAR_VERSIONED" "$DIST/$BIN_SIDECAR"
"$DIST/$BIN_FULL" inject --help >/dev/null || die "$BIN_FULL has no inject command"
if "$DIST/$BIN_SIDECAR" inject --help >/dev/null 2>&1; then die "$BIN_SIDECAR has the inject command (not the sidecar's build?)"; fi
timed "binaries extracted"

# ------------------------------------------------------------------ 3. SBOMs

say "3. SBOMs: cargo-cyclonedx $CYCLONEDX_VERSION"
CYCLONEDX=$TOOLS/bin/cargo-cyclonedx
# (`cargo-cyclonedx cyclonedx --version` prints "cargo-cyclonedx-cyclonedx 0.5.9")
if ! [ -x "$CYCLONEDX" ] || [ "$("$CYCLONEDX" cyclonedx --version 2>/dev/null | awk '{print $NF}')" != "$CYCLONEDX_VERSION" ]; then
	say "installing cargo-cyclonedx $CYCLONEDX_VERSION from crates.io into $TOOLS"
	cargo install cargo-cyclonedx --version "$CYCLONEDX_VERSION" --locked --root "$TOOLS"
fi
timed "cargo-cyclonedx ready"
# The SBOM's timestamp is the commit's, so the same commit gives the same SBOM.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
# sbom NAME [FEATURE FLAGS]: writes $DIST/NAME.cdx.json for the build with those flags.
sbom() {
	local name=$1
	shift
	rm -f "$ROOT/$name.cdx.json"
	"$CYCLONEDX" cyclonedx --manifest-path "$ROOT/Cargo.toml" --format json --spec-version 1.5 \
		--target "$TRIPLE" --override-filename "$name.cdx" --quiet "$@"
	mv "$ROOT/$name.cdx.json" "$DIST/$name.cdx.json"
	# Every crate cargo compiles into that build (its normal and build dependencies for the
	# target, as `cargo tree` resolves them) must be in the SBOM, at the same version.
	cargo tree --locked -e normal,build --target "$TRIPLE" --prefix none --format '{p}' "$@" |
		awk '$1 != "rolecall" { print $1, $2 }' | LC_ALL=C sort -u >"$DIST/.tree"
	python3 - "$DIST/$name.cdx.json" "$VERSION" "$DIST/.tree" <<'PY' || die "the SBOM $name.cdx.json is not what was expected (see above)"
import json, sys
bom = json.load(open(sys.argv[1]))
assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5", (bom["bomFormat"], bom["specVersion"])
main = bom["metadata"]["component"]
assert main["name"] == "rolecall" and main["version"] == sys.argv[2], main
listed = {(c["name"], "v" + c["version"]) for c in bom.get("components", [])}
built = {tuple(line.split()) for line in open(sys.argv[3]) if line.strip()}
missing = sorted(built - listed)
if missing:
    print(f"   crates built but not in the SBOM: {missing}", file=sys.stderr)
    sys.exit(1)
print(f"   {sys.argv[1].rsplit('/', 1)[1]}: {len(listed)} components, every one of the {len(built)} crates cargo builds")
PY
	rm -f "$DIST/.tree"
}
sbom "rolecall-$VERSION"
sbom "rolecall-sidecar-$VERSION" --no-default-features
timed "SBOMs"

# ------------------------------------------------------------------ 4. release notes

awk -v v="$VERSION" '
	$0 ~ "^## \\[" v "\\]" { on = 1; next }
	on && /^## \[/ { exit }
	on { print }
' CHANGELOG.md | sed -e '/./,$!d' >"$DIST/release-notes.md"
[ -s "$DIST/release-notes.md" ] || die "the CHANGELOG's section for $VERSION is empty"

# ------------------------------------------------------------------ 5. checksums

mapfile -t FILES < <(cd "$DIST" && find . -maxdepth 1 -type f -printf '%P\n' | LC_ALL=C sort)
sums=$(cd "$DIST" && sha256sum "${FILES[@]}")
printf '%s\n' "$sums" >"$DIST/SHA256SUMS"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS does not check"
timed "release notes and SHA256SUMS"

# ------------------------------------------------------------------ summary

say "rolecall $VERSION: $DIST"
(cd "$DIST" && find . -maxdepth 1 -type f -printf '%P\t%s\n' | LC_ALL=C sort |
	awk -F'\t' '{ printf "   %-52s %11d B (%.2f MiB)\n", $1, $2, $2 / 1048576 }')
printf '   images: %s, %s (each also :dev)\n' "$SIDECAR_VERSIONED" "$WEBHOOK_VERSIONED"
printf '   timings:\n'
printf '     %s\n' "${TIMINGS[@]}"
printf '     %-34s %5d s\n' "total" $(($(date +%s) - STARTED))
