"""Who imports whom among the top-level packages, read from the source (every import statement,
lazy ones and TYPE_CHECKING ones included): the layering docs/architecture.md draws. Cycles are
looked for among the imports that run (TYPE_CHECKING ones left out).

    gateway -> wasm_plugins -> edgecore,  gateway -> gpu_backend -> edgecore (the demo runs a backend),
    gateway -> edgecore

`python tests/test_layering.py` prints the package edges and the modules behind each."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgecore", "gateway", "gpu_backend", "wasm_plugins")
ALLOWED = {"gateway": {"edgecore", "gpu_backend", "wasm_plugins"}, "wasm_plugins": {"edgecore"}, "gpu_backend": {"edgecore"},
           "edgecore": set()}


def _imports(tree: ast.AST, typing_too: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in `tree`; without `typing_too`, those under `if TYPE_CHECKING:` left out
    (they never run, so they cannot make an import cycle)."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not typing_too and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def module_imports(typing_too: bool = True) -> dict[str, set[str]]:
    """module name -> the project modules it imports (with `typing_too`, type-checking-only ones too)."""
    graph: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found: set[str] = set()
            for node in _imports(ast.parse(path.read_text(), str(path)), typing_too):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            graph[name] = {m for m in found if m.split(".")[0] in PACKAGES}
    modules = set(graph)
    # `from pkg import name` names a module only when pkg.name is one
    return {name: {m for m in deps if m in modules} - {name} for name, deps in graph.items()}


def package_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], set[str]]:
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, deps in graph.items():
        for dep in deps:
            a, b = name.split(".")[0], dep.split(".")[0]
            if a != b:
                edges[(a, b)].add(f"{name} -> {dep}")
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_packages_import_only_downwards() -> None:
    edges = package_edges(module_imports())
    wrong = {f"{a} -> {b}": sorted(why)[:3] for (a, b), why in edges.items() if b not in ALLOWED[a]}
    assert wrong == {}


def test_the_plugin_host_has_no_import_cycle() -> None:
    graph = module_imports(typing_too=False)
    host = {k: {d for d in v if d.startswith(("wasm_plugins", "edgecore"))}
            for k, v in graph.items() if k.startswith(("wasm_plugins", "edgecore"))}
    assert cycles(host) == []


if __name__ == "__main__":
    g = module_imports()
    for (a, b), why in sorted(package_edges(g).items()):
        print(f"{a} -> {b}  ({len(why)} imports)" + ("" if b in ALLOWED[a] else "  NOT ALLOWED"))
        for line in sorted(why):
            print("    " + line)
    print("module cycles (imports that run):", cycles(module_imports(typing_too=False)) or "none")
