"""Two real backend replicas behind the gateway: an agent's TTFT with `balancer: inference` against
`least_outstanding`, in one run (issue 21 item 5).

Starts two `edgegw backend` processes serving SmolLM2-135M on the CPU (prefix cache on, one torch thread
each) and two gateways in front of both, one per balancer. Each phase runs an agent-like workload through
one gateway: 4 sessions starting half a second apart, each 6 sequential steps, every step a streamed chat
completion of the same ~1,000-token system prompt, the session's history (earlier answers included) and a
fresh screen description that asks the model to think before it acts (so answers run to about
--max-tokens, as the phone agent's do). Between two steps a session waits a think time (the phone acting
and taking the next screenshot: --think-s, 0.5x to 1.5x at random, seeded), so a session's next request
does not find its own replica freed just for it, which would make `least_outstanding` sticky by accident.
Phases alternate between the balancers (A B B A ...), each with a system prompt of its own so neither
phase finds the other's prompts cached, and each starts with that system prompt already cached on both
replicas (one request to each, as in steady state, where every replica has seen it).

Each replica's prefix cache is sized as llm-d sizes its benchmark's KV (`sized_cache_mb`): the workload's
prefix working set is 0.75 of the two replicas' capacity together. `--cache-mb 1024` gives each replica room
for everything, the case where routing matters least.

    .venv/bin/python bench/routing_backends.py                   # 4 rounds: 8 phases of 24 requests
    .venv/bin/python bench/routing_backends.py --rounds 1 --cache-mb 1024

Prints TTFT p50/p90 (at the client, through the gateway) per balancer, the share of prompt tokens served
from the replicas' prefix caches and the requests each replica ran. Target: TTFT p50 at least 2x lower
with `inference`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backend_batching import OFFLINE, TOPICS, system_prompt  # noqa: E402
from testkit.harness import EDGEGW, Proc, free_port, start_server  # noqa: E402

BALANCERS = ("least_outstanding", "inference")
SECRET = "routing-bench-secret-0123456789abcdef"
MODEL = "smollm2"


@dataclass
class Phase:
    balancer: str
    ttfts: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    per_replica: list[float] = field(default_factory=list)


def start_backends(model_dir: Path, count: int, threads: int, cache_mb: float) -> list[tuple[Proc, str]]:
    out = []
    for i in range(count):
        port = free_port()
        proc = start_server([*EDGEGW, "backend", "--model", str(model_dir), "--served-model-name", MODEL,
                             "--port", str(port), "--threads", str(threads), "--prefix-cache-mb", str(cache_mb)],
                            f"http://127.0.0.1:{port}/healthz", name=f"replica-{i}", env=OFFLINE, timeout=600)
        out.append((proc, f"http://127.0.0.1:{port}"))
    return out


def start_gateway(tmp: Path, balancer: str, urls: list[str]) -> tuple[Proc, str, str]:
    """A one-worker gateway with one pool over `urls`; returns it, its URL and a bearer token."""
    from gateway.auth.mint import mint_token
    from gateway.features import load_config

    pool: dict[str, Any] = {"name": "replicas", "models": [MODEL], "balancer": balancer,
                            "endpoints": [{"url": u} for u in urls]}
    config = {
        "server": {"access_log": "off"},
        "admin": {"issuer": "bench"},
        "issuers": [{"name": "bench", "issuer": "https://bench.idp", "algorithms": ["HS256"],
                     "secret_env": "EDGEGW_BENCH_SECRET", "audience": "edgegw"}],
        "pools": [pool],
        "routes": [{"name": "chat", "paths": ["/v1/chat/completions"]}],
    }
    path = tmp / f"gateway-{balancer}.yaml"
    path.write_text(yaml.safe_dump(config))
    token = mint_token(load_config(path).issuers[0], "bench-agent", ttl_s=3600)
    for _ in range(3):
        port = free_port()
        proc = start_server([*EDGEGW, "serve", "--config", str(path), "--port", str(port)],
                            f"http://127.0.0.1:{port}/healthz", name=f"gateway-{balancer}",
                            env={"EDGEGW_BENCH_SECRET": SECRET})
        url = f"http://127.0.0.1:{port}"
        # On a machine shared with other test runs, the port may have gone to another gateway meanwhile:
        # make sure the one answering is ours.
        models = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {token}"}, timeout=10)
        if proc.alive() and models.status_code == 200 and MODEL in models.text:
            return proc, url, token
        proc.stop()
    raise RuntimeError(f"the {balancer} gateway did not come up as configured:\n{proc.log()[-2000:]}")


def screen(session: int, step: int) -> str:
    """A fresh screen description: what a step's screenshot stands for (it never repeats). Like the phone
    agent's, the answer thinks before it acts, so it runs to about `--max-tokens` and the history grows by
    that much every step."""
    return (f"Screen {step} of task {session}: the app shows {TOPICS[(session + step) % len(TOPICS)]}, a search "
            f"bar, {3 + step} list items and buttons Back, Home and Send. First describe what you see on the "
            "screen, then think step by step about which action brings the task closer, then give the action.")


def sized_cache_mb(model_dir: Path, system: str, args: argparse.Namespace) -> float:
    """Each replica's prefix cache sized as llm-d sizes its benchmark's KV: the workload's prefix working
    set (the system prompt once, every session's whole history) is 0.75 of the pool's capacity, so
    1.5x one replica's with two replicas. A cache that holds everything everywhere hides the routing."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    cfg = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_bytes = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * 4  # float32 on the CPU
    step_tokens = len(tok(screen(0, 0), add_special_tokens=False)["input_ids"]) + 10 + args.max_tokens  # + template
    working = len(tok(system, add_special_tokens=False)["input_ids"]) + args.sessions * args.steps * step_tokens
    return round(working * kv_bytes / (0.75 * 2) / 2**20, 1)


async def chat(client: httpx.AsyncClient, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, str, dict]:
    """One streamed chat completion: (TTFT, the answer, usage)."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "top_p": 0.85,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft, text, usage = None, "", None
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {(await resp.aread()).decode()[:300]}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            delta = "".join(c["delta"].get("content") or "" for c in chunk["choices"])
            if delta and ttft is None:
                ttft = time.perf_counter() - start
            text += delta
            usage = chunk.get("usage") or usage
    assert usage is not None
    return (ttft if ttft is not None else time.perf_counter() - start), text, usage


async def session(client: httpx.AsyncClient, system: str, number: int, args: argparse.Namespace,
                  phase: Phase) -> None:
    think = random.Random(number)
    await asyncio.sleep(number * 0.5)
    task = f"Task {number}: send the photo of {TOPICS[number % len(TOPICS)]} to Bo."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"{task} {screen(number, 0)}"}]
    for step in range(args.steps):
        if step:
            await asyncio.sleep(args.think_s * think.uniform(0.5, 1.5))
        ttft, answer, usage = await chat(client, messages, args.max_tokens)
        phase.ttfts.append(ttft)
        phase.prompt_tokens += usage["prompt_tokens"]
        phase.cached_tokens += usage["prompt_tokens_details"]["cached_tokens"]
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": screen(number, step + 1)}]


def served(url: str) -> float:
    """Sequences a replica has finished (its vllm:request_success_total)."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("vllm:request_success_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def run_phase(balancer: str, gateway: tuple[Proc, str, str], replicas: list[str], system: str,
                    args: argparse.Namespace) -> Phase:
    phase = Phase(balancer)
    async with httpx.AsyncClient(timeout=600) as direct:  # steady state: the system prompt is everywhere
        for url in replicas:
            await direct.post(url + "/v1/chat/completions", json={
                "model": MODEL, "max_tokens": 1, "messages": [{"role": "system", "content": system},
                                                              {"role": "user", "content": "Ready?"}]})
    before = [served(u) for u in replicas]
    _, url, token = gateway
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=600) as client:
        await asyncio.gather(*(session(client, system, s, args, phase)
                               for s in range(args.sessions)))
    phase.per_replica = [served(u) - b for u, b in zip(replicas, before, strict=True)]
    return phase


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(phases: list[Phase], args: argparse.Namespace) -> None:
    print(f"\n{args.sessions} sessions x {args.steps} steps, {args.system_tokens}-token system prompt, "
          f"{args.max_tokens} max tokens per answer, 2 SmolLM2 replicas on the CPU with {args.cache_mb:g} MB of "
          "prefix cache each; TTFT at the client")
    print(f"{'phase':>6}  {'balancer':<18}{'TTFT p50 ms':>12}{'p90 ms':>9}{'cached':>8}  per replica")
    for i, p in enumerate(phases):
        print(f"{i:>6}  {p.balancer:<18}{statistics.median(p.ttfts) * 1000:>12.0f}"
              f"{percentile(p.ttfts, 0.9) * 1000:>9.0f}{p.cached_tokens / p.prompt_tokens:>8.0%}  "
              f"{' / '.join(f'{n:.0f}' for n in p.per_replica)}")
    p50 = {}
    print(f"\n{'balancer':<18}{'requests':>9}{'TTFT p50 ms':>12}{'p90 ms':>9}{'cached':>8}")
    for balancer in BALANCERS:
        mine = [p for p in phases if p.balancer == balancer]
        ttfts = [t for p in mine for t in p.ttfts]
        p50[balancer] = statistics.median(ttfts)
        share = sum(p.cached_tokens for p in mine) / sum(p.prompt_tokens for p in mine)
        print(f"{balancer:<18}{len(ttfts):>9}{p50[balancer] * 1000:>12.0f}{percentile(ttfts, 0.9) * 1000:>9.0f}"
              f"{share:>8.0%}")
    print(f"TTFT p50: inference {p50['least_outstanding'] / p50['inference']:.2f}x lower than least_outstanding "
          "(target >= 2x)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4,
                   help="each round runs both balancers (order alternates); least_outstanding's phases swing with"
                        " its luck, so fewer rounds give a noisy p50 ratio (docs/benchmarks.md)")
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--system-tokens", type=int, default=1000)
    p.add_argument("--max-tokens", type=int, default=128, help="per answer (answers join the history)")
    p.add_argument("--think-s", type=float, default=1.5, help="mean pause between a session's steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    p.add_argument("--cache-mb", type=float, default=None,
                   help="each replica's --prefix-cache-mb (default: sized like llm-d's benchmark, see sized_cache_mb;"
                        " 1024 holds everything)")
    args = p.parse_args()
    from gpu_backend.models import demo_model_dir

    model_dir = demo_model_dir()
    if args.cache_mb is None:
        args.cache_mb = sized_cache_mb(model_dir, system_prompt(model_dir, args.system_tokens, nonce=0), args)
    os.environ["EDGEGW_BENCH_SECRET"] = SECRET
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp:
        try:
            backends = start_backends(model_dir, 2, args.threads, args.cache_mb)
            procs += [proc for proc, _ in backends]
            replicas = [url for _, url in backends]
            gateways = {b: start_gateway(Path(tmp), b, replicas) for b in BALANCERS}
            procs += [g[0] for g in gateways.values()]
            phases = []
            for r in range(args.rounds):
                for balancer in BALANCERS if r % 2 == 0 else BALANCERS[::-1]:
                    system = system_prompt(model_dir, args.system_tokens, nonce=1000 + len(phases))
                    phases.append(asyncio.run(run_phase(balancer, gateways[balancer], replicas, system, args)))
                    print(f"  phase {len(phases) - 1} ({balancer}): TTFT p50 "
                          f"{statistics.median(phases[-1].ttfts) * 1000:.0f} ms", flush=True)
            report(phases, args)
        finally:
            for proc in reversed(procs):
                proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
