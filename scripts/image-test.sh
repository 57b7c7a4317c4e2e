#!/usr/bin/env bash
# Build both images, the sidecar localhost/rolecall:dev and the webhook
# localhost/rolecall-webhook:dev, with images/build-local.sh and check them without a
# container runtime (none can run here): their configuration with `buildah inspect`, their
# root filesystems through `buildah mount`, and the binary itself run from each root
# filesystem with chroot as uid 65532.
#
#   scripts/image-test.sh              build both with images/build-local.sh, then check
#   scripts/image-test.sh --no-build   check $ROLECALL_IMAGE and $ROLECALL_WEBHOOK_IMAGE as
#                                      they are (e.g. built from images/Containerfile with
#                                      buildah build, and --target webhook)
# As root; installs buildah, file, binutils if missing.
#
# What it proves of the sidecar:
#   - non-root user 65532:65532, entrypoint ["/rolecall"], cmd ["run"], no volumes,
#     image at most 12 MiB uncompressed;
#   - the root filesystem holds exactly the static binary, the CA bundle, passwd, group and
#     nsswitch.conf: no shell, no other program;
#   - the binary is static (no program interpreter, no shared libraries) and runs as 65532;
#     it has no `inject`, `uninject`, `krm` or `webhook` (built with --no-default-features);
#   - it resolves a host name without glibc's NSS modules (the image has none): `rolecall
#     once` inside a read-only copy of the image's root filesystem reaches a local STS
#     stand-in by the name sts.rolecall.test, which only /etc/hosts knows, and writes
#     [app] to its output dir (the only writable place, as in a pod);
#   - rustls trusts the image's CA bundle (SSL_CERT_FILE) and --ca-bundle.
# Of both:
#   - `rolecall --version` in the image prints the image's org.opencontainers.image.version
#     label, Cargo.toml's version, and (when built here) the image is tagged with it too;
#   - the Containerfile's default ARG VERSION is that version, and .dockerignore is
#     .containerignore (docker and podman send the same build context).
# Of the webhook:
#   - non-root user 65532:65532, entrypoint ["/rolecall"], cmd ["webhook"], no volumes,
#     image at most 12 MiB uncompressed;
#   - the root filesystem holds exactly the static binary, passwd, group and nsswitch.conf
#     (no CA bundle: the webhook calls nothing);
#   - from a read-only copy of it, as 65532: `rolecall inject` injects a small Pod read on
#     stdin (exit 0, and again unchanged); `rolecall webhook` with a test certificate serves
#     /readyz 200 on its health port and answers the AdmissionReview fixture over HTTPS
#     with tests/webhook's patch; SIGTERM: exit 0.
# Exits non-zero with a message naming the first check that failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${ROLECALL_IMAGE:-localhost/rolecall:dev}
export ROLECALL_IMAGE=$IMAGE
WEBHOOK_IMAGE=${ROLECALL_WEBHOOK_IMAGE:-localhost/rolecall-webhook:dev}
export ROLECALL_WEBHOOK_IMAGE=$WEBHOOK_IMAGE
MAX_BYTES=$((12 * 1024 * 1024))
CHECK=rolecall-image-test # name of the working container used to mount the image
CHECK_WEBHOOK=rolecall-image-test-webhook
UID_GID=65532:65532
labels=

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
	printf '\nimage-test: FAILED: %s\n' "$*" >&2
	exit 1
}

BUILD=1
case ${1:-} in
'') ;;
--no-build) BUILD= ;;
*) fail "usage: $0 [--no-build]" ;;
esac
if [ "$(id -u)" != 0 ]; then fail "run as root (buildah mount and chroot need it)"; fi

# ------------------------------------------------------------------ cleanup

