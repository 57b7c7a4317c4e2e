#!/usr/bin/env bash
# rolecall demo: the real release binary against a local STS (moto's server).
#
#   make demo            (builds target/release/rolecall and .venv first)
#
# What it shows, step by step: a kubelet-style projected token directory, one
# `rolecall run` sidecar serving three role profiles, the files an app container
# reads, the AWS CLI selecting each role by profile name, a token rotation,
# SIGUSR1 (refresh now) and a clean SIGTERM shutdown.
#
# Everything it makes stays in ./demo-out/ for you to look at afterwards.
# Exits non-zero if any step does not behave as described.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ROLECALL_VENV:-$ROOT/.venv}
BIN=${ROLECALL_BIN:-$ROOT/target/release/rolecall}
WORK=${ROLECALL_DEMO_DIR:-$ROOT/demo-out}
PY=$VENV/bin/python
AWS=$VENV/bin/aws

ACCOUNT=111122223333
PROFILES=(reader writer audit)
ISS=https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE
SUB=system:serviceaccount:demo:app

# Nothing from the caller's own AWS or rolecall setup may leak into the demo.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AWS_|ROLECALL_)' || true)
export AWS_EC2_METADATA_DISABLED=true

# ------------------------------------------------------------------ helpers

if [ -t 1 ]; then BOLD=$'\033[1m' OFF=$'\033[0m'; else BOLD='' OFF=''; fi
heading() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
say() { printf '   %s\n' "$*"; }
show() { sed 's/^/   | /' "$@"; }
die() {
	printf '\n%sDEMO FAILED:%s %s\n' "$BOLD" "$OFF" "$*" >&2
	exit 1
}

# Run CMD... every 0.2 s until it succeeds, for at most SECONDS seconds.
wait_for() {
	local seconds=$1 tries
	shift
	tries=$((seconds * 5))
	while ((tries-- > 0)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	return 1
}

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tcp_open() { # PORT: something accepts connections on 127.0.0.1:PORT
	"$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"
}

http_get() { # URL: print the body; succeed only on HTTP 200 (no curl needed)
	"$PY" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.stdout.write(response.read().decode())
except (urllib.error.URLError, OSError):
    sys.exit(1)
PY
}

alive() { kill -0 "$1" 2>/dev/null; }

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# A JWT shaped like a projected service-account token. Its signature is not
# real: rolecall never checks it (STS does), and moto accepts any token.
make_jwt() { # EXP
	local now header payload signature
	now=$(date +%s)
	header=$(printf '{"alg":"RS256","kid":"rolecall-demo","typ":"JWT"}' | b64url)
	payload=$(printf '{"aud":["sts.amazonaws.com"],"exp":%d,"iat":%d,"iss":"%s","nbf":%d,"sub":"%s"}' \
		"$1" "$now" "$ISS" "$now" "$SUB" | b64url)
	signature=$(printf 'not-a-real-signature' | b64url)
	printf '%s.%s.%s' "$header" "$payload" "$signature"
}

# Publish TOKEN in DIR the way kubelet's AtomicWriter does: a new timestamped
# directory, a `..data_tmp` symlink renamed over `..data`, the old one removed.
# DIR/token -> ..data/token never changes, so only a watch on DIR sees this.
publish_token() { # DIR TOKEN
	local dir=$1 token=$2 ts old
	ts="..$(date -u +%Y_%m_%d_%H_%M_%S.%N)"
	old=$(readlink "$dir/..data" 2>/dev/null || true)
	mkdir "$dir/$ts"
	printf '%s' "$token" >"$dir/$ts/token"
	chmod 0644 "$dir/$ts/token"
	ln -s "$ts" "$dir/..data_tmp"
	mv -T "$dir/..data_tmp" "$dir/..data"
	[ -L "$dir/token" ] || ln -s ..data/token "$dir/token"
	if [ -n "$old" ]; then rm -rf "${dir:?}/$old"; fi
}

# The credentials file with its secrets masked: key names and the first four
# characters of each access key id only.
masked_credentials() {
	awk '
		/^[ \t]*aws_access_key_id[ \t]*=/ {
			v = $0; sub(/^[^=]*=[ \t]*/, "", v)
			printf "aws_access_key_id = %s****************\n", substr(v, 1, 4); next
		}
		/^[ \t]*(aws_secret_access_key|aws_session_token)[ \t]*=/ {
			k = $0; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]*/, "", k)
			printf "%s = ****\n", k; next
		}
		{ print }
	' "$1"
}

section_keys() { # FILE: "PROFILE ACCESS_KEY_ID" for every section, sorted
	awk '
		/^[ \t]*\[/ { s = $0; gsub(/[][ \t\r]/, "", s) }
		/^[ \t]*aws_access_key_id[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t\r]*$/, "", v); print s, v }
	' "$1" | sort
}

access_keys() { # FILE: the access key ids, one a line
	section_keys "$1" | cut -d' ' -f2
}

short_key() { printf '%s...%s' "${1:0:4}" "${1: -4}"; }

