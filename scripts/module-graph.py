#!/usr/bin/env python3
"""Prints the import graph between a crate's top-level modules and fails on a cycle, there
or between the sibling submodules of any module.

Usage: scripts/module-graph.py [--dot] CRATE_SRC_DIR...

A top-level module is `src/NAME.rs` with its `src/NAME/` subtree. An edge A -> B means code
in A names `crate::B` (in a `use` or a path). Test code is left out: files named `tests.rs`,
`test_support.rs` or `test_*.rs`, and everything after a `#[cfg(test)]` line. `lib.rs` and
`main.rs` are the crate root, which may name anything. Inside a module, the same rule holds
for its children (`src/a/b.rs` and `src/a/c.rs`, reached as `crate::a::b`, `super::b` or
`self::b`): a parent may use its children and they its items, but siblings must not import
each other in a circle.

Exit status 1 when a graph has a cycle (each strongly connected component is printed).
"""

import re
import sys
from pathlib import Path

ROOTS = {"lib", "main"}
TEST_FILE = re.compile(r"^(tests|test_support|test_\w+)\.rs$")
# `crate::name` (path or use), and the names inside `use crate::{a, b::c}`.
CRATE_PATH = re.compile(r"\bcrate::(\w+)")
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def production_text(path: Path) -> str:
    text = path.read_text()
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def strip_comments(text: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def graph(src: Path) -> dict[str, set[str]]:
    modules = {p.stem for p in src.glob("*.rs") if p.stem not in ROOTS}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module in modules:
        files = [src / f"{module}.rs", *sorted((src / module).rglob("*.rs"))]
        for file in files:
            if not file.exists() or TEST_FILE.match(file.name):
                continue
            text = strip_comments(production_text(file))
            named = set(CRATE_PATH.findall(text))
            for group in CRATE_GROUP.findall(text):
                named |= {part.strip().split("::")[0] for part in group.split(",")}
            edges[module] |= {n for n in named if n in modules and n != module}
    return edges


REEXPORT = re.compile(r"\bpub(?:\(crate\))? use (?:self::)?(\w+)::(\{[^}]*\}|\w+)")
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")


def module_path(src: Path, file: Path) -> tuple[str, ...]:
    parts = file.relative_to(src).with_suffix("").parts
    if parts[-1] == "mod":
        parts = parts[:-1]
    return () if parts in (("lib",), ("main",)) else tuple(parts)


def nested_graphs(src: Path) -> dict[tuple[str, ...], dict[str, set[str]]]:
    """For every module with children: the import graph between its children."""
    files = [
        f for f in sorted(src.rglob("*.rs")) if not TEST_FILE.match(f.name)
    ]
    paths = {module_path(src, f): f for f in files}
    graphs: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for path in paths:
        if len(path) >= 2:
            graphs.setdefault(path[:-1], {}).setdefault(path[-1], set())
    # `pub use child::{A, B}` in a module: `module::A` is really `module::child::A`.
    reexported: dict[tuple[tuple[str, ...], str], str] = {}
    for path, file in paths.items():
        children = graphs.get(path, {})
        for child, items in REEXPORT.findall(strip_comments(production_text(file))):
            if child in children:
                for item in re.split(r"[{},\s]+", items):
                    if item and item != "self":
                        reexported[(path, item)] = child
    for path, file in paths.items():
        text = strip_comments(production_text(file))
        for reference in PATH.findall(text):
            segments = reference.split("::")
            if segments[0] == "crate":
                target = tuple(segments[1:])
            else:
                base = list(path)
                while segments and segments[0] in ("super", "self"):
                    if segments.pop(0) == "super":
                        base = base[:-1]
                target = tuple(base + segments)
            for parent, children in graphs.items():
                depth = len(parent)
                if (
                    len(target) > depth
                    and target[:depth] == parent
                    and (parent, target[depth]) in reexported
                ):
                    target = (*parent, reexported[(parent, target[depth])])
                if (
                    len(path) > depth
                    and len(target) > depth
                    and path[:depth] == parent
                    and target[:depth] == parent
                    and path[depth] != target[depth]
                    and target[depth] in children
                ):
                    children[path[depth]].add(target[depth])
    return {parent: g for parent, g in graphs.items() if parent}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    args = sys.argv[1:]
    dot = "--dot" in args
    dirs = [Path(a) for a in args if a != "--dot"]
    if not dirs:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for src in dirs:
        edges = graph(src)
        if dot:
            print(f'digraph "{src}" {{')
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f'  "{a}" -> "{b}";')
            print("}")
        else:
            print(f"{src}:")
            for a in sorted(edges):
                print(f"  {a} -> {', '.join(sorted(edges[a])) or '(nothing)'}")
        for component in cycles(edges):
            failed = True
            print(f"{src}: import cycle between {', '.join(component)}", file=sys.stderr)
        for parent, children in sorted(nested_graphs(src).items()):
            for component in cycles(children):
                failed = True
                inside = "::".join(parent)
                print(
                    f"{src}: import cycle inside {inside}: {', '.join(component)}",
                    file=sys.stderr,
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
