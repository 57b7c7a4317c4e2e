#!/usr/bin/env python3
"""Documentation that cannot rot: every snippet and name in the docs checked
against the real binary (docs/DEVELOPMENT.md, "Documentation checks").

    check_docs.py --bin ROLECALL --facts DIR [FILE...]
    check_docs.py --bin ROLECALL --facts DIR --selftest

FILEs default to README.md, docs/*.md, examples/**/README.md and SECURITY.md.
DIR holds `metrics.txt`, a real /metrics scrape of the sidecar written by
tests/docs.rs (`cargo test --test docs`). Run it with the venv's Python
(PyYAML and kubernetes-validate, as scripts/validate-examples.sh installs).

Fenced blocks, by language (a block may be preceded by a marker line
`<!-- check: ... -->`):

  yaml   a Kubernetes manifest (apiVersion and kind): the schemas of
         Kubernetes 1.29 and 1.37, strictly, and the examples' pod rules
         (scripts/validate_examples.py) for a pod with a rolecall sidecar;
         a rolecall configuration (top-level `profiles` or `outputs`, or the
         marker `rolecall-config`): `rolecall check --config` with a
         fabricated token must exit 0, or N with `exit N`;
         `fragment: WHAT`: parsed as YAML only. Any other YAML is an error.
  json   parsed.
  sh     `bash -n`, and every `rolecall SUB --flag` in it exists.
  python compiled.
  `skip: REASON` skips a block (the reason is required); blocks in other
  languages or none (output, synopses) are not checked.

Prose: every `rolecall SUB --flag` in backticks, every `--flag` in the
option table of docs/REFERENCE.md and every lone `--flag` in backticks exists
in the binary's help (or is accepted by its parser: hidden aliases); every
`rolecall_*` metric name, every `{label="value"}` and every label and value
the metrics table of docs/REFERENCE.md lists exists in the scrape (a value of
a metric that has no series in the scrape, such as a write error, must at
least be a string in the binary); every relative link and `#anchor`
resolves. Exit 1 with every problem listed.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import base64

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validate_examples  # noqa: E402  (the examples' pod rules, reused)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S_VERSIONS = ("1.29.0", "1.37.0")
MARKER = re.compile(r"^\s*<!--\s*check:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```\s*([A-Za-z0-9_+-]*)\s*$")
# Flags of other tools that the docs write alone in backticks.
OTHER_TOOLS = {
    "--from-literal", "--dry-run", "--post-renderer", "--post-renderer-args",
    "--enable-alpha-plugins", "--enable-exec", "--assume-role-policy-document",
    "--template-file", "--stack-name", "--capabilities", "--parameter-overrides",
    "--profile-name", "--no-default-features", "--all-targets", "--locked",
    "--ignored", "--test-threads", "--release", "--strict", "--target",
    "--ulimit", "--allowed-unsafe-sysctls",
    "--target-role-arn", "--disable-session-tags",  # aws eks create-pod-identity-association
}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")


# ------------------------------------------------------------------ the binary

class Binary:
    """What the binary exposes: its subcommands and each one's flags."""

    def __init__(self, path):
        self.path = path
        self.top = self.help([])
        self.subs = self.subcommands(self.top)
        self.flags = {None: flag_names(self.top)}
        for s in self.subs:
            self.flags[s] = flag_names(self.help([s]))
        self.flags["run"] |= self.flags[None]
        with open(path, "rb") as f:
            self.bytes = f.read()
        self.probed = {}
        self.strings = {}

    def help(self, sub):
        out = subprocess.run([self.path, *sub, "--help"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"check_docs: {self.path} {' '.join(sub)} --help exited {out.returncode}")
        return out.stdout

    @staticmethod
    def subcommands(top):
        subs, inside = [], False
        for line in top.splitlines():
            if line.strip().lower().startswith("commands:"):
                inside = True
                continue
            if inside:
                m = re.match(r"^  ([a-z][a-z-]*)\s", line)
                if m:
                    subs.append(m.group(1))
                elif line and not line.startswith(" "):
                    inside = False
        return [s for s in subs if s != "help"]

    def has_flag(self, sub, flag):
        if flag in self.flags.get(sub, set()):
            return True
        # A hidden alias is not in the help but the parser takes it: an
        # unknown flag is "unexpected argument", a known one is not.
        key = (sub, flag)
        if key not in self.probed:
            args = ([sub] if sub else []) + [flag, "--help"]
            out = subprocess.run([self.path, *args], capture_output=True, text=True, timeout=30)
            self.probed[key] = "unexpected argument" not in (out.stderr + out.stdout)
        return self.probed[key]

    def has_metric(self, name):
        """A family with no series is not in the scrape (its first event
        creates it): its registered name must be in the binary."""
        return self.has_string(re.sub(r"_(total|bucket|sum|count|created)$", "", name))

    def has_string(self, s):
        if s not in self.strings:
            self.strings[s] = self.bytes.find(s.encode()) >= 0
        return self.strings[s]


def flag_names(help_text):
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-[a-zA-Z])(?![\w-])", help_text))