WORK=$(mktemp -d /tmp/rolecall-image-test.XXXXXX)
STS_PID=
TLS_STS_PID=
WEBHOOK_PID=
MOUNTS=() # unmounted in reverse order
cleanup() {
	local i c
	if [ -n "$STS_PID" ]; then kill "$STS_PID" 2>/dev/null || true; fi
	if [ -n "$TLS_STS_PID" ]; then kill "$TLS_STS_PID" 2>/dev/null || true; fi
	if [ -n "$WEBHOOK_PID" ]; then kill -KILL "$WEBHOOK_PID" 2>/dev/null || true; fi
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
	if [ -n "${DRIVER:-}" ]; then
		for c in "$CHECK" "$CHECK_WEBHOOK"; do
			command buildah --storage-driver "$DRIVER" umount "$c" >/dev/null 2>&1 || true
			command buildah --storage-driver "$DRIVER" rm "$c" >/dev/null 2>&1 || true
		done
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ the Containerfile

# build-local.sh mirrors the Containerfile's runtime stage; the parts checked below must
# be declared there too, so that the two cannot drift apart on them.
step "images/Containerfile declares what this test checks"
CF=$ROOT/images/Containerfile
for want in '^FROM scratch AS sidecar$' '^USER 65532:65532$' '^ENTRYPOINT \["/rolecall"\]$' '^CMD \["run"\]$' \
	'target-feature=\+crt-static' 'cargo build --release --locked --no-default-features --target' \
	'ca-certificates\.crt' "rolecall:x:65532:65532:" "'hosts: files dns'" '^ENV SSL_CERT_FILE='; do
	grep -Eq -- "$want" "$CF" || fail "images/Containerfile has no line matching /$want/"
done
if grep -Eq '^(VOLUME|RUN)' <(sed -n '/^FROM scratch/,$p' "$CF"); then
	fail "the runtime stage of images/Containerfile declares a VOLUME or RUN"
fi
ok "scratch runtime stage, user, entrypoint, cmd, static build, CA bundle, passwd"
# stage NAME: the lines of that stage of the Containerfile (up to the next FROM).
stage() { awk -v s="$1" '/^FROM /{on = ($NF == s)} on' "$CF"; }
[ "$(grep -c '^FROM ' "$CF")" -gt 0 ] && [ "$(grep '^FROM ' "$CF" | tail -n1)" = 'FROM scratch AS sidecar' ] ||
	fail "the last stage of images/Containerfile (a build without --target) is not 'FROM scratch AS sidecar'"
grep -q '^CMD \["run"\]$' <(stage sidecar) || fail "the sidecar stage has no CMD [\"run\"]"
grep -q 'cargo build --release --locked --no-default-features --target' <(stage build) ||
	fail "the sidecar's build stage does not build with --no-default-features"
for want in '^FROM scratch AS webhook$' '^USER 65532:65532$' '^ENTRYPOINT \["/rolecall"\]$' '^CMD \["webhook"\]$' \
	'^COPY --from=build-webhook /rootfs/ /$'; do
	grep -Eq -- "$want" <(stage webhook) || fail "the webhook stage of images/Containerfile has no line matching /$want/"
done
grep -Eq '^(VOLUME|RUN)' <(stage webhook) && fail "the webhook stage of images/Containerfile declares a VOLUME or RUN"
for want in 'target-feature=\+crt-static' 'cargo build --release --locked --target "\$triple"'; do
	grep -Eq -- "$want" <(stage build-webhook) || fail "the build-webhook stage of images/Containerfile has no line matching /$want/"
done
ok "sidecar last (the default), --no-default-features; stage webhook: full static build, user, entrypoint, cmd [\"webhook\"]"
# The version: Cargo.toml's, which `rolecall --version` prints, is each runtime stage's
# default VERSION (the org.opencontainers.image.version label of a plain `podman build`).
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)
[ -n "$VERSION" ] || fail "no version in Cargo.toml"
for s in sidecar webhook; do
	default=$(stage "$s" | sed -n 's/^ARG VERSION=//p')
	[ "$default" = "$VERSION" ] ||
		fail "the $s stage of images/Containerfile has ARG VERSION=${default:-(none)}, Cargo.toml's version is $VERSION"
done
ok "ARG VERSION=$VERSION in both runtime stages, Cargo.toml's version"
# docker reads .dockerignore, podman and buildah .containerignore: one context for all three.
cmp -s "$ROOT/.containerignore" "$ROOT/.dockerignore" ||
	fail ".dockerignore and .containerignore differ (docker build and podman build would send different contexts): $(diff "$ROOT/.containerignore" "$ROOT/.dockerignore" 2>&1 || true)"
ok ".dockerignore is .containerignore, byte for byte"

# ------------------------------------------------------------------ build

step "images/build-local.sh"
DRIVER=$("$ROOT/images/build-local.sh" --print-storage-driver) || fail "images/build-local.sh --print-storage-driver failed"
export STORAGE_DRIVER=$DRIVER
if [ -n "$BUILD" ]; then
	"$ROOT/images/build-local.sh" || fail "images/build-local.sh failed"
	"$ROOT/images/build-local.sh" webhook || fail "images/build-local.sh webhook failed"
else
	ok "--no-build: checking $IMAGE and $WEBHOOK_IMAGE as they are"
fi
buildah() { command buildah --storage-driver "$DRIVER" "$@"; }
if ! command -v file >/dev/null; then # readelf came with build-local.sh (binutils)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file >/dev/null
fi
command -v python3 >/dev/null || fail "python3 is needed (the STS stand-in)"

# ------------------------------------------------------------------ configuration

step "image configuration ($IMAGE, $DRIVER storage)"
INSPECT=$WORK/inspect.json
buildah inspect --type image "$IMAGE" >"$INSPECT" || fail "buildah inspect $IMAGE failed"
# cfg KEY...: the value at that path in the inspect output ($INSPECT), as JSON (null when absent).
cfg() {
	python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print(json.dumps(v))' "$INSPECT" "$@"
}
config() { cfg OCIv1 config "$1"; }
user=$(config User)
[ "$user" = "\"$UID_GID\"" ] || fail "user is $user, want \"$UID_GID\""
ok "user $user (non-root)"
entrypoint=$(config Entrypoint)
[ "$entrypoint" = '["/rolecall"]' ] || fail "entrypoint is $entrypoint, want [\"/rolecall\"]"
ok "entrypoint $entrypoint"
cmd=$(config Cmd)
[ "$cmd" = '["run"]' ] || fail "cmd is $cmd, want [\"run\"]"
ok "cmd $cmd"
volumes=$(config Volumes)
case $volumes in null | '{}') ok "no volumes declared" ;; *) fail "the image declares volumes: $volumes" ;; esac
config Env | grep -q '"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"' ||
	fail "SSL_CERT_FILE is not set in the image's environment"
