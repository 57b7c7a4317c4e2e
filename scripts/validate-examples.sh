#!/usr/bin/env bash
# Validate everything under examples/ offline; exit non-zero on any failure.
#
#   kubernetes  every manifest against the Kubernetes JSON schemas of the
#               oldest version the examples support (1.29: native sidecars)
#               and the newest one bundled, strictly (unknown fields fail), with
#               kubernetes-validate, whose wheel bundles the schemas
#   pods        what the examples promise: the token is mounted into rolecall
#               only, rolecall is a native sidecar gated by /readyz, the app
#               mounts /aws read-only and gets no API token; rolecall's
#               control socket directory (/run/rolecall) is an emptyDir that
#               only rolecall mounts; under identity: pod-identity, the pod's
#               eks.amazonaws.com/skip-containers lists every container but
#               rolecall, and examples/iam/pod-identity-*-trust.json fit the
#               manifest's namespace and service account; with output sets, each set's volume is
#               mounted at its dir in rolecall and in at most one other
#               container (read-only, at its app_dir)
#   configmaps  embedded YAML and Python parse
#   json        every *.json parses
#   cfn         cfn-lint (offline: it bundles the resource specs), and the
#               template's trust policies render to the JSON files' documents
#   apps        sh -n for shell snippets, compile() for Python ones
#   rolecall    only with ROLECALL_BIN=path/to/rolecall: `rolecall check`
#               accepts every sidecar's configuration, and the trust policies
#               it prints equal the ones in examples/iam/
#   golden      every injected pod of tests/inject/golden/*/out.yaml: the schemas
#               and the pod rules
#   injected    only with ROLECALL_BIN: `rolecall inject -f` of every manifest
#               written for injection (annotated-*.yaml, and the README quick
#               start's examples/quickstart/app.yaml), which then passes the
#               schema, pod and `rolecall check` checks above as any example
#
# Environment: VENV (default .venv, made by `make venv`), K8S_VERSIONS
# (default "1.29.0 1.37.0"), ROLECALL_BIN (optional).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}
ROLECALL_BIN=${ROLECALL_BIN:-}
# kubernetes-validate and what it needs beyond requirements-test.txt.
KV_PINS=(kubernetes-validate==1.37.0 importlib-resources==7.1.0 packaging==26.4)
CFN_LINT_PIN=cfn-lint==1.58.0

export PIP_DISABLE_PIP_VERSION_CHECK=1

py="$VENV/bin/python"
if ! [ -x "$py" ]; then
  echo "validate-examples: no $py; run 'make venv' first (or set VENV)" >&2
  exit 2
fi

