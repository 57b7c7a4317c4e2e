#!/usr/bin/env bash
# Validate everything under examples/ offline; exit non-zero on any failure.
#
#   kubernetes  every manifest against the Kubernetes JSON schemas of the
#               oldest version the examples support (1.29: native sidecars)
#               and the newest one bundled, strictly (unknown fields fail), with
#               kubernetes-validate, whose wheel bundles the schemas
#   pods        what the examples promise: the token is mounted into rolecall
#               only, rolecall is a native sidecar gated by /readyz, the app
#               mounts /aws read-only and gets no API token
#   configmaps  embedded YAML and Python parse
#   json        every *.json parses
#   cfn         cfn-lint (offline: it bundles the resource specs), and the
#               template's trust policies render to the JSON files' documents
#   apps        sh -n for shell snippets, compile() for Python ones
#   rolecall    only with ROLECALL_BIN=path/to/rolecall: `rolecall check`
#               accepts every sidecar's configuration, and the trust policies
#               it prints equal the ones in examples/iam/
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

if [ ${#manifests[@]} -eq 0 ]; then
  echo "validate-examples: no manifests under examples/kubernetes" >&2
  exit 1
fi

# ------------------------------------------------------------- kubernetes
kubernetes_schemas() {
  local v ok=0
  for v in $K8S_VERSIONS; do
    if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"; then
      echo "${#manifests[@]} files valid against Kubernetes $v"
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
python_checks() { # what files...
  "$py" - "$@" <<'PY'
import json
import re
import sys

import yaml

what, files = sys.argv[1], sys.argv[2:]
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def pod_templates(doc):
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if "template" in spec:
        return [spec["template"]["spec"]]
    return []


def token_volumes(pod):
    return {
        v["name"]
        for v in pod.get("volumes", [])
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources", []))
    }


def check_pod(where, pod):
    inits = pod.get("initContainers", [])
    sidecars = [c for c in inits if c["name"] == "rolecall"]
    apps = pod.get("containers", [])
    if len(sidecars) != 1:
        return err(where, "exactly one init container named rolecall expected")
    rc = sidecars[0]
    if rc.get("restartPolicy") != "Always":
        err(where, "rolecall needs restartPolicy: Always (native sidecar)")
    probe = (rc.get("startupProbe") or {}).get("httpGet") or {}
    if probe.get("path") != "/readyz":
        err(where, "rolecall needs a startupProbe on /readyz")
    for name in ("livenessProbe",):
        if ((rc.get(name) or {}).get("httpGet") or {}).get("path") != "/livez":
            err(where, f"rolecall {name} should use /livez")
    sc = rc.get("securityContext") or {}
    for key, want in (
        ("runAsNonRoot", True),
        ("readOnlyRootFilesystem", True),
        ("allowPrivilegeEscalation", False),
    ):
        if sc.get(key) is not want:
            err(where, f"rolecall securityContext.{key} should be {want}")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        err(where, "rolecall should drop ALL capabilities")
    if pod.get("automountServiceAccountToken") is not False:
        err(where, "automountServiceAccountToken: false expected on the pod")
    if "fsGroup" not in (pod.get("securityContext") or {}):
        err(where, "a pod fsGroup is needed for the app to read 0640 files")
    tokens = token_volumes(pod)
    if not tokens:
        err(where, "no projected serviceAccountToken volume")
    for c in inits + apps:
        for m in c.get("volumeMounts", []):
            if m["name"] in tokens:
                if c is not rc:
                    err(where, f"container {c['name']} mounts the token volume {m['name']}")
                elif m.get("readOnly") is not True:
                    err(where, "rolecall should mount the token read-only")
    aws = [m for m in rc.get("volumeMounts", []) if m["mountPath"] == "/aws"]
    if not aws:
        err(where, "rolecall mounts nothing at /aws")
    for c in apps:
        for m in c.get("volumeMounts", []):
            if aws and m["name"] == aws[0]["name"] and m.get("readOnly") is not True:
                err(where, f"container {c['name']} should mount {m['name']} read-only")


def docs_of(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


if what == "pods":
    n = 0
    for path in files:
        for doc in docs_of(path):
            for pod in pod_templates(doc):
                n += 1
                check_pod(f"{path} {doc['kind']}/{doc['metadata']['name']}", pod)
    if n == 0:
        err("examples/kubernetes", "no pod templates found")
    print(f"{n} pod templates checked")

elif what == "configmaps":
    n = 0
    for path in files:
        for doc in docs_of(path):
            if doc.get("kind") != "ConfigMap":
                continue
            for key, text in (doc.get("data") or {}).items():
                where = f"{path} configmap/{doc['metadata']['name']} {key}"
                n += 1
                try:
                    if key.endswith((".yaml", ".yml")):
                        if not isinstance(yaml.safe_load(text), dict):
                            err(where, "not a YAML mapping")
                    elif key.endswith(".py"):
                        compile(text, where, "exec")
                    elif key.endswith(".json"):
                        json.loads(text)
                except Exception as e:  # noqa: BLE001 - report any parse error
                    err(where, str(e))
    print(f"{n} embedded files parsed")

elif what == "json":
    for path in files:
        try:
            with open(path) as f:
                json.load(f)
        except ValueError as e:
            err(path, str(e))
    print(f"{len(files)} JSON files parsed")

elif what == "python":
    for path in files:
        try:
            with open(path) as f:
                compile(f.read(), path, "exec")
        except SyntaxError as e:
            err(path, str(e))
    print(f"{len(files)} Python files compiled")

elif what == "cfn-trust":
    # The template's web-identity trust policies, rendered with the example
    # values, must equal the JSON files' documents.
    class Loader(yaml.SafeLoader):
        pass

    def tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        return {suffix: loader.construct_mapping(node, deep=True)}

    Loader.add_multi_constructor("!", tag)
    values = {
        "AWS::Partition": "aws",
        "AWS::AccountId": "111122223333",
        "OidcIssuer": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        "Namespace": "shop",
        "ServiceAccount": "shop-cart",
        "Audience": "sts.amazonaws.com",
    }
    template = files[0]
    with open(template) as f:
        resources = yaml.load(f, Loader)["Resources"]
    for resource, role in (("ReaderRole", "reader"), ("WriterRole", "writer")):
        where = f"{template} {resource}"
        try:
            sub = resources[resource]["Properties"]["AssumeRolePolicyDocument"]["Sub"]
            rendered = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], sub))
            with open(f"examples/iam/trust-policy-{role}.json") as f:
                expected = json.load(f)
            for s in expected["Statement"]:
                s.pop("Sid", None)
            if rendered != expected:
                err(where, f"renders to {json.dumps(rendered)}, not trust-policy-{role}.json")
        except (KeyError, TypeError, ValueError) as e:
            err(where, f"cannot render the trust policy: {e!r}")
    print("trust policies match the JSON files")

elif what == "rolecall-args":
    # Print one line per rolecall sidecar: its args as JSON, and the ConfigMap
    # files mounted into it (mountPath/key -> text) as JSON.
    for path in files:
        docs = docs_of(path)
        maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
        for doc in docs:
            for pod in pod_templates(doc):
                vols = {v["name"]: v for v in pod.get("volumes", [])}
                for c in pod.get("initContainers", []):
                    if c["name"] != "rolecall":
                        continue
                    files_in = {}
                    for m in c.get("volumeMounts", []):
                        cm = (vols.get(m["name"]) or {}).get("configMap")
                        if cm and cm["name"] in maps:
                            for key, text in maps[cm["name"]].items():
                                files_in[f"{m['mountPath']}/{key}"] = text
                    print(json.dumps({"where": f"{path} {doc['kind']}/{doc['metadata']['name']}",
                                      "args": c.get("args", []), "files": files_in}))

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
PY
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
# cluster's claims: the configuration must be accepted (exit 0; 64 means
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
    mapfile -t args < <("$py" - "$line" "$dir" <<'PY'
import base64, json, os, sys, time
spec, root = json.loads(sys.argv[1]), sys.argv[2]
paths = {}
for mount_path, text in spec["files"].items():
    local = os.path.join(root, "files", mount_path.lstrip("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "w") as f:
        f.write(text)
    paths[mount_path] = local
b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
claims = {"iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
          "sub": "system:serviceaccount:shop:shop-cart",
          "aud": ["sts.amazonaws.com"], "exp": int(time.time()) + 3600}
with open(os.path.join(root, "token"), "w") as f:
    f.write(b64({"alg": "RS256", "kid": "example"}) + "." + b64(claims) + ".c2lnbmF0dXJl")
args = [paths.get(a, a) for a in spec["args"]]
args = [next((a[: -len(p)] + paths[p] for p in paths if a.endswith("=" + p)), a) for a in args]
if args and args[0] == "run":
    args = args[1:]
print("\n".join(["check"] + args))
PY
)
    rc=0
    timeout 60 "$ROLECALL_BIN" "${args[@]}" \
      --token-file "$dir/token" --output-dir "$dir/out" --health-addr '' \
      >"$dir/out.txt" 2>"$dir/err.txt" || rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "$where: rolecall ${args[*]} exited $rc" >&2
      sed 's/^/    /' "$dir/out.txt" "$dir/err.txt" >&2
      return 1
    fi
    "$py" - "$where" "$dir/out.txt" <<'PY' || return 1
import json, os, re, sys
where, out = sys.argv[1], open(sys.argv[2]).read()
bad, compared = [], []
# Blocks: "profile NAME -> ARN", then an indented JSON document.
for m in re.finditer(r"^profile (\S+) -> [^\n]*\n(?:(?!profile |  \{)[^\n]*\n){0,3}(  \{\n.*?\n  \})$", out, re.M | re.S):
    name, doc = m.group(1), json.loads(m.group(2))
    path = f"examples/iam/trust-policy-{name}.json"
    if not os.path.exists(path):
        continue
    with open(path) as f:
        want = json.load(f)
    for s in want.get("Statement", []):
        s.pop("Sid", None)
    compared.append(name)
    if doc != want:
        bad.append(f"{where}: rolecall check prints for {name}:\n{json.dumps(doc, indent=2)}\nwhich differs from {path}")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"{where}: accepted" + (f"; trust policies of {', '.join(compared)} match examples/iam" if compared else ""))
PY
  done < <(python_checks rolecall-args "${manifests[@]}")
  [ "$n" -gt 0 ]
}

check "kubernetes schemas" kubernetes_schemas
check "validator sanity" validator_rejects_unknown_fields
check "pod templates" python_checks pods "${manifests[@]}"
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
