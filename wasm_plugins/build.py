"""Build the example plugins from source: `python -m wasm_plugins.build OUTDIR` (`make plugins`).

C plugins are compiled with zig's clang (`ziglang` from PyPI) for wasm32-freestanding against
`examples/c/proxy_wasm.h`; WAT plugins are assembled with wasmtime; AssemblyScript plugins
(`examples/as/assembly/*.ts`, one plugin per file) are compiled with `asc` against a real proxy-wasm
SDK, both pinned by `examples/as/package-lock.json` (needs Node.js and npm; `npm ci` runs when
`node_modules` is missing or older than the lock file). Outputs are rebuilt only when a source is
newer. Prints one line per plugin; exits non-zero if any build failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edgecore.progress import step

EXAMPLES = Path(__file__).resolve().parent / "examples"
C_FLAGS = ["--target=wasm32-freestanding", "-nostdlib", "-O2", "-mbulk-memory", "-Wall", "-Werror",
           "-Wl,--no-entry", "-Wl,-z,stack-size=65536", "-s"]


def _stale(out: Path, sources: list[Path]) -> bool:
    return not out.exists() or any(s.stat().st_mtime > out.stat().st_mtime for s in sources)


# Plugins that use a libc and WASI as SDK-built modules do (Go, Rust and C++ runtimes): wasi-libc
# from zig, built as a reactor (`_initialize`, no `main`).
WASI_FLAGS = ["--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Werror",
              "-Wl,-z,stack-size=65536", "-s"]
HEADER_DIR = EXAMPLES / "c"


def build_c(src: Path, out: Path, flags: list[str] = C_FLAGS) -> None:
    """One C plugin with zig's clang; `proxy_wasm.h` (the examples' mini SDK) is on the include path."""
    header = HEADER_DIR / "proxy_wasm.h"
    if not _stale(out, [src, header]):
        return
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [sys.executable, "-m", "ziglang", "cc", *flags, "-I", str(HEADER_DIR), "-o", str(tmp), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src.parent)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{src.name}: zig cc failed:\n{proc.stderr.strip()}")
    tmp.replace(out)


def build_wasi_c(src: Path, out: Path) -> None:
    build_c(src, out, WASI_FLAGS)


def build_wat(src: Path, out: Path) -> None:
    if not _stale(out, [src]):
        return
    import wasmtime

    out.write_bytes(bytes(wasmtime.wat2wasm(src.read_text())))


AS_DIR = EXAMPLES / "as"


def _as_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise RuntimeError(f"AssemblyScript plugins ({AS_DIR}) need Node.js 20+ (assemblyscript 0.28) and npm "
                           f"on PATH; {missing} not found: install them (e.g. `apt-get install nodejs npm`)")
    return node, npm


def _as_deps(npm: str) -> None:
    """`npm ci` when node_modules is missing or older than the lock file. npm writes
    node_modules/.package-lock.json on every install, so its mtime says when deps were installed."""
    installed = AS_DIR / "node_modules" / ".package-lock.json"
    if not _stale(installed, [AS_DIR / "package.json", AS_DIR / "package-lock.json"]):
        return
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], capture_output=True, text=True, cwd=AS_DIR)
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci in {AS_DIR} failed:\n{(proc.stderr or proc.stdout).strip()}")


def build_as(src: Path, out: Path) -> None:
    sources = [*(AS_DIR / "assembly").rglob("*.ts"), AS_DIR / "asconfig.json", AS_DIR / "package-lock.json"]
    if not _stale(out, sources):
        return
    node, npm = _as_tools()
    _as_deps(npm)
    # Compile next to the output and rename: a failed or interrupted compile never leaves a
    # fresh-looking partial module behind.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [node, str(AS_DIR / "node_modules" / "assemblyscript" / "bin" / "asc.js"),
           str(src.relative_to(AS_DIR)), "--config", "asconfig.json", "--target", "release", "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=AS_DIR)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{src.name}: asc failed:\n{(proc.stderr or proc.stdout).strip()}")
    tmp.replace(out)


def build_all(outdir: str | Path) -> dict[str, Path]:
    """Build every example into `outdir`; returns name -> path. Raises RuntimeError on a failure."""
    jobs = _jobs(EXAMPLES)
    jobs += [(p, build_as) for p in sorted((AS_DIR / "assembly").glob("*.ts"))]
    return _build(jobs, EXAMPLES, outdir)


def build_tree(src_dir: str | Path, outdir: str | Path) -> dict[str, Path]:
    """Build the plugins of a tree laid out like the examples: `c/*.c` (freestanding, the mini
    SDK), `wasi/*.c` (wasi-libc reactors) and `wat/*.wat`. The tests' own plugins use it."""
    root = Path(src_dir).resolve()
    return _build(_jobs(root), root, outdir)


def _jobs(root: Path) -> list[tuple[Path, Callable[[Path, Path], None]]]:
    jobs: list[tuple[Path, Callable[[Path, Path], None]]] = [(p, build_c) for p in sorted((root / "c").glob("*.c"))]
    jobs += [(p, build_wasi_c) for p in sorted((root / "wasi").glob("*.c"))]
    jobs += [(p, build_wat) for p in sorted((root / "wat").glob("*.wat"))]
    return jobs


def _build(jobs: list[tuple[Path, Callable[[Path, Path], None]]], root: Path, outdir: str | Path) -> dict[str, Path]:
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    errors: list[str] = []
    for src, builder in jobs:
        target = out / f"{src.stem}.wasm"
        try:
            with step(f"plugin {src.relative_to(root)}"):
                builder(src, target)
            built[src.stem] = target
        except (RuntimeError, OSError) as exc:
            errors.append(str(exc))
    if errors:
        raise RuntimeError("\n".join(errors))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", nargs="?", default="build/plugins")
    args = parser.parse_args(argv)
    try:
        built = build_all(args.outdir)
    except RuntimeError as exc:
        print(f"plugin build failed:\n{exc}", file=sys.stderr)
        return 1
    for name, path in built.items():
        print(f"{name:14s} {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