ok "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
for label in title description licenses version revision; do
	value=$(cfg OCIv1 config Labels "org.opencontainers.image.$label")
	case $value in null | '""') false ;; esac || fail "label org.opencontainers.image.$label is missing"
	labels+="$label=$value "
done
ok "OCI labels: $labels"

# Uncompressed size: the layers as stored (uncompressed tar streams, as the manifest of a
# local build records them) plus the config.
# image_size: sets bytes and mib from $INSPECT's manifest, and fails above MAX_BYTES.
image_size() {
	local manifest layer_types
	manifest=$(cfg Manifest)
	layer_types=$(python3 -c 'import json,sys; print(" ".join(sorted({l["mediaType"] for l in json.loads(json.loads(sys.argv[1]))["layers"]})))' "$manifest")
	case $layer_types in *gzip* | *zstd*) fail "layers are compressed ($layer_types): cannot read the uncompressed size" ;; esac
	bytes=$(python3 -c 'import json,sys; m=json.loads(json.loads(sys.argv[1])); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])' "$manifest")
	mib=$(python3 -c "print(f'{$bytes / 1048576:.2f}')")
	[ "$bytes" -le "$MAX_BYTES" ] || fail "image is $bytes bytes ($mib MiB) uncompressed, more than 12 MiB"
	ok "image size $bytes bytes ($mib MiB) uncompressed, limit 12 MiB"
}
image_size

# An image's root filesystem: exactly the files wanted ($3, sorted, one a line), no
# shell, no /bin or /usr, and /rolecall static, owned by root, mode 755. $1: the root;
# $2: whose ("" for the sidecar, "the webhook's " ...); $4: a note after the files.
# Sets ROOTFS_BIN_BYTES.
check_rootfs() {
	local root=$1 whose=$2 want_files=$3 note=${4:-} have_files found sh bin info
	have_files=$(cd "$root" && find . -mindepth 1 ! -type d -printf '%P\n' | LC_ALL=C sort)
	if [ "$have_files" != "$want_files" ]; then
		fail "${whose:-the }root filesystem holds other files than expected:"$'\n'"$(diff <(echo "$want_files") <(echo "$have_files") || true)"
	fi
	ok "files: $(echo "$have_files" | tr '\n' ' ')$note"
	for sh in sh bash dash ash zsh ksh busybox; do
		found=$(cd "$root" && find . -name "$sh" -print -quit)
		[ -z "$found" ] || fail "a shell is in ${whose:-the }image: $found"
	done
	if [ -e "$root/bin" ] || [ -e "$root/usr" ]; then fail "${whose:-the }image has /bin or /usr"; fi
	ok "no shell, no /bin, no /usr"
	bin=$root/rolecall
	info=$(file -b "$bin")
	case $info in
	*"statically linked"* | *"static-pie linked"*) ;;
	*) fail "file(1) does not call ${whose}/rolecall static: $info" ;;
	esac
	! readelf -l "$bin" | grep -q INTERP || fail "${whose}/rolecall has a program interpreter (dynamically linked)"
	! readelf -d "$bin" 2>/dev/null | grep -q NEEDED || fail "${whose}/rolecall needs shared libraries"
	ROOTFS_BIN_BYTES=$(stat -c %s "$bin")
	ok "/rolecall is static: ${info%%,*}, $(echo "$info" | grep -o 'static[^,]*'), $ROOTFS_BIN_BYTES bytes"
	[ "$(stat -c '%u:%g %a' "$bin")" = "0:0 755" ] || fail "${whose}/rolecall is $(stat -c '%u:%g %a' "$bin"), want 0:0 755"
	ok "/rolecall owned by root, mode 755 (not writable by 65532)"
}

