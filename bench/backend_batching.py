"""Continuous batching vs the naive baseline: generated tokens/s and TTFT at several concurrencies; and
the prefix cache: TTFT of a ~1,000-token system prompt asked a second time, with another question.

For each model, starts `edgegw backend` on loopback and drives it with streamed /v1/completions requests
(TTFT is measured at the client), then runs the naive baseline in this process on the same
model, device and dtype: one `model.generate` call per request, one after another. Every request
generates exactly --max-tokens tokens (ignore_eos / min_new_tokens) so both sides do the same work.

    .venv/bin/python bench/backend_batching.py                        # tiny and smollm2, auto device
    .venv/bin/python bench/backend_batching.py --model smollm2 --device cuda --concurrency 1,16,64,256

--model takes `tiny` (made here with `edgegw make-tiny-model`, size options below), `smollm2`, or a model
directory. Targets on a 2-core CPU at concurrency 16: >= 8x the baseline (tiny), >= 4x (smollm2); the
second ask of a system prompt >= 5x faster to its first token than the first.
The last --penalty-levels levels run again with frequency/presence penalties on ("+pen" rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.harness import EDGEGW, free_port, start_server  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TOPICS = ["the sea", "a small robot", "autumn in the mountains", "an old library", "the first snow",
          "a busy market", "a lighthouse keeper", "quantum computers", "a cat and a dog", "the desert at night"]


@dataclass
class Result:
    label: str
    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds

    @property
    def ttft_p50(self) -> float:
        return statistics.median(self.ttfts)


def prompts(n: int) -> list[str]:
    """Prompts of different lengths (so the batch mixes lengths, as real traffic does), each different from
    its first token on: these levels measure batching, not the prefix cache."""
    return [f"{i}. Write a short story about {TOPICS[i % len(TOPICS)]}." + " Make it vivid." * (i % 5)
            for i in range(n)]


# The phone agent's sampling (frequency_penalty 0.2) plus a presence penalty: the "penalties on" rows.
PENALTIES = {"frequency_penalty": 0.2, "presence_penalty": 0.1}


async def one_request(session, url: str, model: str, prompt: str, max_tokens: int,
                      extra: dict | None = None) -> tuple[int, float]:
    """One streamed completion; returns (completion tokens from the usage chunk, TTFT).

    A lean SSE reader (aiohttp, JSON parsed only for the usage chunk) keeps the load generator's CPU low:
    on a 2-core machine it shares the cores with the server, and a heavy client would be the bottleneck.
    """
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True, **(extra or {})}
    start = time.perf_counter()
    ttft, last = None, b""
    async with session.post(url + "/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            if ttft is None and b'"text":' in line:
                ttft = time.perf_counter() - start
            if line.startswith(b"data: [DONE]"):
                break
            last = line
    usage = json.loads(last[6:])["usage"]
    return usage["completion_tokens"], ttft or 0.0


async def server_level(url: str, model: str, concurrency: int, requests: int, max_tokens: int,
                       extra: dict | None = None) -> Result:
    import aiohttp

    work = prompts(requests)
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def limited(p: str) -> tuple[int, float]:
            async with sem:
                return await one_request(session, url, model, p, max_tokens, extra)

        start = time.perf_counter()
        results = await asyncio.gather(*(limited(p) for p in work))
        seconds = time.perf_counter() - start
    label = f"server c={concurrency}" + (" +pen" if extra else "")
    return Result(label, sum(t for t, _ in results), seconds, [f for _, f in results])


def system_prompt(model_dir: Path, tokens: int, nonce: int) -> str:
    """An agent-like system prompt of about `tokens` tokens for this model's tokenizer; `nonce` makes it
    differ from the first token on, so no two are cached for each other."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    text = f"Session {nonce}. You are a phone assistant that operates apps for the user, one action at a time."
    rule = 0
    while len(tok(text, add_special_tokens=False)["input_ids"]) < tokens:
        rule += 1
        text += (f" Rule {rule}: when the screen shows {TOPICS[rule % len(TOPICS)]}, describe what you see, "
                 f"choose one action (tap, swipe, type or wait) and explain why in one sentence.")
    return text


