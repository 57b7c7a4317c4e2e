#!/usr/bin/env python3
"""The Python checks of scripts/validate-examples.sh, run with the venv's Python.

    validate_examples.py pods|configmaps|json|python|cfn-trust FILE...
        check what the examples promise (see validate-examples.sh's header)
    validate_examples.py rolecall-args MANIFEST...
        print one JSON line per rolecall sidecar: where it is, its args and the
        ConfigMap files mounted into it (mountPath/key -> text)
    validate_examples.py rolecall-setup SPEC_JSON DIR
        lay out one such sidecar's files and a token with the example cluster's
        claims under DIR; print the `rolecall check` arguments, one a line
    validate_examples.py rolecall-trust WHERE OUT_TXT
        compare the trust policies `rolecall check` printed with examples/iam

Every problem goes to stderr, and the exit code is then 1.
"""

import base64
import json
import os
import re
import sys
import time

import yaml

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


def template_metas(doc):
    """The metadata of each pod template of `doc`, in pod_templates' order."""
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "Pod":
        return [doc.get("metadata") or {}]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"].get("metadata") or {}]
    if "template" in spec:
        return [spec["template"].get("metadata") or {}]
    return []


def awaits_injection(meta, pod):
    """A template written for `rolecall inject` (its label, no sidecar yet):
    checked once injected (validate-examples.sh injects it)."""
    labelled = (meta.get("labels") or {}).get("rolecall.dev/inject") == "true"
    return labelled and not any(c["name"] == "rolecall" for c in pod.get("initContainers", []))


RENDERED = "metadata.annotations['rolecall.dev/rendered-config']"


