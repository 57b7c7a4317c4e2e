#!/usr/bin/env bash
# Build one of rolecall's two runtime images from a binary built on this machine: no
# registry, no container daemon, no Rust image. Each holds the same files and configuration
# as its runtime stage of images/Containerfile (keep the two in step).
#
# The sidecar, localhost/rolecall:dev (stage `sidecar`), built with --no-default-features
# (no `inject`, `krm`, `webhook`: docs/INJECTION.md):
#   /rolecall                            fully static binary (crt-static glibc)
#   /etc/ssl/certs/ca-certificates.crt   Debian's CA bundle (package ca-certificates), without
#                                        the CAs this machine added locally (see ca_bundle)
#   /etc/passwd, /etc/group              root, nobody, rolecall (65532:65532)
#   /etc/nsswitch.conf                   hosts: files dns
#   user 65532:65532, entrypoint ["/rolecall"], cmd ["run"], SSL_CERT_FILE, port 9911, OCI labels
#
# The webhook, localhost/rolecall-webhook:dev (stage `webhook`), the full build (default
# features), docs/WEBHOOK.md:
#   /rolecall, /etc/passwd, /etc/group, /etc/nsswitch.conf as above; no CA bundle (the
#   webhook calls nothing, so trusts nothing)
#   user 65532:65532, entrypoint ["/rolecall"], cmd ["webhook"], ports 8443 and 9911, OCI labels
#
# Each image is also tagged with Cargo.toml's version (localhost/rolecall:0.1.0,
# localhost/rolecall-webhook:0.1.0), which is its org.opencontainers.image.version label too.
#
# Usage:
#   images/build-local.sh [sidecar]                the sidecar (idempotent: replaces the old image)
#   images/build-local.sh webhook                  the webhook
#   images/build-local.sh --print-storage-driver   print the storage driver it would use
#
# Environment:
#   ROLECALL_IMAGE    the sidecar's image name (default localhost/rolecall:dev)
#   ROLECALL_WEBHOOK_IMAGE  the webhook's image name (default localhost/rolecall-webhook:dev)
#   STORAGE_DRIVER    containers/storage driver; default: the configured one (overlay) when a
#                     scratch container can be created and mounted with it, else vfs
#   CARGO_TARGET_DIR  cargo's target dir (default ./target)
#   ROLECALL_CA_BUNDLE  a PEM file to ship as the sidecar's CA bundle instead (e.g. with a
#                     corporate CA)
#
# Installs what it lacks (buildah, ca-certificates, binutils) with apt-get: run it as root on
# Debian/Ubuntu. It never runs a container, so no runtime isolation (--isolation) is involved.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIPLE=$(uname -m)-unknown-linux-gnu # x86_64-unknown-linux-gnu here, as in the Containerfile
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$TRIPLE/release/rolecall
CA_CONF=/etc/ca-certificates.conf

say() { printf '>> %s\n' "$*" >&2; }
die() {
	printf 'build-local.sh: %s\n' "$*" >&2
	exit 1
}

# ------------------------------------------------------------------ tools

APT_UPDATED=
apt_install() {
	if [ "$(id -u)" != 0 ]; then die "missing $*: install it (apt-get install $*) or run as root"; fi
	if [ -z "$APT_UPDATED" ]; then
		say "apt-get update"
		apt-get update -qq
		APT_UPDATED=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
	command -v buildah >/dev/null || apt_install buildah
	command -v readelf >/dev/null || apt_install binutils
	if [ "${VARIANT:-sidecar}" = sidecar ] && [ -z "${ROLECALL_CA_BUNDLE:-}" ]; then
		if [ ! -s "$CA_CONF" ] || [ ! -d /usr/share/ca-certificates ]; then apt_install ca-certificates; fi
		[ -s "$CA_CONF" ] || die "no $CA_CONF after installing ca-certificates"
	fi
}