# check_version WHAT OUTPUT IMAGE: `rolecall --version` (OUTPUT, run in the image) prints the
# version of the image's org.opencontainers.image.version label ($INSPECT), which is
# Cargo.toml's; and, when this script built the image, IMAGE's repository tagged with that
# version is the same image.
check_version() {
	local what=$1 output=$2 image=$3 label printed repo tagged_id image_id
	label=$(cfg OCIv1 config Labels org.opencontainers.image.version | python3 -c 'import json,sys; print(json.load(sys.stdin) or "")')
	printed=${output#rolecall }
	if [ "$output" != "rolecall $printed" ] || [ -z "$printed" ]; then
		fail "$what: /rolecall --version printed '$output', want 'rolecall VERSION'"
	fi
	[ "$printed" = "$label" ] ||
		fail "$what: /rolecall --version says $printed, the image's org.opencontainers.image.version label says $label"
	[ "$label" = "$VERSION" ] || fail "$what: the image's version is $label, Cargo.toml's is $VERSION (built from another tree?)"
	if [ -n "$BUILD" ]; then
		case ${image##*/} in *:*) repo=${image%:*} ;; *) repo=$image ;; esac
		tagged_id=$(buildah images --noheading --no-trunc --format '{{.ID}}' "$repo:$VERSION" 2>/dev/null) ||
			fail "$what: no image $repo:$VERSION (images/build-local.sh tags the version)"
		image_id=$(buildah images --noheading --no-trunc --format '{{.ID}}' "$image")
		[ "$tagged_id" = "$image_id" ] || fail "$what: $repo:$VERSION is ${tagged_id:0:12}, not $image (${image_id:0:12})"
		ok "version $printed: /rolecall --version = org.opencontainers.image.version = tag $repo:$VERSION = Cargo.toml"
	else
		ok "version $printed: /rolecall --version = org.opencontainers.image.version = Cargo.toml"
	fi
}

# ------------------------------------------------------------------ root filesystem

step "root filesystem (buildah from + buildah mount)"
buildah rm "$CHECK" >/dev/null 2>&1 || true
buildah from --name "$CHECK" --pull=never "$IMAGE" >/dev/null
ROOTFS=$(buildah mount "$CHECK")
[ -d "$ROOTFS" ] || fail "buildah mount gave no directory"

check_rootfs "$ROOTFS" "" $'etc/group\netc/nsswitch.conf\netc/passwd\netc/ssl/certs/ca-certificates.crt\nrolecall'
BIN_BYTES=$ROOTFS_BIN_BYTES

ca=$ROOTFS/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || fail "no CA bundle at /etc/ssl/certs/ca-certificates.crt"
certs=$(grep -c 'BEGIN CERTIFICATE' "$ca" || true)
[ "$certs" -gt 0 ] || fail "the CA bundle holds no certificate"
ok "CA bundle: $certs certificates"
if [ -z "${ROLECALL_CA_BUNDLE:-}" ]; then
	# CAs this machine added for itself (e.g. a TLS-intercepting egress proxy) stay out.
	python3 - "$ca" /usr/local/share/ca-certificates <<'PY' || fail "the image's CA bundle holds a CA from /usr/local/share/ca-certificates"
import pathlib, re, sys
def certs(text):
    return {re.sub(r"\s", "", c) for c in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)}
image = certs(pathlib.Path(sys.argv[1]).read_text())
local = pathlib.Path(sys.argv[2])
for f in sorted(local.rglob("*.crt")) if local.is_dir() else []:
    if certs(f.read_text()) & image:
        print(f"   {f} is in the image's CA bundle", file=sys.stderr)
        sys.exit(1)
PY
	ok "no locally added CA (/usr/local/share/ca-certificates) in the bundle"
fi
grep -qx 'rolecall:x:65532:65532:rolecall:/nonexistent:/sbin/nologin' "$ROOTFS/etc/passwd" || fail "/etc/passwd has no rolecall user 65532"
grep -qx 'rolecall:x:65532:' "$ROOTFS/etc/group" || fail "/etc/group has no rolecall group 65532"
ok "/etc/passwd and /etc/group name rolecall 65532:65532"

# ------------------------------------------------------------------ the binary as 65532

step "the binary, run from the image's root filesystem as $UID_GID (chroot)"
CHROOT=$(command -v chroot)
# A clean environment: nothing from this shell (proxies, AWS_*, RUST_LOG) reaches the binary.
in_image() { env -i HOSTNAME=image-test "$CHROOT" --userspec="$UID_GID" "$@"; }
version=$(in_image "$ROOTFS" /rolecall --version) || fail "/rolecall --version failed in the image"
ok "/rolecall --version: $version"
check_version "the sidecar" "$version" "$IMAGE"
in_image "$ROOTFS" /rolecall --help >"$WORK/help" || fail "/rolecall --help failed in the image"
grep -q 'Usage' "$WORK/help" || fail "/rolecall --help printed no usage"
ok "/rolecall --help ($(wc -l <"$WORK/help") lines)"
# The sidecar is built without the injector (--no-default-features): its commands are absent.
for command in inject uninject krm webhook; do
	rc=0
	in_image "$ROOTFS" /rolecall "$command" --help >"$WORK/absent" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "the sidecar's /rolecall $command --help succeeded: the injector is in the sidecar (built without --no-default-features?)"
	grep -q "unrecognized subcommand '$command'" "$WORK/absent" ||
		fail "the sidecar's /rolecall $command --help failed otherwise than as an unknown command: $(cat "$WORK/absent")"
done
ok "/rolecall inject|uninject|krm|webhook --help: refused (exit $rc, unrecognized subcommand)"

# ------------------------------------------------------------------ DNS without NSS modules

step "host name resolution without NSS modules: rolecall once -> http://sts.rolecall.test (only in /etc/hosts)"
# A copy of the image's root filesystem, as a pod sees it: the root read-only, /etc/hosts
# provided (kubelet mounts one), the token read-only, the output dir the only writable place.
R=$WORK/root
mkdir -p "$R"
cp -a "$ROOTFS/." "$R/"
mkdir -p "$R/token" "$R/out"
printf '127.0.0.1\tlocalhost\n' >"$R/etc/hosts"
chmod 0644 "$R/etc/hosts"
[ ! -e "$R/etc/resolv.conf" ] || fail "the image has /etc/resolv.conf"

b64url() { basenc --base64url -w0 | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","kid":"image-test","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"https://oidc.rolecall.test/id/IMAGETEST","sub":"system:serviceaccount:default:app","aud":["sts.amazonaws.com"],"iat":%d,"nbf":%d,"exp":%d}' \
	"$now" "$now" $((now + 86400)) | b64url)
printf '%s.%s.%s' "$header" "$payload" "$(printf 'not-a-signature' | b64url)" >"$R/token/token"
chmod 0644 "$R/token/token"
chown 65532:65532 "$R/out"
chmod 0750 "$R/out"

# The STS stand-in: answers every POST with an AssumeRoleWithWebIdentity response, and logs
# the Host header and form fields it received.
cat >"$WORK/sts.py" <<'PY'
import datetime, http.server, json, sys, urllib.parse

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        with open(sys.argv[2], "a") as log:
            log.write(json.dumps({"host": self.headers.get("Host"), "action": form.get("Action"),
                                  "role": form.get("RoleArn"), "has_token": bool(form.get("WebIdentityToken"))}) + "\n")
        exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::111122223333:assumed-role/app/image-test</Arn>
      <AssumedRoleId>AROAIMAGETEST:image-test</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIMAGETESTKEY0001</AccessKeyId>
      <SecretAccessKey>imagetestsecretimagetestsecretimagetest0</SecretAccessKey>
      <SessionToken>IQoJImageTestSessionToken0001</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
    <Provider>https://oidc.rolecall.test/id/IMAGETEST</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>00000000-0000-4000-8000-00000000image</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-00000000image")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        self.wfile.write(xml)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 4:  # TLS with this certificate and key
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
PY
python3 "$WORK/sts.py" "$WORK/sts.port" "$WORK/sts.log" &
STS_PID=$!
for _ in $(seq 100); do
	[ -s "$WORK/sts.port" ] && break
	kill -0 "$STS_PID" 2>/dev/null || fail "the STS stand-in did not start"
	sleep 0.1
done
[ -s "$WORK/sts.port" ] || fail "the STS stand-in did not start within 10 s"
PORT=$(cat "$WORK/sts.port")
ok "STS stand-in on 127.0.0.1:$PORT"

# Read-only root: a read-only bind mount of the copy, with writable /out bound over it.
RO=$WORK/ro
mkdir -p "$RO"
mount --bind "$R" "$RO" || fail "cannot bind-mount the root filesystem copy"
MOUNTS+=("$RO")
mount -o remount,bind,ro "$RO" || fail "cannot make the root filesystem copy read-only"
mkdir -p "$WORK/out"
chown 65532:65532 "$WORK/out"
chmod 0750 "$WORK/out"
mount --bind "$WORK/out" "$RO/out" || fail "cannot bind-mount the output dir"
MOUNTS+=("$RO/out")
if touch "$RO/probe" 2>/dev/null; then fail "the root filesystem copy is writable"; fi
ok "root filesystem read-only; /out writable (uid 65532)"

# File mode in these runs: they prove name resolution and TLS, and process mode (the
# default) copies /proc/self/exe into the output dir, while this chroot has no /proc (a
# container always has one; tests/inject_e2e.rs runs the injected sidecar in process mode).
once() {
	timeout 60 env -i HOSTNAME=image-test RUST_LOG=info "$CHROOT" --userspec="$UID_GID" "$RO" /rolecall once \
		--credentials file \
		--profile app=arn:aws:iam::111122223333:role/app \
		--region eu-west-1 \
		--sts-endpoint "http://sts.rolecall.test:$PORT" \
		--token-file /token/token \
		--output-dir /out
}

# Control: without the /etc/hosts entry nothing else resolves the name (no resolv.conf in
# the image), so the run below can only succeed through /etc/hosts.
snapshot() { (cd "$R" && find . ! -path ./etc/hosts -printf '%p %m %s %T@\n' | LC_ALL=C sort); }
snapshot >"$WORK/before"
rc=0
once >"$WORK/control.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "rolecall once succeeded although sts.rolecall.test is in no /etc/hosts"
[ ! -s "$WORK/sts.log" ] || fail "the STS stand-in was reached although sts.rolecall.test is in no /etc/hosts"
ok "control: without the /etc/hosts entry the name does not resolve (exit $rc: $(grep -o 'dns error[^"]*' "$WORK/control.log" | head -n1 | sed 's/ hint=$//'))"
rm -f "$WORK/out/"*