# ------------------------------------------------------------------ markdown

def blocks_and_prose(text):
    """(blocks, prose_lines): blocks as dicts (line, lang, marker, body);
    prose lines as (number, line) outside fences."""
    blocks, prose = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        marker = None
        j = i - 1
        if j >= 0 and MARKER.match(lines[j]):
            marker = MARKER.match(lines[j]).group(1)
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        blocks.append({"line": start + 1, "lang": lang, "marker": marker, "body": "\n".join(body) + "\n"})
    return blocks, prose


def paragraphs(prose):
    """(first line number, text) of each run of prose lines; a table row,
    a heading or a marker is a paragraph of its own."""
    out, cur, start, last = [], [], None, None
    for n, line in prose:
        alone = line.startswith(("|", "#", "<!--"))
        if cur and n != last + 1:  # a fenced block in between
            out.append((start, "\n".join(cur)))
            cur, start = [], None
        last = n
        if not line.strip() or alone:
            if cur:
                out.append((start, "\n".join(cur)))
            cur, start = [], None
            if alone:
                out.append((n, line))
            continue
        if not cur:
            start = n
        cur.append(line)
    if cur:
        out.append((start, "\n".join(cur)))
    return out


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(text):
    seen, out = {}, set()
    blocks_skipped = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", blocks_skipped, re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


# ------------------------------------------------------------------ commands

SEPARATORS = re.compile(r"\s*(?:\||;|&&|\|\||#|\)|>|<|\$\()")


def rolecall_commands(text):
    """(sub, [flags], snippet) for every `rolecall ...` command in text."""
    out = []
    for w in re.finditer(r"(?:^|(?<=[\s/`(]))rolecall(?![\w.-])", text):
        m = re.compile(r"rolecall((?:[ \t]+[^\s|;&#)<>`]+)*)").match(text, w.start())
        before = text[: m.start()].rsplit("\n", 1)[-1]
        if before.endswith("/"):  # run by its path: the path's own position counts
            before = before[: len(before) - len(before.split()[-1])] if before.split() else ""
        # A command: first on its line, after a pipe, `--` (kubectl exec),
        # `$(`; not an argument, a resource or a container named rolecall.
        if before.strip() and not before.rstrip().endswith(("|", ";", "&&", "(", "--", "$", "`")):
            continue
        rest = m.group(1)
        tokens = rest.split()
        if not tokens:
            continue
        if tokens[0].startswith("-"):
            sub = "run" if tokens[0] not in ("--help", "--version", "-h", "-V") else None
        else:
            sub = tokens[0]
            tokens = tokens[1:]
        flags = []
        for t in tokens:
            if re.match(r"^--[a-z0-9][a-z0-9-]*(=.*)?$", t) or re.match(r"^-[a-zA-Z]$", t):
                flags.append(t.split("=", 1)[0])
        out.append((sub, flags, ("rolecall" + rest).strip()))
    return out


def check_commands(where, text, binary, problems, strict):
    """strict (code blocks): the word after rolecall must be a subcommand."""
    text = text.replace("\\\n", " ")  # shell line continuations
    for sub, flags, snippet in rolecall_commands(text):
        if sub is not None and sub not in binary.subs:
            if strict and re.match(r"^[a-z][a-z-]*$", sub):
                problems.add(where, f"`{snippet}`: rolecall has no subcommand {sub!r}")
            continue
        for f in flags:
            if f in ("--help", "-h"):
                continue
            if not binary.has_flag(sub, f):
                problems.add(where, f"`{snippet}`: rolecall {sub or ''} has no flag {f}")


# ------------------------------------------------------------------ yaml