# The CA bundle for the image: what update-ca-certificates puts in
# /etc/ssl/certs/ca-certificates.crt from the ca-certificates package (the certificates
# selected in /etc/ca-certificates.conf, in its order), and so the same bundle as in the
# Containerfile's Debian builder, but without /usr/local/share/ca-certificates: a CA that
# this machine trusts locally (a sandbox's or a company's TLS-intercepting proxy) must not
# end up trusted by the image. ROLECALL_CA_BUNDLE ships a given file instead.
ca_bundle() {
	if [ -n "${ROLECALL_CA_BUNDLE:-}" ]; then
		cat "$ROLECALL_CA_BUNDLE"
		return
	fi
	local cert
	grep -v '^[#!]' "$CA_CONF" | while IFS= read -r cert; do
		[ -n "$cert" ] || continue
		# shellcheck disable=SC1003 # sed: append a newline when the last line lacks one
		sed -e '$a\' "/usr/share/ca-certificates/$cert"
	done
}

# ------------------------------------------------------------------ storage

# The configured driver (overlay on Debian) works when this machine can mount overlay; in
# some nested sandboxes it cannot, and vfs (plain copies, slower, always works) is the answer.
# Probe by creating and mounting an empty scratch container.
storage_driver() {
	if [ -n "${STORAGE_DRIVER:-}" ]; then
		echo "$STORAGE_DRIVER"
		return
	fi
	local probe=rolecall-storage-probe
	buildah rm "$probe" >/dev/null 2>&1 || true
	if buildah from --name "$probe" scratch >/dev/null 2>&1 && buildah mount "$probe" >/dev/null 2>&1; then
		buildah rm "$probe" >/dev/null 2>&1 || true
		buildah info --format '{{.store.GraphDriverName}}'
	else
		buildah rm "$probe" >/dev/null 2>&1 || true
		echo vfs
	fi
}

if [ "${1:-}" = --print-storage-driver ]; then
	ensure_tools
	storage_driver
	exit 0
fi
[ $# -le 1 ] || die "usage: $0 [sidecar | webhook | --print-storage-driver]"
VARIANT=${1:-sidecar}
case $VARIANT in
sidecar)
	IMAGE=${ROLECALL_IMAGE:-localhost/rolecall:dev}
	WORKING=rolecall-build-local # name of the working container
	;;
webhook)
	IMAGE=${ROLECALL_WEBHOOK_IMAGE:-localhost/rolecall-webhook:dev}
	WORKING=rolecall-build-local-webhook
	;;
*) die "usage: $0 [sidecar | webhook | --print-storage-driver]" ;;
esac

ensure_tools
DRIVER=$(storage_driver)
buildah() { command buildah --storage-driver "$DRIVER" "$@"; }

# ------------------------------------------------------------------ the static binary

# The explicit --target makes RUSTFLAGS apply to the target only: build scripts and
# proc-macros stay dynamic, the binary is static. Same commands as the Containerfile's: the
# sidecar without the default features, the webhook with them. (Both write $BIN; cargo keeps
# each build's objects, so switching between the two only copies the other binary back.)
if [ "$VARIANT" = sidecar ]; then
	say "cargo build --release --locked --no-default-features --target $TRIPLE (RUSTFLAGS=-C target-feature=+crt-static)"
	(
		cd "$ROOT"
		unset CARGO_ENCODED_RUSTFLAGS
		RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --target "$TRIPLE"
	)
else
	say "cargo build --release --locked --target $TRIPLE (RUSTFLAGS=-C target-feature=+crt-static)"
	(
		cd "$ROOT"
		unset CARGO_ENCODED_RUSTFLAGS
		RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$TRIPLE"
	)
fi
[ -x "$BIN" ] || die "cargo did not produce $BIN"
if readelf -l "$BIN" | grep -q INTERP; then
	die "$BIN is dynamically linked (it has a program interpreter)"
fi
if readelf -d "$BIN" 2>/dev/null | grep -q NEEDED; then
	die "$BIN needs shared libraries: $(readelf -d "$BIN" | grep NEEDED)"
fi

# ------------------------------------------------------------------ the root filesystem

STAGE=$(mktemp -d)
cleanup() {
	rm -rf "$STAGE"
	buildah rm "$WORKING" >/dev/null 2>&1 || true
}
trap cleanup EXIT

chmod 0755 "$STAGE"
mkdir -p "$STAGE/etc"
install -m 0755 "$BIN" "$STAGE/rolecall"
printf '%s\n' \
	'root:x:0:0:root:/root:/sbin/nologin' \
	'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
	'rolecall:x:65532:65532:rolecall:/nonexistent:/sbin/nologin' >"$STAGE/etc/passwd"
