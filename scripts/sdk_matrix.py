#!/usr/bin/env python3
"""Renders the README's SDK matrix from the results the SDK matrix tests
(tests/sdk_matrix.rs) leave in target/sdk-matrix/.

  scripts/sdk_matrix.py --write   replace the table in README.md
  scripts/sdk_matrix.py --check   fail if README.md does not show these results

Each result file holds "FOLLOWED/TOTAL", then optional "key value" lines:
"late N" (calls signed with a key in its last sixteenth of life while a newer key
existed) and, in endpoint mode, "token-var NAME" (how the SDK got the token).

The Pod Identity cells (the profile chained from the EKS Pod Identity agent's
session) write "SDK-MODE-pod-identity" in the same format, for the clients and
modes in POD_IDENTITY; they are shown as their own rows, source "Pod Identity
agent", without a lag (the lag depends on the client and the mode, not on where
the profile's session comes from, and is measured once, with web identity).

In process and endpoint mode, "SDK-MODE-lag" holds "lag SECONDS" (or "lag none")
and "bound SECONDS": the wall time from `rolecall refresh` to the client's first
call signed with the new session, with one-hour sessions (the lag cells). It is
shown rounded to the minute, so that the table does not change from run to run
with the seconds a client's calls happen to fall on.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "target" / "sdk-matrix"
README = ROOT / "README.md"
START, END = "<!-- sdk-matrix:start -->", "<!-- sdk-matrix:end -->"

SDKS = [
    ("cli", "AWS CLI v1 (a new process per command)"),
    ("boto3", "boto3 / botocore (one client)"),
    ("js", "AWS SDK for JavaScript v3 (one client)"),
    ("rust", "AWS SDK for Rust (one client)"),
    ("go", "AWS SDK for Go v2, Debian's 1.17 (one client)"),
]
MODES = [("process", "process mode"), ("endpoint", "endpoint mode"), ("file", "file mode")]
# (result file suffix, the source column): where the profile's session comes from.
SOURCES = [("", "web identity"), ("-pod-identity", "Pod Identity agent")]
# The cells run with the Pod Identity source: the long-lived clients of issue 24.
POD_IDENTITY = {("boto3", "process"), ("boto3", "endpoint"), ("rust", "process"), ("rust", "endpoint")}
# The variable the matrix tests use unless a result file says otherwise.
DEFAULT_TOKEN_VAR = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"


POD_IDENTITY_NOTE = (
    "Source \"Pod Identity agent\": the profile is chained from the EKS Pod Identity\n"
    "agent's session (a fake agent's 30-second base sessions, the fake STS's\n"
    "16-second profile sessions); \"not run\": no Pod Identity cell for that mode.\n"
    "When a client signs with the new session after `rolecall refresh` depends on\n"
    "the client and the mode, not on the source: see the web identity rows."
)


def read(sdk: str, mode: str, source: str = "") -> tuple[str, str, dict[str, str]]:
    path = RESULTS / f"{sdk}-{mode}{source}"
    if not path.exists():
        sys.exit(f"no result for {sdk}/{mode}{source} in {RESULTS}: run the SDK matrix tests first (make sdk-matrix)")
    first, *rest = path.read_text().strip().splitlines()
    followed, total = first.split("/")
    extra = {}
    for line in rest:
        key, _, value = line.partition(" ")
        extra[key] = value
    return followed, total, extra


def lag(sdk: str, mode: str) -> str:
    path = RESULTS / f"{sdk}-{mode}-lag"
    if not path.exists():
        sys.exit(f"no lag result for {sdk}/{mode} in {RESULTS}: run the SDK matrix tests first (make sdk-matrix)")
    values = dict(line.partition(" ")[::2] for line in path.read_text().strip().splitlines())
    if values["lag"] == "none":
        return "never"
    seconds = int(values["lag"])
    if seconds > int(values["bound"]) + 5:
        sys.exit(f"{sdk}/{mode}: lag {seconds} s is over the bound of {values['bound']} s")
    if seconds < 60:
        return "under 1 min"
    return f"{(seconds + 30) // 60} min"


def cell(sdk: str, mode: str, source: str = "") -> str:
    if source and (sdk, mode) not in POD_IDENTITY:
        return "not run"
    followed, total, extra = read(sdk, mode, source)
    if followed == "0":
        return "does not follow (keeps the first keys)"
    text = f"follows ({followed}/{total} refreshes)" if followed == total else f"partly ({followed}/{total})"
    if extra.get("late", "0") != "0":
        text += ", late: signs with a key in its last seconds while a newer one exists"
    token_var = extra.get("token-var", DEFAULT_TOKEN_VAR)
    if token_var != DEFAULT_TOKEN_VAR:
        text += f", with `{token_var}`"
    if mode in ("process", "endpoint") and not source:
        text += f"; new session {lag(sdk, mode)} after `rolecall refresh`"
    return text


def table() -> str:
    lines = [
        "| client | source | " + " | ".join(m for _, m in MODES) + " |",
        "|---|---|" + "---|" * len(MODES),
    ]
    for source, source_label in SOURCES:
        for sdk, label in SDKS:
            if source and not any(s == sdk for s, _ in POD_IDENTITY):
                continue
            cells = " | ".join(cell(sdk, m, source) for m, _ in MODES)
            lines.append(f"| {label} | {source_label} | {cells} |")
    lines += ["", POD_IDENTITY_NOTE]
    return "\n".join(lines)


def main() -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if sys.argv[1:] == ["--write"]:
        README.write_text(new)
    elif sys.argv[1:] == ["--check"]:
        if new != text:
            sys.exit("README.md's SDK matrix does not match the test results: run `make sdk-matrix` and commit")
        print("README SDK matrix matches the test results")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