def fake_token(dirname, audience="sts.amazonaws.com"):
    b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    claims = {"iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
              "sub": "system:serviceaccount:shop:shop-cart",
              "aud": [audience], "exp": int(time.time()) + 3600}
    path = os.path.join(dirname, "token")
    with open(path, "w") as f:
        f.write(b64({"alg": "RS256", "kid": "docs"}) + "." + b64(claims) + ".c2lnbmF0dXJl")
    return path


def check_config(where, body, expect, binary, problems):
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "rolecall.yaml")
        with open(cfg, "w") as f:
            f.write(body)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": d}
        try:
            doc = yaml.safe_load(body)
        except yaml.YAMLError:
            doc = None
        # Under Pod Identity the token is EKS's, named by its own option.
        if isinstance(doc, dict) and doc.get("identity") == "pod-identity":
            token = ["--pod-identity-token-file", fake_token(d, "pods.eks.amazonaws.com")]
        else:
            token = ["--token-file", fake_token(d)]
        args = [binary.path, "check", "--config", cfg] + token
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=d)
        if out.returncode != expect:
            detail = (out.stdout + out.stderr).strip().replace("\n", "\n    ")
            problems.add(where, f"rolecall check --config exits {out.returncode}, the docs promise {expect}:\n    {detail}")


def check_manifests(where, docs, problems):
    import kubernetes_validate
    import kubernetes_validate.utils as kvu

    for doc in docs:
        for v in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, v, strict=True)
            except kvu.ValidationError as e:
                problems.add(where, f"{doc.get('kind')} against Kubernetes {v}: {e.message}")
            except kvu.SchemaNotFoundError:
                pass  # a custom resource: no bundled schema (as validate-examples)
        before = len(validate_examples.errors)
        maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
        for pod, meta in zip(validate_examples.pod_templates(doc), validate_examples.template_metas(doc)):
            if any(c.get("name") == "rolecall" for c in pod.get("initContainers", [])):
                validate_examples.check_pod(where, pod, validate_examples.sidecar_config(pod, maps, meta), meta=meta)
        for e in validate_examples.errors[before:]:
            problems.add(where, f"pod rules: {e}")
        del validate_examples.errors[before:]


def check_yaml(where, block, binary, problems):
    marker = block["marker"] or ""
    try:
        docs = [d for d in yaml.safe_load_all(block["body"]) if d is not None]
    except yaml.YAMLError as e:
        return problems.add(where, f"YAML does not parse: {e}")
    if marker.startswith("fragment"):
        if not marker.startswith("fragment:") or not marker.split(":", 1)[1].strip():
            problems.add(where, "the marker `fragment` needs a reason: `fragment: WHAT`")
        return
    manifests = [d for d in docs if isinstance(d, dict) and "apiVersion" in d and "kind" in d]
    if manifests:
        return check_manifests(where, manifests, problems)
    m = re.search(r"\bexit (\d+)", marker)
    config = marker.startswith("rolecall-config") or m or (
        len(docs) == 1 and isinstance(docs[0], dict) and ({"profiles", "outputs"} & set(docs[0])))
    if config:
        return check_config(where, block["body"], int(m.group(1)) if m else 0, binary, problems)
    problems.add(where, "YAML that is neither a manifest (apiVersion, kind) nor a rolecall "
                        "configuration (profiles): mark it `<!-- check: fragment: WHAT -->`")


# ------------------------------------------------------------------ metrics

class Scrape:
    def __init__(self, text):
        self.families = {}  # base name -> type
        self.series = {}  # sample name -> {label: set(values)}
        for line in text.splitlines():
            m = re.match(r"^# TYPE (\S+) (\S+)", line)
            if m:
                self.families[m.group(1)] = m.group(2)
                continue
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*?)\})?\s", line)
            if not m:
                continue
            labels = self.series.setdefault(m.group(1), {})
            for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""):
                labels.setdefault(k, set()).add(v)

    def known(self, name):
        if name in self.families or name in self.series:
            return True
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
            if name.endswith(suffix) and name[: -len(suffix)] in self.families:
                return True
        return False

    def labels(self, name):
        """{label: values} of the metric's samples (a counter named either way)."""
        out = {}
        for n in (name, name + "_total", name.removesuffix("_total"), name + "_bucket"):
            for k, vs in self.series.get(n, {}).items():
                out.setdefault(k, set()).update(vs)
        out.pop("le", None)
        return out