printf '127.0.0.1\tlocalhost\n127.0.0.1\tsts.rolecall.test\n' >"$R/etc/hosts"
rc=0
once >"$WORK/once.log" 2>&1 || rc=$?
sed 's/^/   | /' "$WORK/once.log"
[ "$rc" -eq 0 ] || fail "rolecall once exited $rc (want 0): it could not reach sts.rolecall.test by name"
grep -qx '\[app\]' "$WORK/out/credentials" || fail "/out/credentials has no [app] section"
grep -q 'aws_access_key_id *= *ASIAIMAGETESTKEY0001' "$WORK/out/credentials" || fail "/out/credentials lacks the key the STS stand-in issued"
[ -s "$WORK/sts.log" ] || fail "the STS stand-in received no request"
python3 - "$WORK/sts.log" "$PORT" <<'PY' || fail "the STS stand-in did not receive the expected request (see above)"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
r = reqs[0]
print(f"   STS stand-in received: {r}")
assert r["host"] == f"sts.rolecall.test:{sys.argv[2]}", r
assert r["action"] == "AssumeRoleWithWebIdentity", r
assert r["role"] == "arn:aws:iam::111122223333:role/app", r
assert r["has_token"], r
PY
ok "exit 0; Host sts.rolecall.test:$PORT resolved from /etc/hosts; /out/credentials holds [app]"
snapshot >"$WORK/after"
cmp -s "$WORK/before" "$WORK/after" || fail "rolecall changed its root filesystem: $(diff "$WORK/before" "$WORK/after")"
ok "nothing written outside /out: $(cd "$WORK/out" && find . -mindepth 1 -printf '%P ')"

