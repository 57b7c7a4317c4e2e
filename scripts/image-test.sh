#!/usr/bin/env bash
# Build localhost/rolecall:dev with images/build-local.sh and check the image without a
# container runtime (none can run here): its configuration with `buildah inspect`, its
# root filesystem through `buildah mount`, and the binary itself run from that root
# filesystem with chroot as uid 65532.
#
#   scripts/image-test.sh              build with images/build-local.sh, then check
#   scripts/image-test.sh --no-build   check $ROLECALL_IMAGE as it is (e.g. one built from
#                                      images/Containerfile with buildah build)
# As root; installs buildah, file, binutils if missing.
#
# What it proves:
#   - non-root user 65532:65532, entrypoint ["/rolecall"], cmd ["run"], no volumes,
#     image at most 12 MiB uncompressed;
#   - the root filesystem holds exactly the static binary, the CA bundle, passwd, group and
#     nsswitch.conf: no shell, no other program;
#   - the binary is static (no program interpreter, no shared libraries) and runs as 65532;
#   - it resolves a host name without glibc's NSS modules (the image has none): `rolecall
#     once` inside a read-only copy of the image's root filesystem reaches a local STS
#     stand-in by the name sts.rolecall.test, which only /etc/hosts knows, and writes
#     [app] to its output dir (the only writable place, as in a pod).
# Exits non-zero with a message naming the first check that failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${ROLECALL_IMAGE:-localhost/rolecall:dev}
export ROLECALL_IMAGE=$IMAGE
MAX_BYTES=$((12 * 1024 * 1024))
CHECK=rolecall-image-test # name of the working container used to mount the image
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
MOUNTS=() # unmounted in reverse order
cleanup() {
	local i
	if [ -n "$STS_PID" ]; then kill "$STS_PID" 2>/dev/null || true; fi
	if [ -n "$TLS_STS_PID" ]; then kill "$TLS_STS_PID" 2>/dev/null || true; fi
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
	if [ -n "${DRIVER:-}" ]; then
		command buildah --storage-driver "$DRIVER" umount "$CHECK" >/dev/null 2>&1 || true
		command buildah --storage-driver "$DRIVER" rm "$CHECK" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ the Containerfile

# build-local.sh mirrors the Containerfile's runtime stage; the parts checked below must
# be declared there too, so that the two cannot drift apart on them.
step "images/Containerfile declares what this test checks"
CF=$ROOT/images/Containerfile
for want in '^FROM scratch$' '^USER 65532:65532$' '^ENTRYPOINT \["/rolecall"\]$' '^CMD \["run"\]$' \
	'target-feature=\+crt-static' 'cargo build --release --locked --no-default-features --target' \
	'ca-certificates\.crt' "rolecall:x:65532:65532:" "'hosts: files dns'" '^ENV SSL_CERT_FILE='; do
	grep -Eq -- "$want" "$CF" || fail "images/Containerfile has no line matching /$want/"
done
if grep -Eq '^(VOLUME|RUN)' <(sed -n '/^FROM scratch/,$p' "$CF"); then
	fail "the runtime stage of images/Containerfile declares a VOLUME or RUN"
fi
ok "scratch runtime stage, user, entrypoint, cmd, static build, CA bundle, passwd"

# ------------------------------------------------------------------ build

step "images/build-local.sh"
DRIVER=$("$ROOT/images/build-local.sh" --print-storage-driver) || fail "images/build-local.sh --print-storage-driver failed"
export STORAGE_DRIVER=$DRIVER
if [ -n "$BUILD" ]; then
	"$ROOT/images/build-local.sh" || fail "images/build-local.sh failed"
else
	ok "--no-build: checking $IMAGE as it is"
fi
buildah() { command buildah --storage-driver "$DRIVER" "$@"; }
if ! command -v file >/dev/null; then # readelf came with build-local.sh (binutils)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file >/dev/null
fi
command -v python3 >/dev/null || fail "python3 is needed (the STS stand-in)"

# ------------------------------------------------------------------ configuration

step "image configuration ($IMAGE, $DRIVER storage)"
buildah inspect --type image "$IMAGE" >"$WORK/inspect.json" || fail "buildah inspect $IMAGE failed"
# cfg KEY...: the value at that path in the inspect output, as JSON (null when absent).
cfg() {
	python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print(json.dumps(v))' "$WORK/inspect.json" "$@"
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
manifest=$(cfg Manifest)
layer_types=$(python3 -c 'import json,sys; print(" ".join(sorted({l["mediaType"] for l in json.loads(json.loads(sys.argv[1]))["layers"]})))' "$manifest")
case $layer_types in *gzip* | *zstd*) fail "layers are compressed ($layer_types): cannot read the uncompressed size" ;; esac
bytes=$(python3 -c 'import json,sys; m=json.loads(json.loads(sys.argv[1])); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])' "$manifest")
mib=$(python3 -c "print(f'{$bytes / 1048576:.2f}')")
[ "$bytes" -le "$MAX_BYTES" ] || fail "image is $bytes bytes ($mib MiB) uncompressed, more than 12 MiB"
ok "image size $bytes bytes ($mib MiB) uncompressed, limit 12 MiB"

# ------------------------------------------------------------------ root filesystem

step "root filesystem (buildah from + buildah mount)"
buildah rm "$CHECK" >/dev/null 2>&1 || true
buildah from --name "$CHECK" --pull=never "$IMAGE" >/dev/null
ROOTFS=$(buildah mount "$CHECK")
[ -d "$ROOTFS" ] || fail "buildah mount gave no directory"

want_files=$'etc/group\netc/nsswitch.conf\netc/passwd\netc/ssl/certs/ca-certificates.crt\nrolecall'
have_files=$(cd "$ROOTFS" && find . -mindepth 1 ! -type d -printf '%P\n' | LC_ALL=C sort)
if [ "$have_files" != "$want_files" ]; then
	fail "the root filesystem holds other files than expected:"$'\n'"$(diff <(echo "$want_files") <(echo "$have_files") || true)"
fi
ok "files: $(echo "$have_files" | tr '\n' ' ')"
for sh in sh bash dash ash zsh ksh busybox; do
	found=$(cd "$ROOTFS" && find . -name "$sh" -print -quit)
	[ -z "$found" ] || fail "a shell is in the image: $found"
done
if [ -e "$ROOTFS/bin" ] || [ -e "$ROOTFS/usr" ]; then fail "the image has /bin or /usr"; fi
ok "no shell, no /bin, no /usr"

bin=$ROOTFS/rolecall
info=$(file -b "$bin")
case $info in
*"statically linked"* | *"static-pie linked"*) ;;
*) fail "file(1) does not call /rolecall static: $info" ;;
esac
! readelf -l "$bin" | grep -q INTERP || fail "/rolecall has a program interpreter (dynamically linked)"
! readelf -d "$bin" 2>/dev/null | grep -q NEEDED || fail "/rolecall needs shared libraries"
BIN_BYTES=$(stat -c %s "$bin")
ok "/rolecall is static: ${info%%,*}, $(echo "$info" | grep -o 'static[^,]*'), $BIN_BYTES bytes"
[ "$(stat -c '%u:%g %a' "$bin")" = "0:0 755" ] || fail "/rolecall is $(stat -c '%u:%g %a' "$bin"), want 0:0 755"
ok "/rolecall owned by root, mode 755 (not writable by 65532)"

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
in_image "$ROOTFS" /rolecall --help >"$WORK/help" || fail "/rolecall --help failed in the image"
grep -q 'Usage' "$WORK/help" || fail "/rolecall --help printed no usage"
ok "/rolecall --help ($(wc -l <"$WORK/help") lines)"

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

once() {
	timeout 60 env -i HOSTNAME=image-test RUST_LOG=info "$CHROOT" --userspec="$UID_GID" "$RO" /rolecall once \
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
		--profile app=arn:aws:iam::111122223333:role/app --region eu-west-1 \
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

printf '\nimage-test: all checks passed: %s, %s bytes (%s MiB) uncompressed; /rolecall %s bytes\n' "$IMAGE" "$bytes" "$mib" "$BIN_BYTES"