def check_label(where, metric, label, value, scrape, binary, problems):
    have = scrape.labels(metric)
    if label in have:
        if value is not None and value not in have[label]:
            problems.add(where, f"{metric}{{{label}=\"{value}\"}}: the scrape has {label} = {sorted(have[label])}")
        return
    # No series with this label in the scrape (it appears at the first
    # event): the label and value must at least be strings of the binary.
    for s in (label, value):
        if s is not None and not binary.has_string(s):
            problems.add(where, f"{metric}: {s!r} is neither a label in the scrape nor a string in the binary")


def strip_parens(s):
    while True:
        t = re.sub(r"\([^()]*\)", "", s)
        if t == s:
            return t
        s = t


def check_metrics_table(where, lines, scrape, binary, problems):
    """docs/REFERENCE.md's metrics table: every label, and the values the
    meaning cell lists after "`label`:" or "`label` is"."""
    for n, line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`rolecall_"):
            continue
        metric = cells[0].strip("`")
        labels = re.findall(r"`(\w+)`", cells[2])
        meaning = strip_parens(cells[3])
        for label in labels:
            check_label(f"{where}:{n}", metric, label, None, scrape, binary, problems)
            m = re.search(rf"`{label}`(?::| is) (.*?)(?:\.\s|\.$|$)", meaning)
            if not m:
                continue
            for value in re.findall(r"`([^`]+)`", m.group(1)):
                check_label(f"{where}:{n}", metric, label, value, scrape, binary, problems)


def check_metric_names(where, text, scrape, binary, problems):
    for m in re.finditer(r"\b(rolecall_[a-z0-9_]*[a-z0-9])(\{[^}]*\})?", text):
        name, selector = m.group(1), m.group(2)
        if not scrape.known(name) and not binary.has_metric(name):
            if text[m.end():m.end() + 1] == "`" and any(f.startswith(name) for f in scrape.families):
                continue  # a quoted log line cut short (docs/SCALE.md's tables)
            problems.add(where, f"{name}: no such metric in the scrape or the binary")
            continue
        for label, value in re.findall(r'(\w+)="([^"]*)"', selector or ""):
            check_label(where, name, label, value, scrape, binary, problems)


# ------------------------------------------------------------------ links

def check_links(path, text, problems, cache):
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", prose):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        where = f"{os.path.relpath(path, ROOT)}: link {target}"
        if not os.path.exists(dest):
            problems.add(where, f"{os.path.relpath(dest, ROOT)} does not exist")
            continue
        if anchor:
            if not dest.endswith(".md"):
                problems.add(where, "an anchor into a file that is not Markdown")
                continue
            if dest not in cache:
                with open(dest) as f:
                    cache[dest] = anchors(f.read())
            if anchor not in cache[dest]:
                problems.add(where, f"no heading #{anchor} in {os.path.relpath(dest, ROOT)}")


# ------------------------------------------------------------------ a file