async def first_token(url: str, model: str, system: str, question: str) -> tuple[float, int, int]:
    """One streamed chat completion; returns (TTFT, prompt tokens, cached prompt tokens)."""
    import aiohttp

    body = {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": 4, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True}
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        ttft, usage = None, None
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                if ttft is None and any(c["delta"].get("content") for c in chunk["choices"]):
                    ttft = time.perf_counter() - start
                usage = chunk.get("usage") or usage
    assert ttft is not None and usage is not None
    return ttft, usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def prefix_cache_rows(url: str, model: str, model_dir: Path, pairs: int, tokens: int) -> list[tuple[str, ...]]:
    """The same system prompt asked twice (different questions), for `pairs` different system prompts."""
    rows = []
    for i in range(pairs):
        system = system_prompt(model_dir, tokens, i)
        for label, question in (("first", "What is on the screen?"), ("second", "Which button do I tap next?")):
            ttft, prompt, cached = asyncio.run(first_token(url, model, system, question))
            rows.append((f"{i}", label, f"{prompt}", f"{cached}", f"{ttft * 1000:.0f}"))
    return rows


def print_prefix_cache(served: str, rows: list[tuple[str, ...]]) -> None:
    print(f"\n{served}: prefix cache, one system prompt asked twice (streamed chat, TTFT at the client)")
    print(f"{'prompt':>7}{'ask':>8}{'prompt tok':>12}{'cached tok':>12}{'TTFT ms':>10}")
    for row in rows:
        print(f"{row[0]:>7}{row[1]:>8}{row[2]:>12}{row[3]:>12}{row[4]:>10}")
    first = statistics.median(float(r[4]) for r in rows if r[1] == "first")
    second = statistics.median(float(r[4]) for r in rows if r[1] == "second")
    print(f"TTFT p50: first {first:.0f} ms, second {second:.0f} ms: {first / max(second, 1e-9):.1f}x shorter "
          "(target >= 5x)")


def naive_baseline(model_dir: Path, device: str, requests: int, max_tokens: int) -> Result:
    """One generate() per request, sequentially, in this process: same device, dtype and thread policy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from gpu_backend.device import configure_threads, resolve_device, resolve_dtype

    # The server's policy (all cores but one): all cores would make the baseline slower, not faster,
    # whenever anything else runs on the machine (see gpu_backend.device.configure_threads).
    configure_threads(None)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    dev = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                 dtype=resolve_dtype("auto", dev)).to(dev).eval()

    class FirstToken:
        """A generate() streamer that records when the first new token arrives."""

        def __init__(self) -> None:
            self.calls, self.at = 0, None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2 and self.at is None:  # the first put() is the prompt
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    work = prompts(requests)
    with torch.inference_mode():  # warm-up, not timed
        model.generate(**tok(work[0], return_tensors="pt").to(dev), max_new_tokens=2, do_sample=False)
    ttfts, tokens = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for p in work:
            inputs = tok(p, return_tensors="pt").to(dev)
            streamer = FirstToken()
            t0 = time.perf_counter()
            out = model.generate(**inputs, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                                 streamer=streamer, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            tokens += out.shape[1] - inputs["input_ids"].shape[1]
            ttfts.append((streamer.at or time.perf_counter()) - t0)
    return Result("naive (alone)", tokens, time.perf_counter() - start, ttfts)


def model_dir_for(name: str, args: argparse.Namespace, workdir: Path) -> tuple[str, Path]:
    if name == "tiny":
        out = workdir / "tiny"
        subprocess.run([*EDGEGW, "make-tiny-model", str(out), "--layers", str(args.tiny_layers),
                        "--hidden", str(args.tiny_hidden), "--heads", str(args.tiny_heads),
                        "--context", "2048"], check=True, env={**os.environ, **OFFLINE}, capture_output=True)
        return "tiny", out
    if name in ("smollm2", "demo"):
        from gpu_backend.models import demo_model_dir

        return "smollm2", demo_model_dir()
    return Path(name).name, Path(name)


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> None:
    served, model_dir = model_dir_for(name, args, workdir)
    levels = [int(c) for c in args.concurrency.split(",")]
    port = free_port()
    proc = start_server([*EDGEGW, "backend", "--model", str(model_dir), "--served-model-name", served,
                         "--port", str(port), "--device", args.device,
                         "--max-batch-size", str(max(levels))],
                        f"http://127.0.0.1:{port}/healthz", name="bench-backend", env=OFFLINE, timeout=600)
    url = f"http://127.0.0.1:{port}"
    try:
        prefix_rows = prefix_cache_rows(url, served, model_dir, args.prefix_pairs, args.system_tokens)
        print_prefix_cache(served, prefix_rows)
        rows = []
        for c in levels:
            n = max(c * args.waves, args.min_requests)
            rows.append(asyncio.run(server_level(url, served, c, n, args.max_tokens)))
            print(f"  {served} {rows[-1].label}: {rows[-1].tps:.1f} tok/s", flush=True)
        for c in levels[-args.penalty_levels:] if args.penalty_levels else []:
            n = max(c * args.waves, args.min_requests)
            rows.append(asyncio.run(server_level(url, served, c, n, args.max_tokens, PENALTIES)))
            print(f"  {served} {rows[-1].label}: {rows[-1].tps:.1f} tok/s", flush=True)
    finally:
        proc.stop()
    naive = naive_baseline(model_dir, args.device, args.naive_requests, args.max_tokens)
    print(f"\n{served} ({model_dir}), device {args.device}, {args.max_tokens} tokens per request")
    print(f"{'run':<18}{'requests':>9}{'tokens/s':>11}{'vs naive':>10}{'TTFT p50 ms':>13}{'TTFT max ms':>13}")
    for r in [naive, *rows]:
        n = len(r.ttfts)
        print(f"{r.label:<18}{n:>9}{r.tps:>11.1f}{r.tps / naive.tps:>9.1f}x{r.ttft_p50 * 1000:>13.0f}"
              f"{max(r.ttfts) * 1000:>13.0f}")
    for r in rows:
        if r.label.endswith(" +pen"):
            off = next(o for o in rows if o.label == r.label.removesuffix(" +pen"))
            print(f"penalties on ({', '.join(f'{k} {v}' for k, v in PENALTIES.items())}) at "
                  f"{r.label.removesuffix(' +pen').removeprefix('server ')}: {r.tps / off.tps:.2f}x the "
                  "throughput with them off")
    print("(naive TTFT excludes queueing: a request behind k others in the naive server waits k full "
          f"requests, {naive.seconds / len(naive.ttfts) * 1000:.0f} ms each)")
    print_prefix_cache(served, prefix_rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="tiny | smollm2 | DIR (repeatable; default tiny + smollm2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--waves", type=int, default=2, help="requests per level = concurrency x waves")
    p.add_argument("--min-requests", type=int, default=4)
    p.add_argument("--penalty-levels", type=int, default=2,
                   help="rerun the last N concurrency levels with frequency/presence penalties on (0: none)")
    p.add_argument("--naive-requests", type=int, default=4)
    p.add_argument("--system-tokens", type=int, default=1000, help="system prompt size for the prefix-cache run")
    p.add_argument("--prefix-pairs", type=int, default=3, help="system prompts each asked twice")
    p.add_argument("--tiny-layers", type=int, default=2)
    p.add_argument("--tiny-hidden", type=int, default=64)
    p.add_argument("--tiny-heads", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp:
        for name in args.model or ["tiny", "smollm2"]:
            bench_model(name, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
