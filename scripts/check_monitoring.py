#!/usr/bin/env python3
"""Checks of examples/monitoring (`make monitoring-check`, tests/monitoring.rs).

    check_monitoring.py structure
        the PrometheusRule, PodMonitor and Grafana dashboard have the fields
        their kinds require (the CRDs' schemas are not available offline, so
        the required fields are listed here), every alert has `for`, a
        severity, a summary, a description and a runbook_url whose anchor is a
        heading of the doc it names
    check_monitoring.py promtool
        promtool check rules on the PrometheusRule's spec.groups (extracted
        into a plain rules file) and on the dashboard's queries (as
        recording rules), and promtool test rules with
        examples/monitoring/tests/*.yaml (`structure` checks that they test
        every alert)
    check_monitoring.py names SCRAPE...
        every metric name, label name and literal label value the rules and
        the dashboard's PromQL use exists in the scrapes (files holding the
        text of a /metrics answer: the sidecar's and the webhook's)
    check_monitoring.py selftest
        the tokenizer on known expressions, and a misspelled metric, label
        and label value each make `names` fail

Options: --rules FILE and --dashboard FILE replace the examples' files (for
the self-tests). Every problem goes to stderr; the exit code is then 1.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MON = os.path.join(ROOT, "examples", "monitoring")
RULES = os.path.join(MON, "prometheus-rule.yaml")
POD_MONITOR = os.path.join(MON, "pod-monitor.yaml")
DASHBOARD = os.path.join(MON, "grafana-dashboard.json")
TESTS = os.path.join(MON, "tests")

# Labels a target of pod-monitor.yaml carries that rolecall does not export:
# what Prometheus and the Prometheus Operator add to every series scraped.
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}
SEVERITIES = {"critical", "warning", "info"}

errors = []


def err(msg):
    errors.append(msg)


# ---------------------------------------------------------------- PromQL

FUNCTIONS = set("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil
changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month
day_of_week day_of_year days_in_month deg delta deriv exp floor
histogram_count histogram_fraction histogram_quantile histogram_sum
holt_winters hour idelta increase irate label_join label_replace last_over_time
ln log10 log2 max_over_time min_over_time minute month pi predict_linear
present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh
sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
time timestamp vector year start end
sum min max avg group stddev stdvar count count_values bottomk topk quantile
""".split())
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
WORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^=<>(){}\[\],@:])
""", re.X)


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


class Uses:
    """What one PromQL expression names."""

    def __init__(self):
        self.metrics = set()
        # (metric or None, label, op, value)
        self.matchers = []
        self.grouping = set()


def parse(expr):
    """The metrics, matchers and grouping labels of a PromQL expression.

    Not a full parser: it reads the tokens and tells a metric name from a
    function by the `(` after it, grouping labels by the keyword before
    them, matchers by the braces around them. Raises ValueError on what it
    cannot read (an unknown function, a matcher it does not understand).
    """
    toks, uses, i = tokens(expr), Uses(), 0

    def at(k):
        return toks[k] if k < len(toks) else (None, None)

    while i < len(toks):
        kind, text = toks[i]
        if kind == "ident" and at(i + 1)[1] == "(" and text.lower() not in WORDS:
            if text in GROUPING:
                i += 2
                while at(i)[1] != ")":
                    k, t = at(i)
                    if k == "ident":
                        uses.grouping.add(t)
                    elif t != ",":
                        raise ValueError(f"{t!r} in the label list of {text} in {expr!r}")
                    i += 1
            elif text not in FUNCTIONS:
                raise ValueError(f"unknown function {text}() in {expr!r}")
            i += 1
        elif kind == "ident" and (text.lower() in WORDS | GROUPING
                                  or (text in FUNCTIONS and at(i + 1)[1] in GROUPING)):
            # A keyword, or an aggregation whose `by (...)` comes first.
            i += 1
        elif kind == "ident" or text == "{":
            metric = None
            if kind == "ident":
                metric = text
                uses.metrics.add(text)
                i += 1
            if at(i)[1] == "{":
                i = matchers(toks, i + 1, metric, uses, expr)
        elif text == "[":
            while at(i)[1] not in ("]", None):
                i += 1
            i += 1
        else:
            i += 1
    return uses


def matchers(toks, i, metric, uses, expr):
    """Reads `label op "value", ...}` from toks[i]; the index after `}`."""
    while i < len(toks) and toks[i][1] != "}":
        label, op, value = toks[i:i + 3]
        if label[0] != "ident" or op[1] not in ("=", "!=", "=~", "!~") or value[0] != "string":
            raise ValueError(f"cannot read the matcher {label[1]}{op[1]}{value[1]} in {expr!r}")
        if label[1] == "__name__" and op[1] == "=":
            uses.metrics.add(unquote(value[1]))
        else:
            uses.matchers.append((metric, label[1], op[1], unquote(value[1])))
        i += 3
        if i < len(toks) and toks[i][1] == ",":
            i += 1
    return i + 1


LITERAL = re.compile(r"^[A-Za-z0-9_.:+-]+$")


def literal_values(op, value):
    """The label values a matcher names literally (none for a pattern)."""
    if "$" in value or value == "":
        return []
    if op in ("=", "!="):
        return [value]
    parts = value.split("|")
    return parts if all(LITERAL.match(p) for p in parts) else []


# Grafana's variables, replaced before parsing (the values do not matter).
GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)|\$\{__(?:rate_interval|interval|range)\}")


def grafana_expr(expr):
    return GRAFANA_INTERVALS.sub("5m", expr)


# ---------------------------------------------------------------- scrapes

SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+")
PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def read_scrapes(paths):
    """metric name -> {label: set of values} over every scrape."""
    series = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                m = SAMPLE.match(line)
                if not m:
                    err(f"{path}: cannot read the sample {line.strip()!r}")
                    continue
                labels = series.setdefault(m.group(1), {})
                for name, value in PAIR.findall(m.group(2) or ""):
                    labels.setdefault(name, set()).add(value)
    return series


def check_uses(where, uses, series, template_labels=()):
    known = {}
    for metric in sorted(uses.metrics):
        if metric not in series:
            err(f"{where}: metric {metric} is not in the scrape")
        else:
            known.update({k: v for k, v in series[metric].items()})
    in_expr = set(known) | TARGET_LABELS
    for metric, label, op, value in uses.matchers:
        labels = series.get(metric, {}) if metric else known
        if label in TARGET_LABELS:
            continue
        if label not in labels:
            err(f"{where}: label {label} is not on {metric or 'the series'} in the scrape")
            continue
        for v in literal_values(op, value):
            if v not in labels[label]:
                err(f"{where}: {metric or ''}{{{label}{op}\"{v}\"}}: the scrape has "
                    f"{label} = {', '.join(sorted(labels[label]))}")
    for label in sorted(uses.grouping | set(template_labels)):
        if label not in in_expr:
            err(f"{where}: label {label} is on none of {', '.join(sorted(uses.metrics))}")


def check_names(rules_path, dashboard_path, scrapes):
    series = read_scrapes(scrapes)
    for name, expr, templates in alert_exprs(rules_path):
        try:
            check_uses(f"alert {name}", parse(expr), series, templates)
        except ValueError as e:
            err(f"alert {name}: {e}")
    for where, expr in dashboard_exprs(dashboard_path):
        try:
            check_uses(where, parse(grafana_expr(expr)), series)
        except ValueError as e:
            err(f"{where}: {e}")
    for where, metric, label in dashboard_label_values(dashboard_path):
        if metric not in series:
            err(f"{where}: metric {metric} is not in the scrape")
        elif label not in series[metric] and label not in TARGET_LABELS:
            err(f"{where}: label {label} is not on {metric} in the scrape")


# ---------------------------------------------------------------- the files

def load_rules(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_exprs(path):
    """(alert, expr, labels its annotations' templates name) of each alert."""
    doc = load_rules(path)
    for group in doc["spec"]["groups"]:
        for rule in group["rules"]:
            text = " ".join(str(v) for v in (rule.get("annotations") or {}).values())
            yield (rule.get("alert") or rule.get("record"), rule["expr"],
                   re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text))


