#!/usr/bin/env python3
"""The house check: the shape of src/ that docs/ARCHITECTURE.md promises.

Reads src/**/*.rs (production code only: `#[cfg(test)]` items and the files
they declare, like src/foo/tests.rs, are counted apart) and fails when

  (a) the top-level modules import each other in a cycle;
  (b) a module imports one on a higher layer than its own: the layers are
      the table of docs/ARCHITECTURE.md's "Layers" section, the one source
      (every module of src/ must have its row, and every row a module);
  (c) a function is longer than MAX_FN_LINES lines (signature to closing
      brace) or a file has more than MAX_FILE_LINES production lines.

It prints the configuration's production lines for the record. A module
is `foo` for src/foo.rs and everything under src/foo/; src/lib.rs is
`lib` and src/main.rs `main`. An import is a `crate::foo` path anywhere
in production code (a `use` line or inline), a `super::` path that leaves
the top-level module, and in main.rs a `rolecall::foo` path. Comments
(doc links included), strings and character literals are not read.

    python3 scripts/house.py [--root DIR]
    python3 scripts/house.py --edges     every import between modules, with where
    python3 scripts/house.py --selftest

Python 3.11 standard library only; runs in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import bisect
import io
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_FN_LINES = 80
MAX_FILE_LINES = 400
# The library's name, as main.rs calls it.
CRATE = "rolecall"
# The module whose production lines are printed for the record.
RECORD = "config"
DOC = Path("docs/ARCHITECTURE.md")
LAYERS_HEADING = "## Layers"


# ---------------------------------------------------------------- lexing


LEXEME = re.compile(r"""[/"']""")
BLOCK_COMMENT = re.compile(r"/\*|\*/")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
RAW_PREFIX = re.compile(r"(?:^|[^\w])b?r(#*)$")
CHAR = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")
NOT_NEWLINE = re.compile(r"[^\n]")


def mask(text: str) -> str:
    """`text` with comments, string and character literals blanked (newlines
    kept), so that braces, `fn` and `crate::` are only ever code."""
    pieces: list[str] = []
    done = at = 0
    while m := LEXEME.search(text, at):
        start, c = m.start(), m.group()
        if text.startswith("//", start):
            end = text.find("\n", start)
        elif text.startswith("/*", start):
            depth, end = 0, -1
            for b in BLOCK_COMMENT.finditer(text, start):
                depth += 1 if b.group() == "/*" else -1
                if depth == 0:
                    end = b.end()
                    break
        elif c == '"' and (raw := RAW_PREFIX.search(text, max(0, start - 40), start)):
            # A raw string: r"..", r#".."#, br"..".
            hashes = raw.group(1)
            end = text.find('"' + hashes, start + 1)
            end = end + 1 + len(hashes) if end >= 0 else -1
        elif c == '"':
            s = STRING.match(text, start)
            end = s.end() if s else -1
        elif c == "'" and (ch := CHAR.match(text, start)):
            # A character literal ('a', '\n', '{'), not a lifetime ('a).
            end = ch.end()
        else:
            at = start + 1
            continue
        end = len(text) if end < 0 else end
        lexeme = text[start:end]
        blank = NOT_NEWLINE.sub(" ", lexeme) if "\n" in lexeme else " " * len(lexeme)
        pieces += [text[done:start], blank]
        done = at = end
    pieces.append(text[done:])
    return "".join(pieces)


