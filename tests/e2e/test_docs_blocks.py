"""Docs are tests: every shell and Python block of the user-facing docs runs against one started demo.

Blocks are extracted by pytest-codeblocks (its `extract_from_file`, and its markers: a block that
cannot run here is preceded in the doc itself by `<!--pytest.mark.skip(reason="...")-->`). The demo
is started once for the module, as `make demo` does, and each block then runs as a user would paste
it into a second shell: from the project directory, with the demo's printed `export` lines applied.

Three things differ from a fresh clone, so the blocks run against this checkout without reinstalling:
`edgegw` and `python` are this test's interpreter with the checkout first on the path; `make` is told
its virtualenv is already installed (`-o`), and `.venv` points at that virtualenv if the checkout has
none. Shell blocks run under `set -eo pipefail` with `curl` failing on HTTP errors, so a documented
command that errors fails its block.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_codeblocks import extract_from_file

from testkit.harness import ROOT, free_port, free_ports

DOCS = ["README.md", "docs/quickstart.md", "docs/operations.md", "docs/plugins.md", "docs/backend.md",
        "docs/ratelimit-cache.md"]
SHELLS = ("sh", "bash", "shell")
BLOCK_TIMEOUT_S = 300  # `make plugins` compiles every example on a cold run


def _blocks() -> list[Any]:
    params = []
    for doc in DOCS:
        for block in extract_from_file(ROOT / doc):
            if block.syntax not in (*SHELLS, "python"):
                continue
            marks = [eval(m, {"pytest": pytest, "sys": sys}) for m in block.marks]  # noqa: S307 - the docs' markers
            params.append(pytest.param(doc, block, marks=marks, id=f"{doc}:{block.lineno}"))
    return params


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running demo on free ports; yields the environment of a shell that pasted its export lines."""
    tmp = tmp_path_factory.mktemp("docs-demo")
    venv = Path(sys.prefix)
    made_venv_link = False
    if not (ROOT / ".venv").exists():
        (ROOT / ".venv").symlink_to(venv)  # `. .venv/bin/activate` in the docs
        made_venv_link = True
    backend_port = free_ports(2)
    port = free_port()
    while port in (backend_port, backend_port + 1):
        port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
           "EDGEGW_STATE_DIR": str(tmp / "state"), "EDGEGW_PLUGIN_DIR": str(tmp / "plugins.d"),
           "EDGEGW_PORT": str(port), "EDGEGW_DEMO_BACKEND_PORT": str(backend_port)}
    for name in ("EDGEGW_DEMO_SECRET", "EDGEGW_CONFIG"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    seen: list[str] = []
    exports: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 600  # a cold first run converts SmolLM2
        while "ADMIN_TOKEN" not in exports and (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if match := re.match(r"export (\w+)=(\S+)$", line.strip()):
                exports[match.group(1)] = match.group(2)
        assert {"GATEWAY_URL", "TOKEN", "ADMIN_TOKEN"} <= set(exports), "".join(seen[-40:])
        shell = {**env, **exports, "PATH": f"{_shims(tmp, venv)}:{venv / 'bin'}:{env['PATH']}"}
        yield shell
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if made_venv_link:
            (ROOT / ".venv").unlink()


def _pump(proc: subprocess.Popen[str], out: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)
    out.put(None)


def _shims(tmp: Path, venv: Path) -> Path:
    """`edgegw` running this checkout, and `make` that does not reinstall the (shared) virtualenv."""
    bin_dir = tmp / "shims"
    bin_dir.mkdir(exist_ok=True)
    make = shutil.which("make") or "make"
    shims = {
        "edgegw": f'exec "{sys.executable}" -m gateway.cli "$@"',
        "make": f'exec "{make}" VENV="{venv}" -o "{venv}/.installed" "$@"',
    }
    for name, body in shims.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bin_dir


_PREAMBLE = """set -eo pipefail
curl() { command curl --fail-with-body --max-time 120 "$@"; }
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("doc", "block"), _blocks())
def test_doc_block(demo: dict[str, str], doc: str, block: Any) -> None:
    if block.syntax == "python":
        args = [sys.executable, "-c", block.code]
    else:
        args = ["bash", "-c", _PREAMBLE + block.code]
    done = subprocess.run(args, cwd=ROOT, env=demo, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, (f"{doc}, block at line {block.lineno} failed ({done.returncode}):\n"
                                  f"{block.code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