def check_file(path, binary, scrape, problems, stats):
    with open(path) as f:
        text = f.read()
    rel = os.path.relpath(path, ROOT)
    blocks, prose = blocks_and_prose(text)
    for b in blocks:
        where = f"{rel}:{b['line']}"
        marker = b["marker"] or ""
        if marker.startswith("skip"):
            if not re.match(r"^skip:\s*\S", marker):
                problems.add(where, "`skip` needs a reason: `<!-- check: skip: REASON -->`")
            stats["skipped"] += 1
            continue
        lang = b["lang"]
        if lang in ("yaml", "yml"):
            check_yaml(where, b, binary, problems)
        elif lang == "json":
            try:
                json.loads(b["body"])
            except ValueError as e:
                problems.add(where, f"JSON does not parse: {e}")
        elif lang in ("sh", "bash", "shell", "console"):
            out = subprocess.run(["bash", "-n"], input=b["body"], capture_output=True, text=True)
            if out.returncode != 0:
                problems.add(where, f"bash -n: {out.stderr.strip()}")
            check_commands(where, b["body"], binary, problems, strict=True)
        elif lang == "python":
            try:
                compile(b["body"], where, "exec")
            except SyntaxError as e:
                problems.add(where, f"Python does not compile: {e}")
        else:
            stats["unchecked"] += 1
            continue
        stats["blocks"] += 1
        check_metric_names(where, b["body"], scrape, binary, problems)
    for n, para in paragraphs(prose):
        where = f"{rel}:{n}"
        for span in re.findall(r"`([^`]+)`", para):
            span = " ".join(span.split())
            if re.search(r"(?:^|[\s/])rolecall\s", span):
                check_commands(where, span, binary, problems, strict=False)
            elif re.match(r"^--[a-z0-9][a-z0-9-]*(?:[= ].*)?$", span):
                flag = re.match(r"^(--[a-z0-9-]+)", span).group(1)
                if flag not in OTHER_TOOLS and not any(binary.has_flag(s, flag) for s in binary.flags if s):
                    problems.add(where, f"`{span}`: no rolecall command has {flag}")
        check_metric_names(where, para, scrape, binary, problems)
    in_options = in_metrics = False
    table = []
    for n, line in prose:
        where = f"{rel}:{n}"
        if line.startswith("| option | flag |"):
            in_options = True
        elif line.startswith("| metric | type | labels |"):
            in_metrics = True
        elif not line.startswith("|"):
            in_options = in_metrics = False
        elif in_options:
            cells = line.split(" | ")
            flags_cell = cells[1] if len(cells) > 1 else ""
            for flag in re.findall(r"`(--[a-z0-9-]+)", flags_cell):
                if not binary.has_flag("run", flag):
                    problems.add(where, f"option table: rolecall run has no flag {flag}")
        elif in_metrics:
            table.append((n, line))
    check_metrics_table(rel, table, scrape, binary, problems)
    check_links(path, text, problems, stats.setdefault("anchors", {}))


def default_files():
    files = ["README.md", "SECURITY.md", *sorted(glob.glob("docs/*.md")),
             *sorted(glob.glob("examples/**/README.md", recursive=True))]
    return [os.path.join(ROOT, f) for f in files if os.path.exists(os.path.join(ROOT, f))]


def check_runbooks(problems, cache):
    """The alerts' runbook_url (docs/FILE.md#anchor, relative to the
    repository) in examples/monitoring/*.yaml lead to a heading."""
    for path in sorted(glob.glob(os.path.join(ROOT, "examples/monitoring/*.yaml"))):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                m = re.search(r"runbook_url:\s*['\"]?([\w./-]+\.md(?:#[\w-]+)?)", line)
                if m:
                    fake = os.path.join(ROOT, "runbook.md")  # links resolve from the root
                    before = len(problems.items)
                    check_links(fake, f"[runbook]({m.group(1)})", problems, cache)
                    for i in range(before, len(problems.items)):
                        problems.items[i] = problems.items[i].replace(
                            "runbook.md:", f"{os.path.relpath(path, ROOT)}:{n}: runbook_url", 1)


def run(files, binary, scrape, runbooks=False):
    problems = Problems()
    stats = {"blocks": 0, "skipped": 0, "unchecked": 0}
    for path in files:
        check_file(path, binary, scrape, problems, stats)
    if runbooks:
        check_runbooks(problems, stats.setdefault("anchors", {}))
    return problems, stats


# ------------------------------------------------------------------ self-test