def rendered_config(meta, pod, c):
    """The files a downwardAPI volume of `rolecall inject` projects into
    container c from the template's rolecall.dev/rendered-config annotation
    (mountPath/path -> text)."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    files = {}
    for m in c.get("volumeMounts", []):
        for item in ((vols.get(m["name"]) or {}).get("downwardAPI") or {}).get("items", []):
            if (item.get("fieldRef") or {}).get("fieldPath") == RENDERED:
                text = (meta.get("annotations") or {}).get("rolecall.dev/rendered-config")
                if text is not None:
                    files[f"{m['mountPath']}/{item['path']}"] = text
    return files


def token_volumes(pod):
    return {
        v["name"]
        for v in pod.get("volumes", [])
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources", []))
    }


def pod_identity(rc, config):
    """Whether the sidecar's source is EKS Pod Identity (`identity:
    pod-identity` in its file, or `--identity pod-identity`)."""
    args = [str(a) for a in rc.get("args", [])]
    return (flag_value(args, "--identity") or (config or {}).get("identity")) == "pod-identity"


SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"


def check_pod_identity_pod(where, pod, rc, meta):
    """Under Pod Identity, EKS (not the manifest) adds the token and its
    variables to the pod's containers: the pod must name every container but
    rolecall in eks.amazonaws.com/skip-containers, so that no app container
    can ask the agent for the association role (which may assume every
    target role). Whether EKS's own webhook honours the annotation is not
    verified (docs/OPERATIONS.md, "Pod Identity")."""
    listed = {s.strip() for s in str((meta.get("annotations") or {}).get(SKIP_CONTAINERS, "")).split(",") if s.strip()}
    others = [c["name"] for c in pod.get("initContainers", []) + pod.get("containers", []) if c is not rc]
    missing = [n for n in others if n not in listed]
    if missing:
        err(where, f"identity: pod-identity: the pod annotation {SKIP_CONTAINERS} must list every container "
                   f"but rolecall, so that EKS gives the Pod Identity token to rolecall only; missing: {', '.join(missing)}")
    if rc["name"] in listed:
        err(where, f"identity: pod-identity: {SKIP_CONTAINERS} lists rolecall, which needs the Pod Identity token")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        names = {e.get("name") for e in c.get("env", [])}
        if c is not rc and names & {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} \
                and "169.254.170." in str([e.get("value") for e in c.get("env", [])]):
            err(where, f"container {c['name']} is pointed at the Pod Identity agent: only rolecall may call it")


def check_pod(where, pod, config=None, own_token_choice=False, meta=None):
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
    # The examples turn the API token off; injection leaves the workload's
    # own choice as it is (`own_token_choice`: the injected golden outputs).
    if not own_token_choice and pod.get("automountServiceAccountToken") is not False:
        err(where, "automountServiceAccountToken: false expected on the pod")
    if "fsGroup" not in (pod.get("securityContext") or {}):
        err(where, "a pod fsGroup is needed for the app to read 0640 files")
    tokens = token_volumes(pod)
    if pod_identity(rc, config):
        check_pod_identity_pod(where, pod, rc, meta or {})
    elif not tokens:
        err(where, "no projected serviceAccountToken volume")
    for c in inits + apps:
        for m in c.get("volumeMounts", []):
            if m["name"] in tokens:
                if c is not rc:
                    err(where, f"container {c['name']} mounts the token volume {m['name']}")
                elif m.get("readOnly") is not True:
                    err(where, "rolecall should mount the token read-only")
    check_control_volume(where, pod, rc, inits + apps)
    sets = ((config or {}).get("outputs")) or {}
    if sets:
        check_helper_room(where, pod, rc, config, sets)
        return check_sets(where, pod, rc, apps, sets)
    aws = [m for m in rc.get("volumeMounts", []) if m["mountPath"] == "/aws"]
    if not aws:
        err(where, "rolecall mounts nothing at /aws")
    check_helper_room(where, pod, rc, config, {"": {"dir": "/aws"}})
    for c in apps:
        for m in c.get("volumeMounts", []):
            if aws and m["name"] == aws[0]["name"] and m.get("readOnly") is not True:
                err(where, f"container {c['name']} should mount {m['name']} read-only")


# A process-mode output dir holds the helper binary (about 5.7 MB) besides
# the small files: its emptyDir's sizeLimit must leave room for it.
HELPER_ROOM = 16 * 2**20
QUANTITY = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def flag_value(args, name):
    """The value of `--name VALUE` or `--name=VALUE` in args (the last), or None."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def process_profiles(rc, config):
    """The names of the profiles rolecall publishes in process mode (the
    default): a profile's own `credentials`, else --credentials, else the
    file's; None stands for profiles given otherwise (the environment)."""
    args = [str(a) for a in rc.get("args", [])]
    config = config or {}
    top = flag_value(args, "--credentials") or config.get("credentials") or "process"
    modes = {}
    for i, a in enumerate(args):
        spec = args[i + 1] if a == "--profile" and i + 1 < len(args) else a.split("=", 1)[1] if a.startswith("--profile=") else None
        if spec:
            modes[spec.split("=", 1)[0]] = top
    for name, p in (config.get("profiles") or {}).items():
        modes[name] = (p.get("credentials") if isinstance(p, dict) else None) or top
    if not modes:
        modes[None] = top
    return {n for n, m in modes.items() if m == "process"}


def check_helper_room(where, pod, rc, config, sets):
    """Each output dir (a set's, or /aws) that gets a process-mode profile is
    an emptyDir with no sizeLimit or one of at least 16Mi."""
    process = process_profiles(rc, config)
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in rc.get("volumeMounts", [])}
    for name, s in sets.items():
        members = (s or {}).get("profiles")
        if not process or (members is not None and not process & set(members)):
            continue
        vol = mounts.get(str((s or {}).get("dir", "")).rstrip("/"))
        limit = ((vols.get(vol) or {}).get("emptyDir") or {}).get("sizeLimit")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?", str(limit))
        if limit is not None and (not m or float(m.group(1)) * QUANTITY[m.group(2)] < HELPER_ROOM):
            what = f"output set {name}'s volume" if name else "volume"
            err(where, f"{what} {vol} has sizeLimit {limit}: process mode (the default) copies the "
                       f"helper binary (about 5.7 MB) there; give it 16Mi, or use file mode")


def control_dir(rc):
    """The directory of rolecall's control socket, from its args (None when disabled)."""
    args = rc.get("args", [])
    sock = "/run/rolecall/control.sock"
    for i, a in enumerate(args):
        if a == "--control-socket" and i + 1 < len(args):
            sock = args[i + 1]
        elif a.startswith("--control-socket="):
            sock = a.split("=", 1)[1]
    return os.path.dirname(sock) if sock else None


def check_control_volume(where, pod, rc, containers):
    """rolecall's control socket directory is an emptyDir mounted in rolecall only."""
    path = control_dir(rc)
    if path is None:
        return
    mounts = [m for m in rc.get("volumeMounts", []) if m["mountPath"].rstrip("/") == path]
    if not mounts:
        return err(where, f"rolecall needs an emptyDir at {path} for its control socket (rolecall reload/refresh)")
    name = mounts[0]["name"]
    vol = {v["name"]: v for v in pod.get("volumes", [])}.get(name) or {}
    if "emptyDir" not in vol:
        err(where, f"the control socket's volume {name} should be an emptyDir")
    for c in containers:
        if c is rc:
            continue
        for m in c.get("volumeMounts", []):
            if m["name"] == name:
                err(where, f"container {c['name']} mounts the control socket's volume {name}: only rolecall may")


def check_sets(where, pod, rc, apps, sets):
    """Output sets: each set's dir is a mount path of rolecall, of a volume of
    its own (an emptyDir) that at most one other container mounts, read-only,
    at the set's app_dir (default: its dir). One volume per set: a container
    mounting a shared volume would see the other sets' roles."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    rc_mounts = {m["mountPath"].rstrip("/"): m for m in rc.get("volumeMounts", [])}
    seen = {}
    for name, s in sets.items():
        dir_ = str((s or {}).get("dir", "")).rstrip("/")
        m = rc_mounts.get(dir_)
        if m is None:
            err(where, f"output set {name}: rolecall mounts no volume at its dir {dir_!r}")
            continue
        vol = m["name"]
        if vol in seen:
            err(where, f"output sets {seen[vol]} and {name} share the volume {vol}")
        seen[vol] = name
        if "emptyDir" not in (vols.get(vol) or {}):
            err(where, f"output set {name}: volume {vol} should be an emptyDir")
        if m.get("readOnly"):
            err(where, f"output set {name}: rolecall must mount {vol} read-write")
        users = [(c, cm) for c in apps for cm in c.get("volumeMounts", []) if cm["name"] == vol]
        if len(users) > 1:
            err(where, f"output set {name}: volume {vol} is mounted in {len(users)} app containers "
                       f"({', '.join(c['name'] for c, _ in users)}); a set is for one container")
        app_dir = str((s or {}).get("app_dir") or dir_).rstrip("/")
        for c, cm in users:
            if cm.get("readOnly") is not True:
                err(where, f"container {c['name']} should mount {vol} read-only")
            if cm["mountPath"].rstrip("/") != app_dir:
                err(where, f"container {c['name']} mounts set {name} at {cm['mountPath']}, "
                           f"but the set's app_dir is {app_dir}")
    control = control_dir(rc)
    for m in rc.get("volumeMounts", []):
        if m["mountPath"].rstrip("/") == control:
            continue  # the control socket's own emptyDir (check_control_volume)
        if "emptyDir" in (vols.get(m["name"]) or {}) and m["name"] not in seen:
            err(where, f"rolecall mounts the emptyDir {m['name']} at {m['mountPath']}, which is no set's dir")


def sidecar_config(pod, maps, meta=None):
    """The rolecall YAML config mounted into the pod's rolecall sidecar from a
    ConfigMap of the same file (or rendered by `rolecall inject` into the
    template's annotation), or None."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("initContainers", []):
        if c["name"] != "rolecall":
            continue
        for text in rendered_config(meta or {}, pod, c).values():
            doc = yaml.safe_load(text)
            if isinstance(doc, dict):
                return doc
        for m in c.get("volumeMounts", []):
            cm = (vols.get(m["name"]) or {}).get("configMap")
            for key, text in (maps.get(cm["name"]) or {}).items() if cm else ():
                if key.endswith((".yaml", ".yml")):
                    doc = yaml.safe_load(text)
                    if isinstance(doc, dict):
                        return doc
    return None


def docs_of(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def parse_each(files, parse, error):
    """parse(open file, path) for every file; an `error` is reported for it."""
    for path in files:
        try:
            with open(path) as f:
                parse(f, path)
        except error as e:
            err(path, str(e))


POD_IDENTITY_TRUST = {
    "association": "examples/iam/pod-identity-association-trust.json",
    "target": "examples/iam/pod-identity-target-trust.json",
}
EKS_SERVICE = "pods.eks.amazonaws.com"
ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


def as_list(v):
    return v if isinstance(v, list) else [v]


def check_pod_identity_trust(where, doc, pod, docs):
    """examples/iam's Pod Identity trust policies fit this manifest: the
    association role trusts pods.eks.amazonaws.com with sts:AssumeRole and
    sts:TagSession; a target role trusts one role (the association's) with
    both actions and the two RequestTag conditions naming the pod's
    namespace and service account, which the manifest declares."""
    ns = (doc.get("metadata") or {}).get("namespace")
    sa = pod.get("serviceAccountName")
    if not any(d.get("kind") == "ServiceAccount" and d["metadata"].get("name") == sa
               and d["metadata"].get("namespace") == ns for d in docs):
        err(where, f"identity: pod-identity: the manifest should declare the ServiceAccount {ns}/{sa} "
                   f"that the association names")
    try:
        with open(POD_IDENTITY_TRUST["association"]) as f:
            association = json.load(f)["Statement"]
        with open(POD_IDENTITY_TRUST["target"]) as f:
            target = json.load(f)["Statement"]
    except (OSError, ValueError, KeyError) as e:
        return err(where, f"identity: pod-identity: the trust policies in examples/iam: {e}")
    path = POD_IDENTITY_TRUST["association"]
    if not any(s.get("Effect") == "Allow" and (s.get("Principal") or {}).get("Service") == EKS_SERVICE
               and {"sts:AssumeRole", "sts:TagSession"} <= set(as_list(s.get("Action")))
               for s in association):
        err(path, f"the association role must trust {EKS_SERVICE} with sts:AssumeRole and sts:TagSession")
    path = POD_IDENTITY_TRUST["target"]
    want = {"aws:RequestTag/kubernetes-namespace": ns, "aws:RequestTag/kubernetes-service-account": sa}
    good = []
    for s in target:
        principals = as_list((s.get("Principal") or {}).get("AWS"))
        actions = set(as_list(s.get("Action")))
        equals = (s.get("Condition") or {}).get("StringEquals") or {}
        if s.get("Effect") != "Allow":
            continue
        if len(principals) != 1 or not ROLE_ARN.match(str(principals[0])):
            err(path, f"the target role must trust exactly the association's role ARN, not {principals}")
        if not {"sts:AssumeRole", "sts:TagSession"} <= actions:
            err(path, "the target role must allow sts:AssumeRole and sts:TagSession (the Pod Identity session "
                      "carries six transitive session tags)")
        for key, value in want.items():
            if equals.get(key) != value:
                err(path, f"StringEquals {key} is {equals.get(key)!r}; the manifest's pod runs as {ns}/{sa}")
        good.append(s)
    if not good:
        err(path, "no Allow statement")


def file_checks(what, files):
    if what in ("pods", "injected-pods"):
        # injected-pods: what `rolecall inject` wrote; objects it left alone
        # (no rolecall.dev/status) are not checked.
        injected = what == "injected-pods"
        n = 0
        for path in files:
            docs = docs_of(path)
            maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
            for doc in docs:
                for pod, meta in zip(pod_templates(doc), template_metas(doc)):
                    if injected and "rolecall.dev/status" not in (meta.get("annotations") or {}):
                        continue
                    if awaits_injection(meta, pod):
                        print(f"{path} {doc['kind']}/{doc['metadata']['name']}: checked once injected")
                        continue
                    n += 1
                    where = f"{path} {doc['kind']}/{doc['metadata']['name']}"
                    config = sidecar_config(pod, maps, meta)
                    check_pod(where, pod, config, own_token_choice=injected, meta=meta)
                    rcs = [c for c in pod.get("initContainers", []) if c["name"] == "rolecall"]
                    if rcs and pod_identity(rcs[0], config):
                        check_pod_identity_trust(where, doc, pod, docs)
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
        parse_each(files, lambda f, path: json.load(f), ValueError)
        print(f"{len(files)} JSON files parsed")

    elif what == "python":
        parse_each(files, lambda f, path: compile(f.read(), path, "exec"), SyntaxError)
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
                for pod, meta in zip(pod_templates(doc), template_metas(doc)):
                    vols = {v["name"]: v for v in pod.get("volumes", [])}
                    for c in pod.get("initContainers", []):
                        if c["name"] != "rolecall":
                            continue
                        files_in = rendered_config(meta, pod, c)
                        for m in c.get("volumeMounts", []):
                            cm = (vols.get(m["name"]) or {}).get("configMap")
                            if cm and cm["name"] in maps:
                                for key, text in maps[cm["name"]].items():
                                    files_in[f"{m['mountPath']}/{key}"] = text
                        print(json.dumps({"where": f"{path} {doc['kind']}/{doc['metadata']['name']}",
                                          "args": c.get("args", []), "files": files_in,
                                          "namespace": (doc.get("metadata") or {}).get("namespace"),
                                          "service_account": pod.get("serviceAccountName")}))


def rolecall_setup(spec, root):
    paths = {}
    for mount_path, text in spec["files"].items():
        local = os.path.join(root, "files", mount_path.lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as f:
            f.write(text)
        paths[mount_path] = local
    b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    configs = [d for p, t in spec["files"].items() if p.endswith((".yaml", ".yml"))
               for d in [yaml.safe_load(t)] if isinstance(d, dict)]
    pods = flag_value([str(a) for a in spec["args"]], "--identity") == "pod-identity" or any(
        d.get("identity") == "pod-identity" for d in configs)
    # Under Pod Identity the token is EKS's (audience pods.eks.amazonaws.com),
    # for the service account the manifest runs as.
    sub = f"system:serviceaccount:{spec.get('namespace') or 'shop'}:{spec.get('service_account') or 'shop-cart'}" \
        if pods else "system:serviceaccount:shop:shop-cart"
    claims = {"iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
              "sub": sub, "aud": ["pods.eks.amazonaws.com" if pods else "sts.amazonaws.com"],
              "exp": int(time.time()) + 3600}
    token = os.path.join(root, "token")
    with open(token, "w") as f:
        f.write(b64({"alg": "RS256", "kid": "example"}) + "." + b64(claims) + ".c2lnbmF0dXJl")
    args = [paths.get(a, a) for a in spec["args"]]
    args = [next((a[: -len(p)] + paths[p] for p in paths if a.endswith("=" + p)), a) for a in args]
    if args and args[0] == "run":
        args = args[1:]
    # The token and the health listener are the caller's (an injected
    # sidecar names its own in its args).
    args = [a for a in args if not a.startswith(("--token-file", "--pod-identity-token-file", "--health-addr"))]
    args.append(("--pod-identity-token-file=" if pods else "--token-file=") + token)
    # Output sets name their own dirs (an --output-dir beside them is refused).
    declared = any(d.get("outputs") for d in configs)
    if not declared:
        args.append("--output-dir=" + os.path.join(root, "out"))
    print("\n".join(["check"] + args))


def pod_identity_output(out):
    """`rolecall check` of an `identity: pod-identity` configuration."""
    return re.search(r"^identity:?\s+pod-identity\b", out, re.M | re.I) is not None


def fill_association_role(doc, path):
    """Without --assume, `rolecall check` cannot know the association's role
    and prints placeholders (ACCOUNT, ASSOCIATION_ROLE) in the target role's
    principal: put the example's (from `path`) in their place."""
    try:
        with open(path) as f:
            example = json.load(f)["Statement"][0]["Principal"]["AWS"]
    except (OSError, ValueError, KeyError, IndexError):
        return doc
    for s in doc.get("Statement", []):
        principal = s.get("Principal") or {}
        if isinstance(principal.get("AWS"), str) and re.search(r"[A-Z]{4,}", principal["AWS"]):
            principal["AWS"] = example
    return doc


def rolecall_trust(where, out):
    bad, compared = [], []
    # Blocks: "profile NAME -> ARN", then an indented JSON document.
    for m in re.finditer(r"^profile (\S+) -> [^\n]*\n(?:(?!profile |  \{)[^\n]*\n){0,3}(  \{\n.*?\n  \})$", out, re.M | re.S):
        name, doc = m.group(1), json.loads(m.group(2))
        path = f"examples/iam/trust-policy-{name}.json"
        if pod_identity_output(out):
            # The association role's own trust (the EKS service), or a
            # target role's (the association role's sessions).
            services = [s.get("Principal", {}).get("Service") for s in doc.get("Statement", [])]
            kind = "association" if EKS_SERVICE in services else "target"
            path = POD_IDENTITY_TRUST[kind]
            doc = fill_association_role(doc, path)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            want = json.load(f)
        for s in want.get("Statement", []):
            s.pop("Sid", None)
        compared.append(name)
        if doc != want:
            bad.append(f"{where}: rolecall check prints for {name}:\n{json.dumps(doc, indent=2)}\nwhich differs from {path}")
    # Under Pod Identity, check prints the association role's own trust
    # policy too ("association role ARN: ..."), before the profiles.
    m = re.search(r"^association role [^\n]*\n(  \{\n.*?\n  \})$", out, re.M | re.S)
    if pod_identity_output(out) and m:
        path = POD_IDENTITY_TRUST["association"]
        with open(path) as f:
            want = json.load(f)
        for s in want.get("Statement", []):
            s.pop("Sid", None)
        compared.append("the association role")
        if json.loads(m.group(1)) != want:
            bad.append(f"{where}: rolecall check prints for the association role:\n{m.group(1)}\nwhich differs from {path}")
    if bad:
        errors.extend(bad)
        return
    print(f"{where}: accepted" + (f"; trust policies of {', '.join(compared)} match examples/iam" if compared else ""))


def main(argv):
    what, rest = argv[1], argv[2:]
    if what == "rolecall-setup":
        rolecall_setup(json.loads(rest[0]), rest[1])
    elif what == "rolecall-trust":
        with open(rest[1]) as f:
            rolecall_trust(rest[0], f.read())
    else:
        file_checks(what, rest)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