def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(path):
    dash = load_dashboard(path)
    for p in panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                yield f"panel {p.get('title')!r} ({t.get('refId')})", t["expr"]


LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")


def dashboard_label_values(path):
    for var in load_dashboard(path).get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = LABEL_VALUES.match(q or "")
        if not m:
            err(f"variable {var.get('name')}: expected label_values(METRIC, LABEL), not {q!r}")
            continue
        yield f"variable {var.get('name')}", m.group(1), m.group(2)


def need(obj, path, where):
    """obj at the dotted `path`, or an error naming it."""
    cur = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            err(f"{where}: {path} is required")
            return None
        cur = cur[key]
    return cur


DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")


def heading_anchors(doc):
    """GitHub's anchors of the headings of a Markdown file."""
    anchors, fence = set(), False
    with open(doc, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fence = not fence
            if fence or not line.startswith("#"):
                continue
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            anchors.add(text.replace(" ", "-"))
    return anchors


def check_rule_structure(path):
    doc = load_rules(path)
    where = os.path.relpath(path, ROOT)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != "PrometheusRule":
        err(f"{where}: not a monitoring.coreos.com/v1 PrometheusRule")
    need(doc, "metadata.name", where)
    groups = need(doc, "spec.groups", where) or []
    names = set()
    for g in groups:
        gname = g.get("name") or err(f"{where}: a group without a name")
        if gname in names:
            err(f"{where}: group {gname} twice")
        names.add(gname)
        for r in g.get("rules") or err(f"{where}: group {gname} has no rules") or []:
            alert = r.get("alert")
            w = f"{where}: alert {alert}"
            if not alert or not isinstance(r.get("expr"), str):
                err(f"{where}: group {gname}: every rule here is an alert with an expr")
                continue
            if not DURATION.match(str(r.get("for", ""))):
                err(f"{w}: for: is required (a duration)")
            if (r.get("labels") or {}).get("severity") not in SEVERITIES:
                err(f"{w}: labels.severity must be one of {sorted(SEVERITIES)}")
            ann = r.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    err(f"{w}: annotations.{key} is required")
            check_runbook(w, ann.get("runbook_url") or "")


def check_runbook(where, url):
    m = re.match(r"^(docs/[A-Z]+\.md)#([a-z0-9-]+)$", url)
    if not m:
        err(f"{where}: runbook_url {url!r} is not docs/FILE.md#anchor")
        return
    doc = os.path.join(ROOT, m.group(1))
    if not os.path.isfile(doc):
        err(f"{where}: {m.group(1)} does not exist")
    elif m.group(2) not in heading_anchors(doc):
        err(f"{where}: {m.group(1)} has no heading #{m.group(2)}")


def check_pod_monitor(path):
    where = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if not docs:
        err(f"{where}: empty")
    for d in docs:
        kind = d.get("kind")
        w = f"{where}: {kind} {(d.get('metadata') or {}).get('name')}"
        if d.get("apiVersion") != "monitoring.coreos.com/v1" or kind not in ("PodMonitor", "ServiceMonitor"):
            err(f"{w}: not a monitoring.coreos.com/v1 PodMonitor or ServiceMonitor")
            continue
        need(d, "metadata.name", w)
        if not isinstance(need(d, "spec.selector", w), dict):
            err(f"{w}: spec.selector must be a label selector")
        key = "podMetricsEndpoints" if kind == "PodMonitor" else "endpoints"
        endpoints = need(d, f"spec.{key}", w) or []
        for e in endpoints:
            ports = [k for k in ("port", "portNumber", "targetPort") if k in e]
            if len(ports) != 1:
                err(f"{w}: each endpoint names its port once (port, portNumber or targetPort)")
            if e.get("path", "/metrics") != "/metrics":
                err(f"{w}: rolecall serves /metrics, not {e.get('path')}")
            for r in e.get("relabelings", []):
                if r.get("action", "replace") not in ("keep", "drop", "replace", "labeldrop", "labelkeep"):
                    err(f"{w}: relabeling action {r.get('action')}")
                if "sourceLabels" in r and not isinstance(r["sourceLabels"], list):
                    err(f"{w}: sourceLabels must be a list")


def check_dashboard(path):
    where = os.path.relpath(path, ROOT)
    dash = load_dashboard(path)
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in dash:
            err(f"{where}: {key} is required")
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        err(f"{where}: schemaVersion {dash.get('schemaVersion')} (Grafana 10-11 write 36-41)")
    ids = set()
    for p in panels(dash):
        w = f"{where}: panel {p.get('title')!r}"
        for key in ("id", "type", "title", "gridPos"):
            if key not in p:
                err(f"{w}: {key} is required")
        if p.get("id") in ids:
            err(f"{w}: id {p.get('id')} twice")
        ids.add(p.get("id"))
        if p.get("type") != "row" and not p.get("targets"):
            err(f"{w}: no query")
        for t in p.get("targets", []):
            if "${datasource}" not in json.dumps(t.get("datasource", p.get("datasource"))):
                err(f"{w}: the query's datasource is not ${{datasource}}")
    for _ in dashboard_label_values(path):
        pass


def structure(rules, dashboard):
    check_rule_structure(rules)
    check_pod_monitor(POD_MONITOR)
    check_dashboard(dashboard)
    check_alert_tables(rules)
    tested = set()
    for t in test_files():
        with open(t, encoding="utf-8") as f:
            for case in yaml.safe_load(f).get("tests", []):
                tested |= {a["alertname"] for a in case.get("alert_rule_test", [])}
    for name, _, _ in alert_exprs(rules):
        if name not in tested:
            err(f"alert {name}: no promtool test in {os.path.relpath(TESTS, ROOT)}")


def check_alert_tables(rules):
    """Markdown table rows naming an alert (`| `RolecallX` | ...`) in
    examples/monitoring/README.md and docs/*.md say what the rule says: its
    expression, `for` and severity wherever a cell holds one. The README's
    table lists every alert."""
    alerts = {}
    for group in load_rules(rules)["spec"]["groups"]:
        for r in group["rules"]:
            alerts[r["alert"]] = r
    readme = os.path.join(MON, "README.md")
    docs = os.path.join(ROOT, "docs")
    files = [readme] + sorted(os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))
    in_readme = set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                m = re.match(r"^`(Rolecall[A-Za-z]+)`$", cells[0]) if line.startswith("|") else None
                if not m:
                    continue
                where = f"{os.path.relpath(path, ROOT)}:{n}"
                rule = alerts.get(m.group(1))
                if rule is None:
                    err(f"{where}: no alert {m.group(1)} in {os.path.relpath(rules, ROOT)}")
                    continue
                if path == readme:
                    in_readme.add(m.group(1))
                for c in cells[1:]:
                    code = c[1:-1] if c.startswith("`") and c.endswith("`") else None
                    if code and "rolecall_" in code and code != rule["expr"]:
                        err(f"{where}: {m.group(1)} is `{rule['expr']}`, not `{code}`")
                    if DURATION.match(c) and c != rule.get("for"):
                        err(f"{where}: {m.group(1)} is for {rule.get('for')}, not {c}")
                    if c in SEVERITIES and c != rule["labels"]["severity"]:
                        err(f"{where}: {m.group(1)} is {rule['labels']['severity']}, not {c}")
    for name in sorted(set(alerts) - in_readme):
        err(f"{os.path.relpath(readme, ROOT)}: the alerts table has no {name}")


