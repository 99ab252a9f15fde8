"""A new user's first commands: the demo's stored secret, EDGEGW_CONFIG, token lifetimes, progress off a
terminal, and the model conversion cache keyed on content."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import jwt
import pytest
from rich.console import Console

from edgecore import progress
from gateway.client import demo_secret
from testkit.harness import EDGEGW, ROOT

POLICY = ROOT / "policies" / "gateway.yaml"


def _run(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("EDGEGW_DEMO_SECRET", "EDGEGW_CONFIG")}
    clean["PYTHONPATH"] = str(ROOT)  # this checkout, from any working directory
    return subprocess.run([*EDGEGW, *args], capture_output=True, text=True, cwd=cwd, env={**clean, **env},
                          timeout=60)


def test_token_and_check_config_read_the_demos_stored_secret(tmp_path: Path) -> None:
    env = {"EDGEGW_STATE_DIR": str(tmp_path / "state")}
    missing = _run("check-config", str(POLICY), env=env)
    assert missing.returncode == 2 and "EDGEGW_DEMO_SECRET is not set" in missing.stderr
    assert str(tmp_path / "state" / "demo-secret") in missing.stderr  # says where the demo keeps it

    os.environ["EDGEGW_STATE_DIR"] = env["EDGEGW_STATE_DIR"]
    try:
        secret = demo_secret.ensure_secret()  # what `edgegw demo` does on its first run
        assert demo_secret.ensure_secret() == secret  # and every later run: the same secret
    finally:
        del os.environ["EDGEGW_STATE_DIR"]
    assert (tmp_path / "state" / "demo-secret").stat().st_mode & 0o077 == 0  # owner only

    ok = _run("check-config", str(POLICY), env=env)
    assert ok.returncode == 0 and ": ok (" in ok.stdout, ok.stderr
    minted = _run("token", "--issuer", "demo", "--sub", "partner-1", env=env)
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), secret, algorithms=["HS256"], audience="edgegw")
    assert claims["sub"] == "partner-1" and "scope" not in claims
    # An explicit variable wins over the file.
    other = _run("token", "--issuer", "demo", "--sub", "p", env={**env, "EDGEGW_DEMO_SECRET": "y" * 40})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(other.stdout.strip(), secret, algorithms=["HS256"], audience="edgegw")


def test_edgegw_config_is_the_default_policy_of_every_command(tmp_path: Path) -> None:
    # From a directory without policies/ (as in the image), the relative default cannot be found...
    env = {"EDGEGW_DEMO_SECRET": "x" * 40}
    lost = _run("token", "--issuer", "demo", "--sub", "me", env=env, cwd=tmp_path)
    assert lost.returncode == 2 and "policies/gateway.yaml" in lost.stderr
    # ...and EDGEGW_CONFIG names it for token, check-config and serve.
    env["EDGEGW_CONFIG"] = str(POLICY)
    assert _run("token", "--issuer", "demo", "--sub", "me", env=env, cwd=tmp_path).returncode == 0
    checked = _run("check-config", env=env, cwd=tmp_path)
    assert checked.returncode == 0 and str(POLICY) in checked.stdout
    assert "--config" in _run("serve", "--help", env=env, cwd=tmp_path).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: nope}\n")
    served = _run("serve", env={**env, "EDGEGW_CONFIG": str(bad)}, cwd=tmp_path)
    assert served.returncode == 2 and f"{bad}: server.port" in served.stderr
    unset = _run("serve", env={"EDGEGW_DEMO_SECRET": "x" * 40}, cwd=tmp_path)
    assert unset.returncode == 2 and "--config" in unset.stderr


@pytest.mark.parametrize("ttl", ["-100", "0", "soon"])
def test_token_refuses_a_lifetime_that_is_not_positive(ttl: str) -> None:
    done = _run("token", "--issuer", "demo", "--sub", "me", "--ttl", ttl, env={"EDGEGW_DEMO_SECRET": "x" * 40})
    assert done.returncode == 2 and "--ttl" in done.stderr and not done.stdout


def test_progress_prints_plain_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=60)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.05)
    with progress.step("converting a model that has a rather long description", console):
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "… converting a model that has a rather long description"  # one line: no wrapping
    assert any(line.startswith("… still converting a model") for line in lines[1:-1])
    assert lines[-1].startswith("✓ converting a model") and lines[-1].endswith("s)")


def test_progress_marks_a_failed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress.step("loading", Console(file=out, force_terminal=False)):
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("✗ loading")


def test_the_gguf_conversion_cache_is_keyed_on_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_backend import models

    monkeypatch.setenv("EDGEGW_CACHE_DIR", str(tmp_path / "cache"))
    first = tmp_path / "venv1" / "model.gguf"
    first.parent.mkdir()
    first.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    converted: list[Path] = []

    def fake_convert(gguf: Path, out: Path) -> Path:  # the real conversion takes a minute: count calls
        converted.append(gguf)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    target = models._converted(first, "m")
    # The same wheel installed into another venv: same bytes, another path and file time.
    second = tmp_path / "venv2" / "model.gguf"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    os.utime(second, (time.time() + 3600, time.time() + 3600))
    assert models._converted(second, "m") == target and len(converted) == 1
    # Different bytes convert again.
    second.write_bytes(first.read_bytes() + b"x")
    assert models._converted(second, "m") != target and len(converted) == 2