token_expiry_metric() { # the value of rolecall_token_expiry_timestamp_seconds, as an integer
	http_get "$HEALTH/metrics" | awk '
		$1 == "rolecall_token_expiry_timestamp_seconds" || $1 ~ /^rolecall_token_expiry_timestamp_seconds[{]/ {
			printf "%d\n", $2 + 0; found = 1; exit
		}
		END { if (!found) exit 1 }'
}

metric_is() { [ "$(token_expiry_metric)" = "$1" ]; }

keys_all_changed() { # OLD_KEYS: every access key id in the credentials file is new
	local now
	now=$(access_keys "$OUT/credentials") || return 1
	[ "$(wc -l <<<"$now")" -eq "${#PROFILES[@]}" ] || return 1
	! grep -qxFf <(printf '%s\n' "$1") <<<"$now"
}

caller_arn() { # PROFILE: the ARN that STS sees for the profile's credentials
	AWS_SHARED_CREDENTIALS_FILE=$OUT/credentials AWS_CONFIG_FILE=$OUT/config \
		"$AWS" sts get-caller-identity --profile "$1" --endpoint-url "$STS" --query Arn --output text
}

log_since() { # LINE: rolecall's log from line LINE on
	tail -n "+$1" "$LOG"
}

MOTO_PID=
RC_PID=
cleanup() {
	local rc=$?
	if [ -n "$RC_PID" ] && alive "$RC_PID"; then
		kill -TERM "$RC_PID" 2>/dev/null || true
		wait "$RC_PID" 2>/dev/null || true
	fi
	if [ -n "$MOTO_PID" ] && alive "$MOTO_PID"; then
		kill "$MOTO_PID" 2>/dev/null || true
		wait "$MOTO_PID" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ]; then
		if [ -s "${LOG:-}" ]; then
			printf '\n--- last lines of rolecall.log ---\n' >&2
			tail -n 30 "$LOG" >&2
		fi
		if [ -s "${MOTO_LOG:-}" ]; then
			printf '\n--- last lines of moto.log ---\n' >&2
			tail -n 10 "$MOTO_LOG" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ checks

[ -x "$BIN" ] || die "no rolecall binary at $BIN (run: make build)"
if ! [ -x "$PY" ] || ! [ -x "$VENV/bin/moto_server" ] || ! [ -x "$AWS" ]; then
	die "no Python tools in $VENV (run: make venv)"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
TOKEN_DIR=$WORK/serviceaccount
OUT=$WORK/aws
LOG=$WORK/rolecall.log
MOTO_LOG=$WORK/moto.log
mkdir -p "$TOKEN_DIR" "$OUT"

heading "rolecall demo"
say "One sidecar turns a pod's service-account token into three AWS role profiles."
say "binary:  $BIN"
say "workdir: $WORK"

# ------------------------------------------------------------------ 1. STS

STS_PORT=$(free_port)
STS=http://127.0.0.1:$STS_PORT
heading "1. A local STS: moto_server on $STS"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$STS_PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
ready() { alive "$MOTO_PID" && tcp_open "$STS_PORT"; }
wait_for 30 ready || die "moto_server did not start (see $MOTO_LOG)"
say "up (pid $MOTO_PID); it accepts any web-identity token and returns real-looking sessions"

# ------------------------------------------------------------------ 2. token

heading "2. A projected service-account token, laid out the way kubelet does it"
EXP1=$(($(date +%s) + 86400))
publish_token "$TOKEN_DIR" "$(make_jwt "$EXP1")"
say "\$ ls -la $TOKEN_DIR"
ls -la "$TOKEN_DIR" | tail -n +2 | show
say "claims (the signature is a dummy; moto does not check it):"
cut -d. -f2 "$TOKEN_DIR/token" | tr '_-' '/+' | { p=$(cat); while (( ${#p} % 4 )); do p+="="; done; printf '%s' "$p"; } |
	base64 -d | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin), indent=2))' | show

# ------------------------------------------------------------------ 3. run

HEALTH_PORT=$(free_port)
HEALTH=http://127.0.0.1:$HEALTH_PORT
ARGS=(run)
for p in "${PROFILES[@]}"; do ARGS+=(--profile "$p=arn:aws:iam::$ACCOUNT:role/$p"); done
# File mode (the default is process mode): the demo shows the keys in
# $OUT/credentials and the AWS CLI reading them, as it always has.
ARGS+=(--credentials file --token-file "$TOKEN_DIR/token" --output-dir "$OUT" --region us-east-1
	--sts-endpoint "$STS" --health-addr "127.0.0.1:$HEALTH_PORT")

heading "3. Start the sidecar: rolecall run, three profiles"
say "\$ rolecall ${ARGS[*]}"
"$BIN" "${ARGS[@]}" >"$LOG" 2>&1 &
RC_PID=$!
rolecall_ready() { alive "$RC_PID" && http_get "$HEALTH/readyz"; }
wait_for 60 rolecall_ready || {
	alive "$RC_PID" || die "rolecall exited early (see $LOG)"
	die "rolecall did not become ready at $HEALTH/readyz within 60 s"
}
say "ready: GET $HEALTH/readyz -> 200 (pid $RC_PID)"

# ------------------------------------------------------------------ 4. files

heading "4. What the app container mounts: $OUT"
ls -l "$OUT" | tail -n +2 | show
[ -s "$OUT/credentials" ] || die "no $OUT/credentials"
[ -s "$OUT/config" ] || die "no $OUT/config"
say "credentials (secrets masked here):"
masked_credentials "$OUT/credentials" | show
say "config:"
show "$OUT/config"

# ------------------------------------------------------------------ 5. CLI

heading "5. The AWS CLI picks a role by profile name"
say "AWS_SHARED_CREDENTIALS_FILE=$OUT/credentials AWS_CONFIG_FILE=$OUT/config \\"
say "  aws sts get-caller-identity --profile NAME --endpoint-url $STS"
for p in "${PROFILES[@]}"; do
	arn=$(caller_arn "$p") || die "aws sts get-caller-identity --profile $p failed"
	printf '   %-7s -> %s\n' "$p" "$arn"
	[[ $arn == "arn:aws:sts::$ACCOUNT:assumed-role/$p/"* ]] ||
		die "profile $p: expected an assumed-role ARN for role $p, got $arn"
done

# ------------------------------------------------------------------ 6. rotation

heading "6. kubelet rotates the token (new ..data directory, new exp)"
before=$(token_expiry_metric) || die "no rolecall_token_expiry_timestamp_seconds in $HEALTH/metrics"
say "rolecall_token_expiry_timestamp_seconds before: $before"
EXP2=$((EXP1 + 86400))
log_line=$(($(wc -l <"$LOG") + 1))
publish_token "$TOKEN_DIR" "$(make_jwt "$EXP2")"
say "published a new token with exp $EXP2; now $(readlink "$TOKEN_DIR/..data")"
if wait_for 15 metric_is "$EXP2"; then
	say "rolecall saw the rotation through its directory watch:"
	say "rolecall_token_expiry_timestamp_seconds after:  $(token_expiry_metric)"
	WATCHED=1
else
	say "rolecall has not re-read the token within 15 s of the rotation;"
	say "its profiles are healthy, so they keep their schedule. Next: SIGUSR1."
	WATCHED=0
fi
if log_since "$log_line" | grep -i token | grep -q .; then
	say "rolecall's log since the rotation:"
	log_since "$log_line" | grep -i token | head -n 5 | show
fi

# ------------------------------------------------------------------ 7. SIGUSR1

heading "7. SIGUSR1: refresh every profile now (with the new token)"
old_sections=$(section_keys "$OUT/credentials")
old_keys=$(access_keys "$OUT/credentials")
log_line=$(($(wc -l <"$LOG") + 1))
kill -USR1 "$RC_PID"
wait_for 30 keys_all_changed "$old_keys" || die "the access keys did not all change within 30 s of SIGUSR1"
say "new session for every profile (access key ids, shortened):"
join <(printf '%s\n' "$old_sections") <(section_keys "$OUT/credentials") |
	while read -r p a b; do printf '   %-7s %s -> %s\n' "$p" "$(short_key "$a")" "$(short_key "$b")"; done
wait_for 10 metric_is "$EXP2" || die "after the refresh, rolecall_token_expiry_timestamp_seconds is $(token_expiry_metric), not $EXP2"
[ "$WATCHED" = 1 ] || say "rolecall_token_expiry_timestamp_seconds after: $(token_expiry_metric) (the new token)"
arn=$(caller_arn reader) || die "aws sts get-caller-identity --profile reader failed after the refresh"
say "new reader session works: $arn"
say "rolecall's log for the refresh:"
if log_since "$log_line" | grep -qi 'refreshed'; then
	log_since "$log_line" | grep -i 'refreshed' | head -n 6 | show
else
	log_since "$log_line" | head -n 6 | show
fi

# ------------------------------------------------------------------ 8. SIGTERM

heading "8. SIGTERM: rolecall stops and leaves the files in place"
start=$(date +%s%N)
kill -TERM "$RC_PID"
for _ in $(seq 250); do
	if ! alive "$RC_PID"; then break; fi
	sleep 0.02
done
alive "$RC_PID" && die "rolecall still running 5 s after SIGTERM"
rc=0
wait "$RC_PID" || rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
RC_PID=
say "exit status $rc after ${elapsed_ms} ms"
[ "$rc" -eq 0 ] || die "rolecall exited with status $rc after SIGTERM, expected 0"
if ! [ -s "$OUT/credentials" ] || ! [ -s "$OUT/config" ]; then
	die "the output files are gone after SIGTERM"
fi
ls -l "$OUT" | tail -n +2 | show

# ------------------------------------------------------------------ done

heading "rolecall's log: start-up and shutdown (it never holds tokens or secrets)"
if [ "$(wc -l <"$LOG")" -le 10 ]; then
	show "$LOG"
else
	head -n 6 "$LOG" | show
	say "| ..."
	tail -n 2 "$LOG" | show
fi

heading "Demo finished: everything worked"
say "Files are kept in $WORK (token dir, outputs, logs)."
say "In a pod, the app container gets only the output volume and sets"
say "AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE and AWS_PROFILE=<name>."