# ------------------------------------------------------------------ TLS trust in the image

step "TLS in the image: rustls trusts the image's CA bundle (SSL_CERT_FILE), plus --ca-bundle"
# A CA made here signs the certificate of an HTTPS STS stand-in for sts.rolecall.test. The
# image's bundle does not hold that CA: refused. Appended to the image's bundle (in the copy):
# trusted, so the bundle at SSL_CERT_FILE is the one rustls reads. With the image's own bundle
# and --ca-bundle naming the CA: trusted.
TLS=$WORK/tls
mkdir -p "$TLS"
(cd "$TLS" &&
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
		-subj "/CN=rolecall image-test CA" -keyout ca.key -out ca.pem \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj "/CN=sts.rolecall.test" -keyout sts.key -out sts.csr &&
	printf 'subjectAltName=DNS:sts.rolecall.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >sts.ext &&
	openssl x509 -req -in sts.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-extfile sts.ext -out sts.pem) >"$TLS/openssl.log" 2>&1 || fail "openssl could not make the test CA: $(cat "$TLS/openssl.log")"
python3 "$WORK/sts.py" "$WORK/sts-tls.port" "$WORK/sts-tls.log" "$TLS/sts.pem" "$TLS/sts.key" 2>"$WORK/sts-tls.err" &
TLS_STS_PID=$!
for _ in $(seq 100); do
	[ -s "$WORK/sts-tls.port" ] && break
	sleep 0.1
done
[ -s "$WORK/sts-tls.port" ] || fail "the HTTPS STS stand-in did not start: $(cat "$WORK/sts-tls.err")"
TLS_PORT=$(cat "$WORK/sts-tls.port")
ssl_cert_file=$(config Env | python3 -c 'import json,sys; print(next(e.split("=",1)[1] for e in json.load(sys.stdin) if e.startswith("SSL_CERT_FILE=")))')
mkdir -p "$R/ca"
cp "$TLS/ca.pem" "$R/ca/test-ca.pem"
chmod 0644 "$R/ca/test-ca.pem"
once_tls() {
	rm -f "$WORK/out/"*
	timeout 60 env -i HOSTNAME=image-test SSL_CERT_FILE="$ssl_cert_file" "$CHROOT" --userspec="$UID_GID" "$RO" /rolecall once \
		--credentials file --profile app=arn:aws:iam::111122223333:role/app --region eu-west-1 \
		--sts-endpoint "https://sts.rolecall.test:$TLS_PORT" --token-file /token/token --output-dir /out "$@"
}
rc=0
once_tls >"$WORK/tls-refused.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "rolecall once exited $rc against an untrusted certificate (want 1): $(cat "$WORK/tls-refused.log")"
grep -q 'CertificateRefused' "$WORK/tls-refused.log" && grep -q 'UnknownIssuer' "$WORK/tls-refused.log" ||
	fail "the refusal does not name the certificate problem: $(cat "$WORK/tls-refused.log")"
ok "a certificate from a CA outside the image's bundle: refused (CertificateRefused, UnknownIssuer)"
bundle=$R${ssl_cert_file}
cp "$bundle" "$WORK/bundle.orig"
cat "$TLS/ca.pem" >>"$bundle"
rc=0
once_tls >"$WORK/tls-bundle.log" 2>&1 || rc=$?
cp "$WORK/bundle.orig" "$bundle"
[ "$rc" -eq 0 ] || fail "rolecall once exited $rc with the CA in the image's bundle: $(cat "$WORK/tls-bundle.log")"
grep -q 'aws_access_key_id *= *ASIAIMAGETESTKEY0001' "$WORK/out/credentials" || fail "no [app] keys after the TLS call"
ok "the CA added to $ssl_cert_file: trusted (that file is the bundle rustls reads)"
rc=0
once_tls --ca-bundle /ca/test-ca.pem >"$WORK/tls-flag.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "rolecall once --ca-bundle exited $rc: $(cat "$WORK/tls-flag.log")"
grep -q 'aws_access_key_id *= *ASIAIMAGETESTKEY0001' "$WORK/out/credentials" || fail "no [app] keys with --ca-bundle"
ok "the image's own bundle plus --ca-bundle /ca/test-ca.pem: trusted"

SIDECAR_SUMMARY="$IMAGE, $bytes bytes ($mib MiB) uncompressed; /rolecall $BIN_BYTES bytes"

# ================================================================== the webhook image

