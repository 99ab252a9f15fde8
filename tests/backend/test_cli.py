"""The backend's CLI surface: cheap to parse (no torch at import), clear failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit.harness import EDGEGW, ROOT
from tests.backend.conftest import OFFLINE


def test_cli_parser_does_not_import_torch() -> None:
    code = ("import sys, gateway.cli; gateway.cli.build_parser().parse_args(['backend', '--model', 'x']); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)


def test_missing_model_fails_fast() -> None:
    done = subprocess.run([*EDGEGW, "backend", "--model", "/no/such/model"], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode != 0 and "no such file or directory" in done.stderr


def test_unloadable_model_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    done = subprocess.run([*EDGEGW, "backend", "--model", str(tmp_path), "--port", "0"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**__import__("os").environ, **OFFLINE})
    assert done.returncode == 1 and "failed to load" in done.stderr


def test_negative_prefix_cache_bound_is_refused() -> None:
    done = subprocess.run([*EDGEGW, "backend", "--model", "smollm2", "--prefix-cache-mb", "-1"], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert done.returncode != 0 and "--prefix-cache-mb must be 0 (off) or more" in done.stderr
