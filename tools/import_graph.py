"""Print who imports whom between the project's packages (docs/architecture.md, "Import graph").

Boxes: `edgecore`, `wasm_plugins`, `gpu_backend`, and inside `gateway` each subpackage and each
top-level module. Every import counts (`tools/imports.py`, the reader `tests/test_layering.py` uses):
inside functions too, and under `TYPE_CHECKING` (marked `t`: a dependency for the type checker only).
Run: `python tools/import_graph.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python tools/import_graph.py`

from tools.imports import cycles, module_graph  # noqa: E402


def box(module: str) -> str:
    """The box a module is drawn in: a top-level package, or `gateway/<subpackage or module>`."""
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) == 1:
        return parts[0]
    return f"gateway/{parts[1]}"


def boxes(runtime_only: bool) -> dict[tuple[str, str], set[str]]:
    """Edges between boxes, each with the module imports behind it."""
    graph = module_graph(runtime_only=runtime_only)
    edges: dict[tuple[str, str], set[str]] = {}
    for module, deps in graph.items():
        for dep in deps:
            a, b = box(module), box(dep)
            if a != b and dep != "gateway":  # `from gateway import metrics` names a module, not the package
                edges.setdefault((a, b), set()).add(f"{module} -> {dep}")
    return edges


def main() -> int:
    every = boxes(runtime_only=False)
    running = boxes(runtime_only=True)
    for src in sorted({s for s, _ in every}):
        targets = sorted((d, len(why), (src, d) not in running) for (s, d), why in every.items() if s == src)
        print(f"{src:24} -> " + ", ".join(f"{d} ({n}{' t' if typing else ''})" for d, n, typing in targets))
    loops = cycles(running)
    print("\nloops among imports that run:", "; ".join(" ".join(loop) for loop in loops) or "none")
    print("loops counting TYPE_CHECKING imports:", "; ".join(" ".join(loop) for loop in cycles(every)) or "none")
    leaves = sorted({d for _, d in every} - {s for s, _ in every})
    print("imports none of the others:", ", ".join(leaves) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