def test_files():
    return sorted(os.path.join(TESTS, n) for n in os.listdir(TESTS) if n.endswith(".yaml"))


# ---------------------------------------------------------------- promtool

def run_promtool(rules, dashboard):
    promtool = shutil.which("promtool")
    if not promtool:
        err("promtool not found: install Debian's prometheus package (make monitoring-check does)")
        return
    doc = load_rules(rules)
    with tempfile.TemporaryDirectory(prefix="rolecall-rules-") as tmp:
        plain = os.path.join(tmp, "rolecall.rules.yaml")
        with open(plain, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": doc["spec"]["groups"]}, f, sort_keys=False)
        # The dashboard's queries, as recording rules: promtool parses them.
        queries = os.path.join(tmp, "dashboard.rules.yaml")
        with open(queries, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
                {"record": f"dashboard:query_{n}", "expr": grafana_expr(expr)}
                for n, (_, expr) in enumerate(dashboard_exprs(dashboard))]}]}, f)
        steps = [[promtool, "check", "rules", plain], [promtool, "check", "rules", queries]]
        # The unit tests compare every annotation of a firing alert; they
        # state the summary (its templates rendered), so the rules they run
        # keep that one (promtool check rules above parses every template).
        tested = os.path.join(tmp, "rolecall.tested.yaml")
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                rule["annotations"] = {"summary": rule["annotations"]["summary"]}
        with open(tested, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": doc["spec"]["groups"]}, f, sort_keys=False)
        for t in test_files():
            with open(t, encoding="utf-8") as f:
                test = yaml.safe_load(f)
            test["rule_files"] = [tested]
            copy = os.path.join(tmp, os.path.basename(t))
            with open(copy, "w", encoding="utf-8") as f:
                yaml.safe_dump(test, f, sort_keys=False)
            steps.append([promtool, "test", "rules", copy])
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True)
            print(f"$ promtool {' '.join(cmd[1:3])} {os.path.basename(cmd[-1])}: exit {r.returncode}")
            if r.returncode != 0:
                err(f"promtool {' '.join(cmd[1:3])} failed:\n{r.stdout}{r.stderr}")


