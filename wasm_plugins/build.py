"""Build the example plugins from source: `python -m wasm_plugins.build OUTDIR` (`make plugins`).

C plugins are compiled with zig's clang (`ziglang` from PyPI) for wasm32-freestanding against
`examples/c/proxy_wasm.h`; WAT plugins are assembled with wasmtime. Outputs are rebuilt only when a
source is newer. Prints one line per plugin; exits non-zero if any build failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent / "examples"
C_FLAGS = ["--target=wasm32-freestanding", "-nostdlib", "-O2", "-mbulk-memory", "-Wall", "-Werror",
           "-Wl,--no-entry", "-Wl,-z,stack-size=65536", "-s"]


def _stale(out: Path, sources: list[Path]) -> bool:
    return not out.exists() or any(s.stat().st_mtime > out.stat().st_mtime for s in sources)


def build_c(src: Path, out: Path) -> None:
    header = src.parent / "proxy_wasm.h"
    if not _stale(out, [src, header]):
        return
    cmd = [sys.executable, "-m", "ziglang", "cc", *C_FLAGS, "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{src.name}: zig cc failed:\n{proc.stderr.strip()}")


def build_wat(src: Path, out: Path) -> None:
    if not _stale(out, [src]):
        return
    import wasmtime

    out.write_bytes(bytes(wasmtime.wat2wasm(src.read_text())))


def build_all(outdir: str | Path) -> dict[str, Path]:
    """Build every example into `outdir`; returns name -> path. Raises RuntimeError on a failure."""
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    errors: list[str] = []
    jobs = [(p, build_c) for p in sorted((EXAMPLES / "c").glob("*.c"))]
    jobs += [(p, build_wat) for p in sorted((EXAMPLES / "wat").glob("*.wat"))]
    for src, builder in jobs:
        target = out / f"{src.stem}.wasm"
        try:
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
        print(f"{name:10s} {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
