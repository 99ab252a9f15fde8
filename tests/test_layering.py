"""Who imports whom, read from the source by `tools/imports.py` (the reader `tools/import_graph.py`
draws with): every import statement counts, inside functions too; loops are looked for among the
imports that run (those under `if TYPE_CHECKING:` never do). The layering docs/architecture.md draws:

    gateway -> wasm_plugins -> edgecore,  gateway -> gpu_backend -> edgecore (the demo runs a backend),
    gateway -> edgecore

and inside `gateway`, no loop between its packages (and top-level modules), nor between modules.

`python tests/test_layering.py` prints the package edges and the modules behind each."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python tests/test_layering.py` from anywhere

from tools.imports import PACKAGES, _statements, collapse, cycles, imports, module_edges, module_graph  # noqa: E402

ALLOWED = {"gateway": {"edgecore", "gpu_backend", "wasm_plugins"}, "wasm_plugins": {"edgecore"},
           "gpu_backend": {"edgecore"}, "edgecore": set()}


def test_packages_import_only_downwards() -> None:
    edges = collapse(module_graph())
    wrong = {f"{a} -> {b}": sorted(why)[:3] for (a, b), why in edges.items() if b not in ALLOWED[a]}
    assert wrong == {}


def test_no_module_import_cycle() -> None:
    assert cycles(module_edges(module_graph(runtime_only=True))) == []


def test_the_gateway_packages_have_no_loop() -> None:
    """`gateway.config`, `gateway.ingress`, ..., and each top-level module (`gateway.app`) as one node."""
    edges = collapse(module_graph(runtime_only=True), "gateway")
    loops = cycles(edges)
    assert loops == [], {" ".join(loop): sorted(w for (a, b), why in edges.items()
                                                if a in loop and b in loop for w in why) for loop in loops}


def test_only_the_cli_imports_the_client_commands() -> None:
    graph = module_graph()
    importers = {m for m, deps in graph.items() if not m.startswith("gateway.client")
                 and any(d.startswith("gateway.client") for d in deps)}
    assert importers == {"gateway.cli"}


def test_benchmarks_and_testkit_import_nothing_from_the_tests() -> None:
    found = {f"{path.relative_to(ROOT)}: {name}" for folder in ("bench", "testkit")
             for path in (ROOT / folder).rglob("*.py") for name, _ in imports(path)
             if name == "tests" or name.startswith("tests.")}
    assert found == set()


def test_every_project_name_imported_exists() -> None:
    """Each `from <project module> import name`, lazy ones too, names something that module has: a
    function-level import is only run when its code path is (a moved `load_config` once broke a bench
    that no test runs). Checked by importing, so re-exports count."""
    import importlib

    missing = []
    for folder in (*PACKAGES, "bench", "testkit", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node, _ in _statements(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                if node.module.split(".")[0] not in (*PACKAGES, "bench", "testkit", "tools"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and importlib.util.find_spec(
                            f"{node.module}.{alias.name}") is None:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []


def test_the_reader_counts_lazy_imports_and_sets_typing_ones_apart() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
                     "def f():\n    import b\n")
    runs = {node.names[0].name: flag for node, flag in _statements(tree) if isinstance(node, ast.Import)}
    assert runs == {"a": False, "b": True}


if __name__ == "__main__":
    g = module_graph()
    for (a, b), why in sorted(collapse(g).items()):
        print(f"{a} -> {b}  ({len(why)} imports)" + ("" if b in ALLOWED[a] else "  NOT ALLOWED"))
        for line in sorted(why):
            print("    " + line)
    runtime = module_graph(runtime_only=True)
    print("module cycles (imports that run):", cycles(module_edges(runtime)) or "none")
    print("gateway package loops (imports that run):", cycles(collapse(runtime, "gateway")) or "none")