def matching_braces(code: str) -> dict[int, int]:
    """Position of each `{` to that of its `}` (in masked code)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"[{}]", code):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.start()
    return pairs


ITEM_PUNCTUATION = re.compile(r"[()\[\];{]")


def item_end(code: str, start: int, braces: dict[int, int]) -> int:
    """The end of the item starting at `start`: its `;` or the `}` closing
    its body (brackets and parentheses skipped, so `[u8; 4]` is no end)."""
    depth = 0
    for m in ITEM_PUNCTUATION.finditer(code, start):
        c = m.group()
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth <= 0 and c == ";":
            return m.start()
        elif depth <= 0 and c == "{":
            return braces.get(m.start(), len(code) - 1)
    return len(code) - 1


def bracket_end(code: str, start: int) -> int:
    """The `]` closing the `[` at `start`."""
    depth = 0
    for i in range(start, len(code)):
        depth += {"[": 1, "]": -1}.get(code[i], 0)
        if depth == 0:
            return i
    return len(code) - 1


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
ATTRIBUTE = re.compile(r"\s*#\s*\[")
MOD_DECL = re.compile(r"\bmod\s+(\w+)\s*;")
FN = re.compile(r"\bfn\s+(\w+)")


@dataclass
class Source:
    path: Path  # relative to the root
    text: str
    code: str = ""  # the text, masked
    braces: dict[int, int] = field(default_factory=dict)
    test_spans: list[tuple[int, int]] = field(default_factory=list)
    line_starts: list[int] = field(default_factory=list)
    is_test: bool = False  # the whole file is a test module

    def __post_init__(self) -> None:
        self.code = mask(self.text)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        self.braces = braces = matching_braces(self.code)
        for m in CFG_TEST.finditer(self.code):
            start = m.end()
            while a := ATTRIBUTE.match(self.code, start):
                start = bracket_end(self.code, a.end() - 1) + 1
            self.test_spans.append((m.start(), item_end(self.code, start, braces)))

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def in_test(self, pos: int) -> bool:
        return self.is_test or any(a <= pos <= b for a, b in self.test_spans)

    def lines(self) -> int:
        return self.text.count("\n") + (0 if self.text.endswith("\n") or not self.text else 1)

    def production_lines(self) -> int:
        if self.is_test:
            return 0
        test = set()
        for a, b in self.test_spans:
            test.update(range(self.line(a), self.line(b) + 1))
        return self.lines() - len(test)


# ---------------------------------------------------------------- the tree


def module_of(rel: Path) -> str:
    """The top-level module of a path under src/."""
    parts = rel.parts[1:]
    return parts[0][:-3] if len(parts) == 1 else parts[0]


def module_path(rel: Path) -> list[str]:
    """The module path of a file (src/foo/bar.rs: foo, bar; lib.rs: none)."""
    parts = list(rel.parts[1:])
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "mod":
        parts.pop()
    return [] if parts in (["lib"], ["main"]) else parts


def children_dir(rel: Path) -> Path:
    if rel.name in ("lib.rs", "main.rs", "mod.rs"):
        return rel.parent
    return rel.parent / rel.stem


def read_tree(root: Path) -> dict[Path, Source]:
    files = {
        p.relative_to(root): Source(p.relative_to(root), p.read_text(encoding="utf-8"))
        for p in sorted((root / "src").rglob("*.rs"))
    }
    # Files declared by `#[cfg(test)] mod x;`, and everything under them.
    todo = [p for p in files if p.name in ("lib.rs", "main.rs") and len(p.parts) == 2]
    seen = set(todo)
    while todo:
        parent = files[todo.pop()]
        for m in MOD_DECL.finditer(parent.code):
            d = children_dir(parent.path)
            for child in (d / f"{m.group(1)}.rs", d / m.group(1) / "mod.rs"):
                if child in files and child not in seen:
                    seen.add(child)
                    files[child].is_test = parent.is_test or parent.in_test(m.start())
                    todo.append(child)
    return files


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the first sighting


CRATE_PATH = re.compile(r"crate::(\w+|\{)")
MAIN_PATH = re.compile(CRATE + r"::(\w+|\{)")
SUPER_PATH = re.compile(r"((?:super::)+)(\w+|\{)")


def path_start(code: str, pos: int) -> bool:
    """Whether a path begins at `pos` (not `$crate::`, `x::crate::`, `my_crate::`)."""
    return pos == 0 or not (code[pos - 1].isalnum() or code[pos - 1] in "_$:")


def group_heads(code: str, brace: int, braces: dict[int, int]) -> list[str]:
    """The first name of each path in `{a::b, c, d::{e}}`."""
    inner = code[brace + 1 : braces.get(brace, len(code))]
    heads, depth, part = [], 0, []
    for c in inner + ",":
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            m = re.match(r"\s*(\w+)", "".join(part))
            if m:
                heads.append(m.group(1))
            part = []
        else:
            part.append(c)
    return heads


def imports(files: dict[Path, Source], modules: set[str]) -> dict[tuple[str, str], Edge]:
    edges: dict[tuple[str, str], Edge] = {}

    def add(src: Source, pos: int, head: str) -> None:
        source = module_of(src.path)
        target = head if head in modules else "lib"
        if target != source and (source, target) not in edges:
            edges[(source, target)] = Edge(source, target, f"{src.path}:{src.line(pos)}")

    def heads(src: Source, m: re.Match[str], group: int) -> list[str]:
        if m.group(group) == "{":
            return group_heads(src.code, m.end(group) - 1, src.braces)
        return [m.group(group)]

    for src in files.values():
        if src.is_test:
            continue
        main = module_of(src.path) == "main"
        path = module_path(src.path)
        for m in (MAIN_PATH if main else CRATE_PATH).finditer(src.code):
            if not path_start(src.code, m.start()) or src.in_test(m.start()):
                continue
            for h in heads(src, m, 1):
                add(src, m.start(), h)
        for m in SUPER_PATH.finditer(src.code):
            ups = m.group(1).count("super")
            if main or ups < len(path) or not path_start(src.code, m.start()):
                continue  # inside the module, or not a path
            if src.in_test(m.start()):
                continue
            for h in heads(src, m, 2):
                add(src, m.start(), h)
    return edges


def cycles(modules: set[str], edges: dict[tuple[str, str], Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    out_of: dict[str, list[str]] = {m: [] for m in modules}
    for a, b in edges:
        out_of.setdefault(a, []).append(b)
        out_of.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(out_of[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(out_of):
        if v not in index:
            visit(v)
    return sorted(found)


# ---------------------------------------------------------------- layers


def read_layers(doc: Path) -> tuple[dict[str, int], list[str]]:
    """The `| layer | module | what it is |` rows of the doc's Layers section."""
    layers: dict[str, int] = {}
    problems: list[str] = []
    if not doc.is_file():
        return layers, [f"{doc}: missing (the layers are its table)"]
    section = False
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            section = line.strip() == LAYERS_HEADING
            continue
        m = re.match(r"\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|", line) if section else None
        if m:
            if m.group(2) in layers:
                problems.append(f"{doc}:{n}: `{m.group(2)}` has two rows")
            layers[m.group(2)] = int(m.group(1))
    if not layers:
        problems.append(f"{doc}: no `| layer | `module` | ... |` rows under {LAYERS_HEADING!r}")
    return layers, problems


