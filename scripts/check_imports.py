#!/usr/bin/env python3
"""Check the imports inside the ci_magic package: no cycles, and each room imports only the rooms below it.

Parses every module of ``ci_magic/`` with :mod:`ast` (nothing is imported or executed), builds the graph of
intra-package imports — module level *and* inside functions, since a lazy import still closes a cycle the
moment it runs — and prints each cycle. Imports under ``if TYPE_CHECKING:`` never run, so they are left out
(``--type-checking`` counts them too). An edge goes to the module named, or to the package when a
``from package import name`` names an attribute rather than a submodule; importing ``a.b`` is not counted as
importing ``a`` (every module would then depend on the package root).

The rooms (``ci_magic/<folder>``) and what each may import are the table :data:`ALLOWED`: the flow of an ask
read bottom-up — the vocabulary (``core``), what it describes, runs and asks (``context``, ``sandbox``,
``local``, ``providers``, ``observe``), the ask itself (``engine``), and the front ends on top. Modules at the
package root (``cli.py``, ``extension.py``: the composition roots) may import every room.

Usage: ``python scripts/check_imports.py [--type-checking] [--root DIR]``. Exit 0 when both hold, else 1.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "ci_magic"

#: Room → the other rooms it may import. A room missing here is a composition root (it may import anything);
#: ``_version`` is open to all.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "context": {"core"},
    "sandbox": {"core"},
    "local": {"core"},
    "providers": {"core", "local"},
    "observe": {"core", "providers"},
    "engine": {"core", "context", "sandbox", "providers", "observe"},
    "evaluation": {"core", "engine", "providers"},
    "notebook": {"core", "context", "engine", "observe", "providers"},
    "reproduce": {"core", "engine", "notebook", "sandbox"},
    "agents": {"core", "engine", "notebook", "observe", "reproduce"},
}
OPEN = {"_version"}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file, for every module under ``root`` (the package directory)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, skipping ``if TYPE_CHECKING:`` bodies unless asked."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def edges_of(module: str, path: Path, modules: dict[str, Path], type_checking: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(tree, type_checking):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    resolved = _resolve(alias.name, modules)
                    if resolved:
                        targets.add(resolved)
            continue
        if node.level:
            base_parts = package.split(".")
            if node.level > 1:
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts)
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            resolved = submodule if submodule in modules else _resolve(source, modules)
            if resolved:
                targets.add(resolved)
    targets.discard(module)
    return targets


def graph(root: Path, type_checking: bool = False) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: edges_of(name, path, modules, type_checking) for name, path in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Cycles among the modules: for every strongly connected component with more than one module (Tarjan),
    the shortest cycle through each of its modules (BFS), without repeats."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(g) + 100))
    for v in sorted(g):
        if v not in index:
            connect(v)
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for component in sorted(components):
        for start in component:  # the shortest cycle through each member: every module of the knot is named
            cycle = _shortest_cycle(g, set(component), start)
            body = cycle[:-1]
            first = body.index(min(body))
            key = tuple(body[first:] + body[:first])
            if key not in seen:
                seen.add(key)
                found.append([*key, key[0]])
    return found


def _shortest_cycle(g: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(g[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return [start]


def room(module: str) -> str:
    """``ci_magic.engine.loop`` → ``engine``; a module at the package root is its own room (``cli``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(g: dict[str, set[str]], allowed: dict[str, set[str]] = ALLOWED) -> list[str]:
    """Each import that goes from a room to one it may not import, as ``a -> b (room a may import …)``."""
    found = []
    for source in sorted(g):
        here = room(source)
        if here not in allowed:
            continue
        for target in sorted(g[source]):
            there = room(target)
            if there in (here, "") or there in OPEN or there in allowed[here]:
                continue
            may = ", ".join(sorted(allowed[here])) or "no other room"
            found.append(f"{source} -> {target} ({here} may import {may})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent / PACKAGE))
    parser.add_argument("--type-checking", action="store_true", help="count `if TYPE_CHECKING:` imports")
    args = parser.parse_args(argv)
    g = graph(Path(args.root), args.type_checking)
    found = cycles(g)
    for cycle in found:
        print("import cycle: " + " -> ".join(cycle))
    upward = layer_violations(g)
    for line in upward:
        print("import against the layers: " + line)
    if found or upward:
        print(
            f"{len(found)} import cycle(s) and {len(upward)} import(s) against the layers among {len(g)} modules."
        )
        return 1
    print(
        f"no import cycles and none against the layers among {len(g)} modules "
        f"({sum(len(e) for e in g.values())} imports)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