step "webhook image configuration ($WEBHOOK_IMAGE)"
INSPECT=$WORK/inspect-webhook.json
buildah inspect --type image "$WEBHOOK_IMAGE" >"$INSPECT" || fail "buildah inspect $WEBHOOK_IMAGE failed"
user=$(config User)
[ "$user" = "\"$UID_GID\"" ] || fail "webhook: user is $user, want \"$UID_GID\""
ok "user $user (non-root)"
entrypoint=$(config Entrypoint)
[ "$entrypoint" = '["/rolecall"]' ] || fail "webhook: entrypoint is $entrypoint, want [\"/rolecall\"]"
ok "entrypoint $entrypoint"
cmd=$(config Cmd)
[ "$cmd" = '["webhook"]' ] || fail "webhook: cmd is $cmd, want [\"webhook\"]"
ok "cmd $cmd"
volumes=$(config Volumes)
case $volumes in null | '{}') ok "no volumes declared" ;; *) fail "webhook: the image declares volumes: $volumes" ;; esac
ports=$(config ExposedPorts | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin) or {})))')
[ "$ports" = "8443/tcp 9911/tcp" ] || fail "webhook: exposed ports are '$ports', want 8443/tcp 9911/tcp"
ok "ports $ports"
labels=
for label in title description licenses version revision; do
	value=$(cfg OCIv1 config Labels "org.opencontainers.image.$label")
	case $value in null | '""') false ;; esac || fail "webhook: label org.opencontainers.image.$label is missing"
	labels+="$label=$value "
done
ok "OCI labels: $labels"
image_size

step "webhook root filesystem (buildah from + buildah mount)"
buildah rm "$CHECK_WEBHOOK" >/dev/null 2>&1 || true
buildah from --name "$CHECK_WEBHOOK" --pull=never "$WEBHOOK_IMAGE" >/dev/null
WROOTFS=$(buildah mount "$CHECK_WEBHOOK")
[ -d "$WROOTFS" ] || fail "buildah mount gave no directory (webhook)"
check_rootfs "$WROOTFS" "the webhook's " $'etc/group\netc/nsswitch.conf\netc/passwd\nrolecall' \
	"(no CA bundle: the webhook calls nothing)"
WEBHOOK_BIN_BYTES=$ROOTFS_BIN_BYTES
grep -qx 'rolecall:x:65532:65532:rolecall:/nonexistent:/sbin/nologin' "$WROOTFS/etc/passwd" || fail "the webhook's /etc/passwd has no rolecall user 65532"
grep -qx 'rolecall:x:65532:' "$WROOTFS/etc/group" || fail "the webhook's /etc/group has no rolecall group 65532"
ok "/etc/passwd and /etc/group name rolecall 65532:65532"

step "the webhook's binary, from a read-only copy of its root filesystem as $UID_GID (chroot)"
# As the webhook's pod runs it: the root read-only, the certificate a Secret volume
# (files 0440 root:65532: fsGroup reads them).
W=$WORK/wroot
mkdir -p "$W"
cp -a "$WROOTFS/." "$W/"
mkdir -p "$W/tls"
WTLS=$WORK/wtls
mkdir -p "$WTLS"
# A CA and a server certificate for localhost and 127.0.0.1, as tests/support/tls.rs makes them.
(cd "$WTLS" &&
	openssl req -x509 -days 1 -subj "/CN=rolecall image-test webhook CA" \
		-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
	openssl req -subj /CN=localhost -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout server.key -out server.csr &&
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext &&
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-extfile server.ext -out server.pem) >"$WTLS/openssl.log" 2>&1 || fail "openssl could not make the webhook's test certificate: $(cat "$WTLS/openssl.log")"
install -m 0440 -o 0 -g 65532 "$WTLS/server.pem" "$W/tls/tls.crt"
install -m 0440 -o 0 -g 65532 "$WTLS/server.key" "$W/tls/tls.key"
WRO=$WORK/wro
mkdir -p "$WRO"
mount --bind "$W" "$WRO" || fail "cannot bind-mount the webhook's root filesystem copy"
MOUNTS+=("$WRO")
mount -o remount,bind,ro "$WRO" || fail "cannot make the webhook's root filesystem copy read-only"
if touch "$WRO/probe" 2>/dev/null; then fail "the webhook's root filesystem copy is writable"; fi
ok "root filesystem read-only; /tls/tls.crt and /tls/tls.key 0440 root:65532"
in_webhook() { env -i HOSTNAME=image-test "$CHROOT" --userspec="$UID_GID" "$WRO" "$@"; }
version=$(in_webhook /rolecall --version) || fail "/rolecall --version failed in the webhook image"
ok "/rolecall --version: $version"
check_version "the webhook" "$version" "$WEBHOOK_IMAGE"

# rolecall inject: a small annotated Pod on stdin.
cat >"$WORK/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: app
  labels:
    rolecall.dev/inject: "true"
  annotations:
    rolecall.dev/region: eu-west-1
    rolecall.dev/role.app: arn:aws:iam::111122223333:role/app
spec:
  containers:
    - name: app
      image: example.com/app:1
YAML
rc=0
timeout 60 env -i HOSTNAME=image-test "$CHROOT" --userspec="$UID_GID" "$WRO" /rolecall inject \
	<"$WORK/pod.yaml" >"$WORK/injected.yaml" 2>"$WORK/inject.err" || rc=$?
[ "$rc" -eq 0 ] || fail "rolecall inject exited $rc (want 0): $(cat "$WORK/inject.err")"
grep -qx 'pod/app: injected rolecall; app: app (process)' "$WORK/inject.err" ||
	fail "rolecall inject's report is not the expected one: $(cat "$WORK/inject.err")"