# ---------------------------------------------------------------- sizes


def long_functions(files: dict[Path, Source]) -> list[tuple[str, int]]:
    found = []
    for src in files.values():
        if src.is_test:
            continue
        for m in FN.finditer(src.code):
            if src.in_test(m.start()):
                continue
            end = item_end(src.code, m.end(), src.braces)
            if src.code[end] != "}":
                continue  # a declaration without a body
            length = src.line(end) - src.line(m.start()) + 1
            if length > MAX_FN_LINES:
                found.append((f"{src.path}:{src.line(m.start())}: fn {m.group(1)}", length))
    return found


# ---------------------------------------------------------------- the check


def check(root: Path, out=sys.stdout) -> int:
    """Prints every finding; returns how many there are."""
    files = read_tree(root)
    modules = {module_of(p) for p in files}
    edges = imports(files, modules)
    layers, problems = read_layers(root / DOC)

    for comp in cycles(modules, edges):
        problems.append(f"cycle among {len(comp)} modules: {', '.join(comp)}")
        for (a, b), e in sorted(edges.items()):
            if a in comp and b in comp:
                problems.append(f"  {a} -> {b} ({e.where})")
    if layers:
        for m in sorted(modules - layers.keys()):
            problems.append(f"{DOC}: module `{m}` has no row in the layers table")
        for m in sorted(layers.keys() - modules):
            problems.append(f"{DOC}: the layers table names `{m}`, which src/ does not have")
        for (a, b), e in sorted(edges.items()):
            if a in layers and b in layers and layers[b] > layers[a]:
                problems.append(
                    f"{e.where}: {a} (layer {layers[a]}) imports {b} (layer {layers[b]}), a higher layer"
                )
    for where, length in long_functions(files):
        problems.append(f"{where} is {length} lines (at most {MAX_FN_LINES})")
    for path, src in sorted(files.items()):
        if (n := src.production_lines()) > MAX_FILE_LINES:
            problems.append(f"{path}:1: {n} production lines (at most {MAX_FILE_LINES})")

    for p in problems:
        print(p, file=out)
    record = sum(s.production_lines() for p, s in files.items() if module_of(p) == RECORD)
    total = sum(s.production_lines() for s in files.values())
    print(
        f"house: {len(files)} files, {len(modules)} modules, {len(edges)} imports; "
        f"{RECORD}: {record} of {total} production lines; "
        f"{len(problems) and 'FAILED' or 'ok'} ({len(problems)} findings)",
        file=out,
    )
    return len(problems)


# ---------------------------------------------------------------- self-test


