"""Backend fixtures: the tiny model (made once by the CLI) and real `edgegw backend` processes on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from testkit.harness import EDGEGW, Proc, free_port, start_server

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class BackendProc:
    """A running `edgegw backend` process and clients for it."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kwargs)

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int | None:
        return self.proc.stop(timeout=30)


def start_backend(model: str | Path, *extra: str, port: int | None = None, name: str = "backend",
                  timeout: float = 180.0) -> BackendProc:
    port = port or free_port()
    args = [*EDGEGW, "backend", "--model", str(model), "--port", str(port), "--host", "127.0.0.1", *extra]
    proc = start_server(args, f"http://127.0.0.1:{port}/healthz", name=name, env=OFFLINE, timeout=timeout)
    return BackendProc(proc, port)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny Llama written by `edgegw make-tiny-model` (also exercises that command)."""
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    # A long context lets tests keep a sequence running for seconds (the tiny model decodes ~500 tokens/s).
    done = subprocess.run([*EDGEGW, "make-tiny-model", str(out), "--context", "4096"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, **OFFLINE})
    assert done.returncode == 0, done.stderr
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    return out


@pytest.fixture(scope="session")
def tiny_backend(tiny_model: Path) -> Iterator[BackendProc]:
    """Shared tiny-model backend that also serves the bundled all-MiniLM-L6-v2 embeddings."""
    backend = start_backend(tiny_model, "--embedding-model", "default", "--max-batch-size", "64",
                            name="tiny-backend")
    yield backend
    backend.stop()


@pytest.fixture
def client(tiny_backend: BackendProc) -> openai.OpenAI:
    return tiny_backend.client()