printf '%s\n' \
	'root:x:0:' \
	'nogroup:x:65534:' \
	'rolecall:x:65532:' >"$STAGE/etc/group"
printf '%s\n' 'hosts: files dns' >"$STAGE/etc/nsswitch.conf"
chmod 0644 "$STAGE/etc/passwd" "$STAGE/etc/group" "$STAGE/etc/nsswitch.conf"
chmod 0755 "$STAGE/etc"
if [ "$VARIANT" = sidecar ]; then
	mkdir -p "$STAGE/etc/ssl/certs"
	ca_bundle >"$STAGE/etc/ssl/certs/ca-certificates.crt"
	grep -q 'BEGIN CERTIFICATE' "$STAGE/etc/ssl/certs/ca-certificates.crt" || die "the CA bundle holds no certificate"
	chmod 0644 "$STAGE/etc/ssl/certs/ca-certificates.crt"
	chmod 0755 "$STAGE/etc/ssl" "$STAGE/etc/ssl/certs"
fi

# ------------------------------------------------------------------ the image

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)
[ -n "$VERSION" ] || die "no version in $ROOT/Cargo.toml"
# image_repository NAME: NAME without its tag (a registry's port stays: host:5000/rolecall).
image_repository() {
	case ${1##*/} in
	*:*) echo "${1%:*}" ;;
	*) echo "$1" ;;
	esac
}
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$REVISION" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	REVISION=$REVISION-dirty
fi

say "buildah ($DRIVER storage): scratch + static binary -> $IMAGE"
buildah rm "$WORKING" >/dev/null 2>&1 || true
OLD_ID=$(buildah images --noheading --no-trunc --format '{{.ID}}' "$IMAGE" 2>/dev/null || true)

buildah from --name "$WORKING" scratch >/dev/null
buildah copy --quiet --chown 0:0 "$WORKING" "$STAGE/" / >/dev/null
# PATH: what `buildah build` / `docker run` give a FROM-scratch image, so both builds agree.
if [ "$VARIANT" = sidecar ]; then
	buildah config \
		--created-by "images/build-local.sh: COPY rootfs (static rolecall, CA bundle, passwd, group)" \
		--user 65532:65532 \
		--entrypoint '["/rolecall"]' \
		--cmd run \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		--port 9911/tcp \
		--label org.opencontainers.image.title=rolecall \
		--label "org.opencontainers.image.description=Kubernetes sidecar that turns a projected service-account token into many AWS role profiles" \
		--label org.opencontainers.image.licenses=Apache-2.0 \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.revision=$REVISION" \
		"$WORKING"
else
	buildah config \
		--created-by "images/build-local.sh: COPY rootfs (static rolecall with inject and webhook, passwd, group)" \
		--user 65532:65532 \
		--entrypoint '["/rolecall"]' \
		--cmd webhook \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--port 8443/tcp \
		--port 9911/tcp \
		--label org.opencontainers.image.title=rolecall-webhook \
		--label "org.opencontainers.image.description=rolecall's mutating admission webhook: adds the rolecall sidecar to pods that opt in" \
		--label org.opencontainers.image.licenses=Apache-2.0 \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.revision=$REVISION" \
		"$WORKING"
fi
NEW_ID=$(buildah commit --quiet --rm "$WORKING" "$IMAGE")
# The same image under the version's tag as well (localhost/rolecall:0.1.0 beside :dev): the
# tag, the version label and `rolecall --version` agree (scripts/image-test.sh checks it).
VERSION_IMAGE=$(image_repository "$IMAGE"):$VERSION
buildah tag "$NEW_ID" "$VERSION_IMAGE"

# The previous image of the same name is now untagged: remove it (unless something uses it).
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
	buildah rmi "$OLD_ID" >/dev/null 2>&1 || true
fi

BIN_BYTES=$(stat -c %s "$BIN")
SIZE=$(buildah images --noheading --format '{{.Size}}' "$IMAGE")
say "built $IMAGE and $VERSION_IMAGE (${NEW_ID:0:12}): image $SIZE uncompressed, binary $BIN_BYTES bytes"
echo "$IMAGE ${NEW_ID:0:12} size $SIZE binary $BIN_BYTES"
