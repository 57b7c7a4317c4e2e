#!/usr/bin/env python3
"""Renders the README's SDK matrix from the results the SDK matrix tests
(tests/sdk_matrix.rs) leave in target/sdk-matrix/.

  scripts/sdk_matrix.py --write   replace the table in README.md
  scripts/sdk_matrix.py --check   fail if README.md does not show these results
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
]
MODES = [("process", "process mode"), ("endpoint", "endpoint mode"), ("file", "file mode")]


def cell(sdk: str, mode: str) -> str:
    path = RESULTS / f"{sdk}-{mode}"
    if not path.exists():
        sys.exit(f"no result for {sdk}/{mode} in {RESULTS}: run the SDK matrix tests first (make sdk-matrix)")
    followed, total = path.read_text().strip().split("/")
    if followed == total:
        return f"follows ({followed}/{total} refreshes)"
    if followed == "0":
        return "does not follow (keeps the first keys)"
    return f"partly ({followed}/{total})"


def table() -> str:
    lines = [
        "| client | " + " | ".join(m for _, m in MODES) + " |",
        "|---|" + "---|" * len(MODES),
    ]
    for sdk, label in SDKS:
        lines.append(f"| {label} | " + " | ".join(cell(sdk, m) for m, _ in MODES) + " |")
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