SELFTEST_BAD = {  # what: (document, a piece of the problem it must cause)
    "flag in a shell block": ("```sh\nkubectl exec POD -c rolecall -- /rolecall refresh --profil writer\n```\n", "no flag --profil"),
    "flag after a continuation": ("```sh\nrolecall check \\\n  --asume\n```\n", "no flag --asume"),
    "subcommand": ("```sh\nrolecall refersh\n```\n", "no subcommand 'refersh'"),
    "flag in prose": ("Run `rolecall check --asume` now.\n", "no flag --asume"),
    "lone flag": ("Set `--no-such-flag` to enable it.\n", "no rolecall command has --no-such-flag"),
    "option table flag": ("| option | flag |\n|---|---|\n| x | `--no-such-flag` |\n", "option table"),
    "metric": ("Alert on `rolecall_refresh_failures_total`.\n", "no such metric"),
    "label value": ("Alert on `rolecall_refresh_total{result=\"ok\"}`.\n", "the scrape has result"),
    "broken YAML": ("```yaml\nprofiles: [a\n```\n", "does not parse"),
    "config that exits 64": ("```yaml\nregion: eu-west-1\nprofiles:\n  bad name: arn:aws:iam::111122223333:role/r\n```\n", "exits 64, the docs promise 0"),
    "wrong promised exit": ("<!-- check: exit 64 -->\n```yaml\nregion: eu-west-1\nprofiles:\n  r: arn:aws:iam::111122223333:role/r\n```\n", "exits 0, the docs promise 64"),
    "unmarked fragment": ("```yaml\nenv:\n  - { name: A, value: b }\n```\n", "mark it"),
    "manifest schema": ("```yaml\napiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n  containers: [{ name: a, image: b, notAField: 1 }]\n```\n", "against Kubernetes"),
    "pod rules": ("```yaml\napiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n  initContainers: [{ name: rolecall, image: b }]\n  containers: [{ name: a, image: b }]\n```\n", "pod rules"),
    "JSON": ("```json\n{\"a\": }\n```\n", "JSON does not parse"),
    "shell syntax": ("```sh\nif true; then\n```\n", "bash -n"),
    "broken link": ("See [nowhere](no-such-file.md).\n", "does not exist"),
    "broken anchor": ("See [here](#no-such-heading).\n", "no heading #no-such-heading"),
    "skip without reason": ("<!-- check: skip -->\n```yaml\nx: 1\n```\n", "needs a reason"),
    "Pod Identity config that exits 64": (
        "```yaml\nidentity: pod-identity\nregion: eu-west-1\nprofiles:\n"
        "  pod-identity: arn:aws:iam::111122223333:role/r\n```\n", "exits 64, the docs promise 0"),
    "Pod Identity pod without skip-containers": (
        "```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n"
        "data:\n  rolecall.yaml: |\n    identity: pod-identity\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n"
        "  initContainers: [{ name: rolecall, image: b, volumeMounts: [{ name: c, mountPath: /etc/rolecall }] }]\n"
        "  containers: [{ name: a, image: b }]\n  volumes: [{ name: c, configMap: { name: c } }]\n```\n",
        "skip-containers must list every container but rolecall"),
}
SELFTEST_GOOD = """# Good

See [Good](#good). Run `rolecall check --assume` or `--region`.
`rolecall_refresh_total{result="success"}` and `rolecall_ready`.

```sh
kubectl exec POD -c rolecall -- /rolecall refresh --profile writer
```

```yaml
region: eu-west-1
profiles:
  r: arn:aws:iam::111122223333:role/r
```

<!-- check: exit 64 -->
```yaml
profiles:
  bad name: arn:aws:iam::111122223333:role/r
```

```yaml
identity: pod-identity
region: eu-west-1
profiles:
  r: arn:aws:iam::111122223333:role/r
```

<!-- check: fragment: env of a container -->
```yaml
env:
  - { name: A, value: b }
```
"""


def selftest(binary, scrape):
    failed = []
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        good = os.path.join(d, "good.md")
        with open(good, "w") as f:
            f.write(SELFTEST_GOOD)
        problems, _ = run([good], binary, scrape)
        if problems.items:
            failed.append("a correct document was refused:\n  " + "\n  ".join(problems.items))
        for what, (text, expected) in SELFTEST_BAD.items():
            bad = os.path.join(d, "bad.md")
            with open(bad, "w") as f:
                f.write(text)
            problems, _ = run([bad], binary, scrape)
            if not any(expected in p for p in problems.items):
                failed.append(f"a wrong {what} was not refused with {expected!r}: {problems.items}")
    if failed:
        print("check_docs self-test FAILED:\n" + "\n".join(failed), file=sys.stderr)
        return 1
    print(f"check_docs self-test: {len(SELFTEST_BAD)} wrong documents refused, a correct one accepted")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    os.chdir(ROOT)
    binary = Binary(os.path.abspath(a.bin))
    scrape_path = os.path.join(a.facts, "metrics.txt")
    if not os.path.exists(scrape_path):
        raise SystemExit(f"check_docs: no {scrape_path}: run `cargo test --test docs` first (make docs-check)")
    with open(scrape_path) as f:
        scrape = Scrape(f.read())
    if a.selftest:
        return selftest(binary, scrape)
    started = time.monotonic()
    files = [os.path.abspath(f) for f in a.files] or default_files()
    problems, stats = run(files, binary, scrape, runbooks=not a.files)
    for p in problems.items:
        print(p, file=sys.stderr)
    print(f"check_docs: {len(files)} files, {stats['blocks']} blocks checked, {stats['skipped']} skipped by a marker, "
          f"{stats['unchecked']} without a checked language; {len(problems.items)} problems "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