def selftest() -> int:
    """The check on a synthetic tree holding each fault once, then on the
    same tree mended: it must find exactly these faults, then none."""
    fn80 = "fn fits() {\n" + "    let _ = 1;\n" * 78 + "}\n"
    fn81 = "fn too_long() {\n" + "    let _ = 1;\n" * 79 + "}\n"
    doc = (
        "# Architecture\n\n## Layers\n\n| layer | module | what |\n|---|---|---|\n"
        "| 1 | `low` | leaf |\n| 1 | `ring` | leaf |\n| 2 | `high` | adapter |\n"
        "| 3 | `lib` | top |\n| 3 | `main` | binary |\n\n## Other\n\n| 9 | `stray` | no |\n"
    )
    faulty = {
        "src/lib.rs": "pub mod high;\npub mod low;\npub mod ring;\npub struct Options;\n",
        "src/main.rs": "use rolecall::high::Adapter;\nfn main() {}\n",
        # An upward import (low -> high) and a cycle (low <-> ring, one side
        # grouped, the other through `super::`).
        "src/low.rs": (
            "use crate::high::Adapter;\nuse crate::{ring::{A, B}, Options};\n"
            '/// Not code: [`crate::main`] and "{" in a doc line.\nconst S: &str = "crate::main {";\n'
            "const C: char = '{';\nfn f<'a>(x: &'a str) -> [u8; 4] { let _ = x; [0; 4] }\n"
            + fn80
            + "#[cfg(test)]\nmod tests {\n    use crate::high::Adapter;\n"
            + fn81.replace("too_long", "long_test")
            + "}\n"
        ),
        "src/ring.rs": "mod inner;\n#[cfg(test)]\n#[allow(dead_code)]\nmod tests;\n",
        "src/ring/inner.rs": "pub fn g() { super::super::low::f(\"\"); }\n" + fn81,
        "src/ring/tests.rs": "use crate::high::Adapter;\n" + fn81.replace("too_long", "t") * 6,
        "src/high.rs": "pub struct Adapter;\nfn h() {}\n" + "// filler\n" * 400,
        "src/unlisted.rs": "",
    }
    want = [
        "cycle among 2 modules: low, ring",
        "  low -> ring (src/low.rs:2)",
        "  ring -> low (src/ring/inner.rs:1)",
        "docs/ARCHITECTURE.md: module `unlisted` has no row in the layers table",
        "src/low.rs:1: low (layer 1) imports high (layer 2), a higher layer",
        "src/low.rs:2: low (layer 1) imports lib (layer 3), a higher layer",
        "src/ring/inner.rs:2: fn too_long is 81 lines (at most 80)",
        "src/high.rs:1: 402 production lines (at most 400)",
    ]
    mended = dict(faulty)
    del mended["src/unlisted.rs"]
    mended["src/low.rs"] = faulty["src/low.rs"].replace("use crate::high::Adapter;\n", "", 1)
    mended["src/low.rs"] = mended["src/low.rs"].replace(", Options", "").replace("ring::{A, B}", "")
    mended["src/ring/inner.rs"] = "pub fn g() {}\n" + fn80
    mended["src/high.rs"] = faulty["src/high.rs"].replace("// filler\n" * 400, "// filler\n" * 398)

    failed = 0
    for name, tree, expected in (("faulty", faulty, want), ("mended", mended, [])):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            for rel, text in {**tree, str(DOC): doc}.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_text(text, encoding="utf-8")

            buf = io.StringIO()
            check(root, buf)
            got = buf.getvalue().splitlines()
            findings, summary = got[:-1], got[-1]
            if findings != expected:
                failed += 1
                print(f"selftest ({name} tree): expected", *expected, "got", *got, sep="\n  ")
            elif "config: 0 of" not in summary:
                failed += 1
                print(f"selftest ({name} tree): summary {summary!r}")
    print("house selftest:", "FAILED" if failed else "ok")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--selftest", action="store_true", help="check the check on synthetic trees")
    ap.add_argument("--edges", action="store_true", help="list the imports between modules")
    args = ap.parse_args()
    if args.edges:
        files = read_tree(args.root)
        layers, _ = read_layers(args.root / DOC)
        for (a, b), e in sorted(imports(files, {module_of(p) for p in files}).items()):
            print(f"{a} ({layers.get(a, '?')}) -> {b} ({layers.get(b, '?')})  {e.where}")
        return 0
    started = time.monotonic()
    failed = selftest() if args.selftest else check(args.root)
    if time.monotonic() - started > 1:
        print(f"house: took {time.monotonic() - started:.2f} s (should be well under 1 s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