want_kv=${KV_PINS[0]#*==}
if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$want_kv" ]; then
  echo ">> installing ${KV_PINS[*]} into $VENV"
  "$py" -m pip install --quiet "${KV_PINS[@]}"
fi
if ! [ -x "$VENV/bin/cfn-lint" ]; then
  echo ">> installing $CFN_LINT_PIN into $VENV"
  "$py" -m pip install --quiet "$CFN_LINT_PIN"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=()
check() { # name command...
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "!! $name FAILED" >&2
    failed+=("$name")
  fi
}

mapfile -t manifests < <(find examples/kubernetes -name '*.yaml' | sort)
mapfile -t jsons < <(find examples -name '*.json' | sort)
mapfile -t cfn_templates < <(grep -rlE '^AWSTemplateFormatVersion:' examples --include='*.yaml' | sort)
mapfile -t shells < <(find examples -name '*.sh' | sort)
mapfile -t pythons < <(find examples -name '*.py' | sort)

# The manifests written for `rolecall inject` are checked as it outputs them.
if [ -n "$ROLECALL_BIN" ]; then
  for f in examples/kubernetes/annotated-*.yaml examples/quickstart/app.yaml; do
    [ -e "$f" ] || continue
    out="$tmp/injected-$(basename "$f")"
    if ! "$ROLECALL_BIN" inject -f "$f" >"$out"; then
      echo "validate-examples: rolecall inject -f $f failed" >&2
      exit 1
    fi
    manifests+=("$out")
  done
else
  echo "== injected manifests: skipped (set ROLECALL_BIN to inject examples/kubernetes/annotated-*.yaml)"
fi

if [ ${#manifests[@]} -eq 0 ]; then
  echo "validate-examples: no manifests under examples/kubernetes" >&2
  exit 1
fi

# ------------------------------------------------------------- kubernetes
schemas() { # files...: each against every version's schemas, strictly
  local v ok=0
  for v in $K8S_VERSIONS; do
    if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$@"; then
      echo "$# files valid against Kubernetes $v"
    else
      ok=1
    fi
  done
  return $ok
}

# The validator must reject a field the schema does not know; otherwise a
# passing run above would prove nothing.
validator_rejects_unknown_fields() {
  sed 's/^\(\s*\)restartPolicy: Always.*/\1restartPolicy: Always\n\1notAField: true/' \
    examples/kubernetes/deployment.yaml >"$tmp/bad.yaml"
  if "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn \
    -k "${K8S_VERSIONS%% *}" "$tmp/bad.yaml" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted an unknown field" >&2
    return 1
  fi
  echo "an unknown field is rejected"
}

# ------------------------------------------------------------- python checks
# scripts/validate_examples.py does the checks that read YAML and JSON.
python_checks() { # what files...
  "$py" scripts/validate_examples.py "$@"
}

# ------------------------------------------------------------- cloudformation
cfn_lint() {
  [ ${#cfn_templates[@]} -gt 0 ] || { echo "no CloudFormation templates"; return 0; }
  "$VENV/bin/cfn-lint" "${cfn_templates[@]}" && echo "${#cfn_templates[@]} templates pass cfn-lint"
}

# ------------------------------------------------------------- apps
shell_syntax() {
  local f shell
  for f in "${shells[@]}"; do
    # Parse each script with the shell its #! line names (bash or sh).
    shell=sh
    head -n 1 "$f" | grep -q bash && shell=bash
    "$shell" -n "$f" || return 1
  done
  echo "${#shells[@]} shell files parsed"
}

# ------------------------------------------------------------- rolecall itself
# `rolecall check` with each sidecar's args (`run` becomes `check`), its
# ConfigMap files laid out under a temporary root and a token with the example
# cluster's claims (under identity: pod-identity, EKS's token: audience
# pods.eks.amazonaws.com, the manifest's service account): the configuration must be accepted (exit 0; 64 means
# refused), and every trust policy it prints for a profile NAME must equal
# examples/iam/trust-policy-NAME.json where that file exists.
rolecall_checks_configs() {
  local line n=0 rc dir where
  local -a args
  while IFS= read -r line; do
    n=$((n + 1))
    dir="$tmp/rc$n"
    mkdir -p "$dir"
    where=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["where"])' "$line")
    mapfile -t args < <("$py" scripts/validate_examples.py rolecall-setup "$line" "$dir")
    rc=0
    # The args name the token (--token-file, or --pod-identity-token-file
    # under identity: pod-identity).
    timeout 60 "$ROLECALL_BIN" "${args[@]}" --health-addr '' \
      >"$dir/out.txt" 2>"$dir/err.txt" || rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "$where: rolecall ${args[*]} exited $rc" >&2
      sed 's/^/    /' "$dir/out.txt" "$dir/err.txt" >&2
      return 1
    fi
    "$py" scripts/validate_examples.py rolecall-trust "$where" "$dir/out.txt" || return 1
  done < <(python_checks rolecall-args "${manifests[@]}")
  [ "$n" -gt 0 ]
}

check "kubernetes schemas" schemas "${manifests[@]}"
check "validator sanity" validator_rejects_unknown_fields
# The webhook's own Deployment (examples/kubernetes/webhook/) is no workload
# rolecall serves: the sidecar's pod rules are not its. (Its cert-manager
# kinds pass the schema check above with a warning: no bundled schema.)
mapfile -t workloads < <(printf '%s\n' "${manifests[@]}" | grep -v '^examples/kubernetes/webhook/')
check "pod templates" python_checks pods "${workloads[@]}"
# Every pod `rolecall inject` writes in its golden tests (tests/inject/golden/*/out.yaml)
# passes the same checks as the examples; unknown-fields carries a made-up field on
# purpose (that it survives is the point), so it gets the pod rules only. The pod
# rules are the examples' except one: injection leaves automountServiceAccountToken
# as the workload has it.
mapfile -t golden < <(find tests/inject/golden -name out.yaml | sort)
mapfile -t golden_known < <(printf '%s\n' "${golden[@]}" | grep -v '/unknown-fields/')
check "injected golden outputs: schemas" schemas "${golden_known[@]}"
check "injected golden outputs: pod templates" python_checks injected-pods "${golden[@]}"
check "embedded configmap files" python_checks configmaps "${manifests[@]}"
check "json" python_checks json "${jsons[@]}"
check "cfn-lint" cfn_lint
if [ -f examples/iam/cloudformation.yaml ]; then
  check "cfn trust policies" python_checks cfn-trust examples/iam/cloudformation.yaml
fi
check "shell syntax" shell_syntax
check "python syntax" python_checks python "${pythons[@]}"
if [ -n "$ROLECALL_BIN" ]; then
  check "rolecall check" rolecall_checks_configs
else
  echo "== rolecall configurations: skipped (set ROLECALL_BIN to check them with the binary)"
fi

total=$((passed + ${#failed[@]}))
if [ ${#failed[@]} -gt 0 ]; then
  echo "validate-examples: ${#failed[@]} of $total checks failed: ${failed[*]}" >&2
  exit 1
fi
echo "validate-examples: all $total checks passed"
