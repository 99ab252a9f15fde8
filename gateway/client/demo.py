"""`edgegw demo`: a backend pool and the gateway on embedded defaults, with a summary of what runs where."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from edgecore.progress import step
from gateway.auth.mint import mint_token
from gateway.client import demo_secret
from gateway.features import load_config

ROOT = Path(__file__).resolve().parents[2]  # the checkout (gateway/client/demo.py)


def run_demo(port: int, backend_port: int, replicas: int, config_path: Path) -> int:

    console = Console()
    # One secret across runs, kept where `edgegw token` and `edgegw check-config` find it.
    secret_note = "from $EDGEGW_DEMO_SECRET"
    if not os.environ.get(demo_secret.ENV):
        os.environ[demo_secret.ENV] = demo_secret.ensure_secret()
        secret_note = f"in {demo_secret.secret_file()} (edgegw token and check-config read it)"
    os.environ["EDGEGW_PORT"] = str(port)
    backend_urls = [f"http://127.0.0.1:{backend_port + i}" for i in range(replicas)]
    for i, url in enumerate(backend_urls[:2], start=1):
        os.environ[f"EDGEGW_BACKEND_{i}"] = url
    config = load_config(config_path)

    from gpu_backend.models import demo_model_dir, embedding_model_dir

    # The first run converts SmolLM2's GGUF to safetensors: that step reports its own progress.
    model_dir = demo_model_dir()
    embedding_dir = embedding_model_dir()
    console.print(f"[green]✓[/] model: {model_dir}")
    children: list[subprocess.Popen[bytes]] = []

    def stop_all(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()

    def on_term(*_: object) -> None:
        stop_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        children.append(subprocess.Popen([sys.executable, "-m", "gateway.cli",
                                          *backend_args(model_dir, embedding_dir, replicas, backend_port)]))
        with step(f"starting {replicas} backend replicas (loading and warming up the model)", console):
            for url in backend_urls:
                _wait(url + "/healthz", children, 600)
        console.print(f"[green]✓[/] backend pool: {', '.join(backend_urls)}")
        children.append(subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                                          str(config_path), "--port", str(port)]))
        gateway_url = f"http://127.0.0.1:{port}"
        with step("starting the gateway", console):
            _wait(gateway_url + "/readyz", children, 60)
        issuer = config.issuer(config.admin.issuer or config.issuers[0].name) or config.issuers[0]
        partner = mint_token(issuer, "demo-partner", ttl_s=24 * 3600)
        admin = mint_token(issuer, "demo-operator", scopes=[config.admin.scope], ttl_s=24 * 3600)
        _summary(console, gateway_url, backend_urls, partner, admin)
        console.print(f"secret: {secret_note}", soft_wrap=True, highlight=False)
        console.print("Ctrl-C stops everything.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]a demo process exited; stopping[/]")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


def backend_args(model_dir: Path, embedding_dir: Path, replicas: int, port: int) -> list[str]:
    """The demo's `edgegw backend` arguments: the models policies/gateway.yaml lists, under those names."""
    return ["backend", "--model", str(model_dir), "--served-model-name", "smollm2",
            "--embedding-model", str(embedding_dir), "--embedding-served-model-name", "all-minilm-l6-v2",
            "--replicas", str(replicas), "--port", str(port), "--host", "127.0.0.1"]


def _wait(url: str, children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit(f"edgegw demo: a process exited while waiting for {url}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"edgegw demo: {url} not ready after {timeout:.0f}s")


def _summary(console: Console, gateway_url: str, backend_urls: list[str], partner: str, admin: str) -> None:
    table = Table(title="edgegw demo", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("where")
    table.add_row("gateway (OpenAI API)", f"{gateway_url}/v1")
    for i, url in enumerate(backend_urls):
        table.add_row(f"backend replica {i + 1} (smollm2, all-minilm-l6-v2)", url)
    table.add_row("metrics", f"{gateway_url}/metrics")
    table.add_row("status page (admin)", f"{gateway_url}/admin")
    table.add_row("rate limits and cache", "in memory (no Redis configured)")
    console.print(table)
    say = functools.partial(console.print, soft_wrap=True, markup=False, highlight=False)
    say("Paste these into another shell (tokens are valid for 24 hours):")
    say(f"export GATEWAY_URL={gateway_url}")
    say("# a partner's token: calls the API (no admin scope)")
    say(f"export TOKEN={partner}")
    say("# an operator's token: the admin scope opens /admin and the admin API")
    say(f"export ADMIN_TOKEN={admin}")
    say("try it (temperature 0: the same answer every time):")
    say(f"curl -s {gateway_url}/v1/chat/completions -H 'authorization: Bearer {partner}' "
                  "-H 'content-type: application/json' -d '{\"model\": \"smollm2\", \"messages\": "
                  "[{\"role\": \"user\", \"content\": \"What is the capital of France?\"}], "
                  "\"max_tokens\": 32, \"temperature\": 0}'")