# ---------------------------------------------------------------- self-test

def selftest():
    global errors
    u = parse('sum by (namespace, pod) (increase(rolecall_refresh_total{result="config_error",profile=~"a|b"}[15m])) > 0')
    assert u.metrics == {"rolecall_refresh_total"}, u.metrics
    assert u.grouping == {"namespace", "pod"}, u.grouping
    assert ("rolecall_refresh_total", "result", "=", "config_error") in u.matchers, u.matchers
    assert literal_values("=~", "a|b") == ["a", "b"] and literal_values("=~", "a.*") == []
    assert literal_values("=~", "$pod") == []
    u = parse('histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le)) - time() < 14 * 86400 and y offset 1h')
    assert u.metrics == {"x_bucket", "y"} and u.grouping == {"le"}, (u.metrics, u.grouping)
    u = parse('(a > 0) unless (b > 0) or vector(0)')
    assert u.metrics == {"a", "b"}, u.metrics
    u = parse('a / on (pod) group_left (profile) b{c!="d"}')
    assert u.metrics == {"a", "b"} and u.grouping == {"pod", "profile"}
    assert u.matchers == [("b", "c", "!=", "d")]
    for bad in ("sumx(y)", "x{a=b}", "sum by (a, 3) (x)"):
        try:
            parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")
    assert grafana_expr("rate(x[$__rate_interval])") == "rate(x[5m])"
    assert "find-why-a-profile-is-not-ready" in heading_anchors(os.path.join(ROOT, "docs", "OPERATIONS.md"))

    # The real files against a scrape made of their own names must pass,
    # and each misspelling must fail.
    with tempfile.TemporaryDirectory(prefix="rolecall-mon-selftest-") as tmp:
        scrape = os.path.join(tmp, "scrape.txt")
        with open(scrape, "w") as f:
            f.write('rolecall_refresh_total{profile="a",result="success"} 1\n'
                    'rolecall_refresh_total{profile="a",result="config_error"} 1\n')
        rules = os.path.join(tmp, "rules.yaml")
        dash = os.path.join(tmp, "dash.json")
        with open(dash, "w") as f:
            json.dump({"panels": [], "templating": {"list": []}}, f)

        def names_with(expr, annotation="{{ $labels.profile }}"):
            with open(rules, "w") as f:
                yaml.safe_dump({"spec": {"groups": [{"name": "g", "rules": [
                    {"alert": "A", "expr": expr, "annotations": {"summary": annotation}}]}]}}, f)
            saved, errors[:] = list(errors), []
            check_names(rules, dash, [scrape])
            found, errors[:] = list(errors), saved
            return found

        ok = 'increase(rolecall_refresh_total{result="config_error"}[15m]) > 0'
        assert names_with(ok) == [], names_with(ok)
        for bad, says in [
            (ok.replace("rolecall_refresh_total", "rolecall_refresh_totl"), "metric rolecall_refresh_totl"),
            (ok.replace("result=", "reslt="), "label reslt"),
            (ok.replace("config_error", "config_eror"), 'result="config_eror"'),
            ("sum by (profle) (rolecall_refresh_total)", "label profle"),
        ]:
            found = names_with(bad)
            assert any(says in e for e in found), (bad, found)
        found = names_with(ok, "{{ $labels.profil }}")
        assert any("label profil" in e for e in found), found
        # The alert tables follow the rules: a changed `for` is found.
        with open(RULES, encoding="utf-8") as f:
            text = f.read()
        with open(rules, "w", encoding="utf-8") as f:
            f.write(text.replace("for: 15m", "for: 16m", 1))
        saved, errors[:] = list(errors), []
        check_alert_tables(rules)
        found, errors[:] = list(errors), saved
        assert any("RolecallStsThrottled is for 16m, not 15m" in e for e in found), found
    print("check_monitoring.py selftest: ok")


def main(argv):
    args, rules, dashboard = [], RULES, DASHBOARD
    it = iter(argv)
    for a in it:
        if a == "--rules":
            rules = next(it)
        elif a == "--dashboard":
            dashboard = next(it)
        else:
            args.append(a)
    if not args:
        print(__doc__, file=sys.stderr)
        return 64
    cmd, rest = args[0], args[1:]
    if cmd == "structure":
        structure(rules, dashboard)
    elif cmd == "promtool":
        run_promtool(rules, dashboard)
    elif cmd == "names" and rest:
        check_names(rules, dashboard, rest)
    elif cmd == "selftest":
        selftest()
    else:
        print(__doc__, file=sys.stderr)
        return 64
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
