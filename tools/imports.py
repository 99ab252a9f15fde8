"""Who imports whom in the project, read from the source: the one import reader behind
`tools/import_graph.py` (the picture) and `tests/test_layering.py` (the rules).

Every `import` / `from ... import` counts, at module level or inside a function (a lazy import is
still a dependency, and still closes a loop when it runs). Imports under `if TYPE_CHECKING:` never
run: they are kept apart (`runtime=False`), so the rules can look for loops among the imports that
run while the picture still shows every dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgecore", "gateway", "gpu_backend", "wasm_plugins")


def module_name(path: Path) -> str:
    """`gateway/config/loader.py` -> `gateway.config.loader` (a package's `__init__` is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _statements(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it runs (False: under `if TYPE_CHECKING:`)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    todo: list[tuple[ast.AST, bool]] = [(tree, True)]
    while todo:
        node, runs = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, runs))
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend((child, False) for child in node.body)
            todo.extend((child, runs) for child in node.orelse)
            continue
        todo.extend((child, runs) for child in ast.iter_child_nodes(node))
    return found


def imports(path: Path) -> list[tuple[str, bool]]:
    """(dotted name, runs) for each name `path` imports: modules, and for `from pkg import x` both
    `pkg` and `pkg.x` (which of them is a module is decided against the project's modules)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[str, bool]] = []
    for node, runs in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, runs) for alias in node.names)
            continue
        base = package[: len(package) - (node.level - 1)] if node.level else []
        target = ".".join([*base, node.module] if node.module else base)
        out.append((target, runs))
        out.extend((f"{target}.{alias.name}", runs) for alias in node.names)
    return out


def module_graph(runtime_only: bool = False, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports (only those that run, with `runtime_only`)."""
    found: dict[str, set[str]] = {}
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found[module_name(path)] = {name for name, runs in imports(path) if runs or not runtime_only}
    modules = set(found)
    return {name: {m for m in deps if m in modules} - {name} for name, deps in found.items()}


def collapse(graph: dict[str, set[str]], node: str | None = None) -> dict[tuple[str, str], set[str]]:
    """Edges between groups of modules (by default the top-level package), each with the module
    imports behind it. `node` names a module's group; a module whose group is None is left out."""
    group = (lambda m: m.split(".")[0]) if node is None else (lambda m: _group(m, node))
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, deps in graph.items():
        for dep in deps:
            a, b = group(name), group(dep)
            if a is not None and b is not None and a != b:
                edges[(a, b)].add(f"{name} -> {dep}")
    return edges


def _group(module: str, prefix: str) -> str | None:
    """`gateway.config.loader` -> `gateway.config` for prefix `gateway`; outside it: None."""
    parts = module.split(".")
    if parts[0] != prefix:
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else None


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted({x for e in succ.items() for x in (e[0], *e[1])}):
        if v not in index:
            visit(v)
    return sorted(out)


def module_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return [(a, b) for a, deps in graph.items() for b in deps]
