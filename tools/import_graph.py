"""Print who imports whom between the project's packages (docs/architecture.md, "Import graph").

Every `import` / `from ... import` in the source is counted, including imports inside functions and
under `TYPE_CHECKING`: a lazy import is still a dependency. Run: `python tools/import_graph.py`.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("gateway", "wasm_plugins", "gpu_backend", "edgecore")
# gateway's subpackages and hot-path modules drawn as their own boxes; the other gateway/*.py modules are
# "gateway/entry" (processes and the CLI: they compose everything) or "gateway/core" (the shared request
# types and helpers: context, errors, reply, metrics, progress, routing, api, ...).
ENTRY = {"app", "cli", "server", "startup", "demo", "demo_secret", "ask"}
NAMED = {"proxy", "pipeline", "stages", "auth", "upstream", "ratelimit", "cache", "redis", "policy", "media",
         "loadtest", "serving", "status", "config", "plugins"}


def node(module: str) -> str | None:
    """The box a dotted module name belongs to, or None for third-party and standard-library modules."""
    parts = module.split(".")
    if parts[0] not in TOP:
        return None
    if parts[0] != "gateway":
        return parts[0]
    if len(parts) > 1 and parts[1] in NAMED:
        return f"gateway/{parts[1]}"
    if len(parts) > 1 and parts[1] in ENTRY:
        return "gateway/entry"
    return "gateway/core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[str] = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.extend(alias.name for alias in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = package[: len(package) - (n.level - 1)] if n.level else []
            target = ".".join([*base, n.module] if n.module else base)
            out.append(target)
            # `from gateway import metrics` names a module, not an attribute
            out.extend(f"{target}.{alias.name}" for alias in n.names if n.module is None or "." not in target)
    return out


def graph() -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else []:
            src = node(module_name(path))
            if src is None:
                continue
            for target in set(imports(path)):
                dst = node(target)
                if dst is not None and dst != src and target != "gateway":
                    edges[(src, dst)] += 1
    return edges


def loops(edges: dict[tuple[str, str], int]) -> list[list[str]]:
    """Groups of boxes that import each other, directly or around a loop (strongly connected, size > 1)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)

    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in succ[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reachable = {n: reach(n) for n in {x for e in edges for x in e}}
    groups = {tuple(sorted(m for m in reachable[n] if n in reachable[m])) for n in reachable}
    return sorted(list(g) for g in groups if len(g) > 1)


def main() -> int:
    edges = graph()
    for src in sorted({s for s, _ in edges}):
        targets = sorted((d, c) for (s, d), c in edges.items() if s == src)
        print(f"{src:22} -> " + ", ".join(f"{d} ({c})" for d, c in targets))
    cycles = sorted({tuple(sorted((a, b))) for (a, b) in edges if (b, a) in edges})
    print("\nmutual imports:", ", ".join(f"{a} <-> {b}" for a, b in cycles) or "none")
    for group in loops(edges):
        print("loop:", " ".join(group))
    leaves = sorted({d for _, d in edges} - {s for s, _ in edges})
    print("imports none of the others:", ", ".join(leaves) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