python3 - "$WORK/injected.yaml" <<'PY' || fail "the injected pod lacks what injection adds (see above)"
import sys
text = open(sys.argv[1]).read()
for want in ["  initContainers:\n  - name: rolecall\n    image: localhost/rolecall:dev\n    restartPolicy: Always\n",
             "    - name: AWS_PROFILE\n      value: app\n", "    rolecall.dev/status: ",
             "  - name: rolecall-token\n    projected:\n", "    image: example.com/app:1\n"]:
    if want not in text:
        print(f"   the injected pod has no {want!r}:\n{text}", file=sys.stderr)
        sys.exit(1)
PY
ok "rolecall inject < pod.yaml: exit 0; the rolecall native sidecar, its token volume, the app's AWS_PROFILE ($(wc -l <"$WORK/injected.yaml") lines)"
rc=0
timeout 60 env -i HOSTNAME=image-test "$CHROOT" --userspec="$UID_GID" "$WRO" /rolecall inject \
	<"$WORK/injected.yaml" >"$WORK/injected-twice.yaml" 2>"$WORK/inject-twice.err" || rc=$?
[ "$rc" -eq 0 ] || fail "rolecall inject of the injected pod exited $rc: $(cat "$WORK/inject-twice.err")"
cmp -s "$WORK/injected.yaml" "$WORK/injected-twice.yaml" ||
	fail "injecting the injected pod changed it: $(diff "$WORK/injected.yaml" "$WORK/injected-twice.yaml")"
ok "rolecall inject of its own output: the same pod (idempotent)"

# rolecall webhook: /readyz on the health port, an AdmissionReview over HTTPS, SIGTERM.
# http_get URL OUT: the status code (000 when nothing answers), the body to OUT.
http_get() {
	python3 - "$1" "$2" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except OSError:
    code, body = 0, b""
open(sys.argv[2], "wb").write(body)
print(f"{code:03d}")
PY
}
read -r HTTPS_PORT HEALTH_PORT < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
env -i HOSTNAME=image-test "$CHROOT" --userspec="$UID_GID" "$WRO" /rolecall webhook \
	--listen "127.0.0.1:$HTTPS_PORT" --health-addr "127.0.0.1:$HEALTH_PORT" \
	--tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key --log-format json \
	>"$WORK/webhook.out" 2>"$WORK/webhook.log" &
WEBHOOK_PID=$! # env and chroot exec: this is rolecall's pid
ready=
for _ in $(seq 100); do
	kill -0 "$WEBHOOK_PID" 2>/dev/null || fail "rolecall webhook exited at start: $(cat "$WORK/webhook.log")"
	if [ "$(http_get "http://127.0.0.1:$HEALTH_PORT/readyz" "$WORK/readyz")" = 200 ]; then
		ready=1
		break
	fi
	sleep 0.1
done
[ -n "$ready" ] || fail "rolecall webhook's /readyz did not answer 200 within 10 s: $(cat "$WORK/webhook.log")"
ok "rolecall webhook: /readyz 200 on 127.0.0.1:$HEALTH_PORT ($(tr -d '\n' <"$WORK/readyz"))"
# The request over HTTPS, trusting only the test CA and checking the name localhost.
code=$(python3 - "https://localhost:$HTTPS_PORT/mutate" "$WTLS/ca.pem" "$ROOT/tests/webhook/pod-create.request.json" "$WORK/review.json" <<'PY'
import ssl, sys, urllib.error, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
req = urllib.request.Request(sys.argv[1], data=open(sys.argv[3], "rb").read(),
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
open(sys.argv[4], "wb").write(body)
print(code)
PY
) || fail "could not POST /mutate over HTTPS: $(cat "$WORK/webhook.log")"
[ "$code" = 200 ] || fail "POST /mutate answered $code: $(cat "$WORK/review.json")"
python3 - "$WORK/review.json" "$ROOT/tests/webhook/pod-create.patch.json" <<'PY' || fail "the webhook's answer is not the expected one (see above)"
import base64, json, sys
r = json.load(open(sys.argv[1]))["response"]
want = json.load(open(sys.argv[2]))
assert r["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002", r
assert r["allowed"] is True and r["patchType"] == "JSONPatch", r
got = json.loads(base64.b64decode(r["patch"]))
if got != want:
    print(f"   the patch differs from tests/webhook/pod-create.patch.json:\n{json.dumps(got, indent=2)}", file=sys.stderr)
    sys.exit(1)
PY
ok "POST https://localhost:$HTTPS_PORT/mutate (the test CA): allowed, the patch of tests/webhook/pod-create.patch.json"
kill -TERM "$WEBHOOK_PID"
rc=0
wait "$WEBHOOK_PID" || rc=$?
WEBHOOK_PID=
[ "$rc" -eq 0 ] || fail "rolecall webhook exited $rc after SIGTERM (want 0): $(cat "$WORK/webhook.log")"
ok "SIGTERM: exit 0"

WEBHOOK_SUMMARY="$WEBHOOK_IMAGE, $bytes bytes ($mib MiB) uncompressed; /rolecall $WEBHOOK_BIN_BYTES bytes"

printf '\nimage-test: all checks passed: %s\n                              %s\n' "$SIDECAR_SUMMARY" "$WEBHOOK_SUMMARY"
