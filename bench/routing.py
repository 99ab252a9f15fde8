"""`make bench-routing`: least_outstanding, round_robin and inference in one run, on simulated replicas.

One gateway process with three pools (one per balancer), each in front of its own set of simulated
replicas (`python -m gpu_backend.sim`, one process per set). Every level sends the same open-loop
plan (bench/routing_workloads.py) to the three pools at once, so they share the machine's noise.
The simulator runs on a slowed clock (`--scale`): figures are printed in simulated seconds.

Per workload, each replica's KV is sized like llm-d's benchmark: the prefix working set at the heavy
level about 0.75 of the pool's KV (about 3x one replica's with 4 replicas).

"most / fewest per replica" counts the requests each replica ran that arrived while every other
replica had a free batch slot (the issue's "while the others have free slots"); `full` is the share
of requests left out of that count (0% when no replica ever filled its `max_num_seqs`).

`--topology`: each pool behind several independent routers (gateway processes x workers, every
request to a random gateway): least_outstanding 2x2, inference 1x1, inference 2x2 (each worker its own
index) and inference 2x2 redis (`inference.shared_index` through a redis-server started here).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing_workloads import AGENT_STEPS, GROUPS, WORKLOADS, Session  # noqa: E402

from gpu_backend.sim.model import SimConfig, prompt_blocks  # noqa: E402

BALANCERS = ("least_outstanding", "round_robin", "inference")


@dataclass(frozen=True)
class Variant:
    """One pool under test: its balancer, on `gateways` gateway processes of `workers` workers each."""

    label: str
    balancer: str
    gateways: int = 1
    workers: int = 1
    shared: bool = False  # `inference.shared_index` through the bench's redis-server

    @property
    def model(self) -> str:
        return "sim-" + self.label.replace(" ", "-")


DEFAULT = tuple(Variant(b, b) for b in BALANCERS)
# --topology: do independent routers (2 gateway replicas x 2 workers) agree well enough without a picker, and
# with their prefix indexes shared through Redis?
TOPOLOGY = (Variant("least_outstanding 2x2", "least_outstanding", 2, 2), Variant("inference 1x1", "inference"),
            Variant("inference 2x2", "inference", 2, 2), Variant("inference 2x2 redis", "inference", 2, 2, True))
# Requests (or sessions) per simulated second: light, medium, heavy (past least_outstanding's saturation).
LEVELS = {"agent": (1.5, 3.5, 5.0), "groups": (10.0, 25.0, 42.0), "unique": (8.0, 16.0, 26.0)}


def _free_ports(n: int) -> int:
    """`n` consecutive free ports below the ephemeral range (32768 and up on Linux): the load generator's
    connections (and every other process's) take ephemeral ports, and one could take a server's port
    between this check and the server's bind."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(20000, 32700 - n)
        if all(_free(p) for p in range(base, base + n)):
            return base
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@contextmanager
def _process(args: list[str], ready: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT),
                                     "BENCH_ROUTING_SECRET": "bench-routing-" + "x" * 32})
    try:
        deadline = time.monotonic() + 60
        for url in ready:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{' '.join(args[:3])} did not start:\n{log.read_text()[-2000:]}") from None
                    time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"{' '.join(args[:3])} did not stop in 10 s: killed; log tail:\n{log.read_text()[-1500:]}")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def kv_blocks(workload: str, replicas: int, sim: SimConfig, heavy: float) -> int:
    """Per replica: the workload's prefix working set over 0.75 of the pool."""
    if workload == "agent":
        live = heavy * AGENT_STEPS * 1.9  # sessions alive at once (about 1.9 s a step)
        working = 2000 + live * (1000 + sim.image_tokens)  # shared system prompt + each session's own
    else:  # the groups' prefixes (the unique workload has none: sized like the groups)
        working = GROUPS * 1500
    return math.ceil(working / sim.block_tokens / 0.75 / replicas)


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    errors: int = 0
    last_done: float = 0.0  # perf_counter of the last answer's end
    first_error: str = ""
    span: float = 0.0


async def _one(http: aiohttp.ClientSession, url: str, model: str, body: dict[str, Any], max_tokens: int,
               scale: float, res: Result) -> None:
    payload = orjson.dumps({**body, "model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
                            "stream_options": {"include_usage": True}})
    started = time.perf_counter()
    first = None
    tail = b""
    try:
        async with http.post(url, data=payload, headers={"content-type": "application/json"}) as resp:
            if resp.status != 200:
                res.errors += 1
                res.first_error = res.first_error or f"{resp.status} {(await resp.read())[:300]!r}"
                return
            async for chunk in resp.content.iter_any():
                if first is None and b"data:" in chunk:
                    first = time.perf_counter()
                tail = (tail + chunk)[-4096:]
    except (aiohttp.ClientError, TimeoutError) as exc:
        res.errors += 1
        res.first_error = res.first_error or repr(exc)
        return
    done = time.perf_counter()
    usage_at = tail.rfind(b'"usage":')
    if first is None or usage_at < 0:
        res.errors += 1
        res.first_error = res.first_error or f"no usage in the stream's end: {tail[-300:]!r}"
        return
    usage = orjson.loads(tail[usage_at + 8:tail.index(b"}}", usage_at) + 2])
    res.ttft.append((first - started) / scale)
    res.e2e.append((done - started) / scale)
    res.output_tokens += usage["completion_tokens"]
    res.prompt_tokens += usage["prompt_tokens"]
    res.cached_tokens += usage["prompt_tokens_details"]["cached_tokens"]
    res.last_done = max(res.last_done, done)


async def _session(http: aiohttp.ClientSession, urls: list[str], model: str, s: Session, scale: float, t0: float,
                   res: Result, rnd: random.Random) -> None:
    await asyncio.sleep(max(0.0, t0 + s.at * scale - time.perf_counter()))
    for body in s.bodies:  # each step through any of the pool's gateways (as behind a load balancer)
        await _one(http, rnd.choice(urls), model, body, s.max_tokens, scale, res)


async def run_level(urls: dict[Variant, list[str]], plan: list[Session], scale: float) -> dict[Variant, Result]:
    results = {v: Result() for v in urls}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # no keep-alive reuse races
    timeout = aiohttp.ClientTimeout(total=600)
    rnd = random.Random(7)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(_session(http, u, v.model, s, scale, t0, results[v], rnd)
                               for s in plan for v, u in urls.items()))
        for r in results.values():  # from the first arrival to this pool's last answer
            r.span = (r.last_done - t0) / scale
    return results


def best_hit_share(plan: list[Session], sim: SimConfig) -> float:
    """Cached prompt tokens if every request found every earlier-sent block: the workload's best."""
    seen: set[bytes] = set()
    cached = total = 0
    for s in sorted(plan, key=lambda s: s.at):
        for body in s.bodies:
            blocks, tokens = prompt_blocks({**body, "model": "x"}, sim)
            hit = 0
            for b in blocks:
                if b not in seen:
                    break
                hit += 1
            seen.update(blocks)
            cached += min(tokens, hit * sim.block_tokens)
            total += tokens
    return cached / total if total else 0.0


def _replica_requests(ports: list[int]) -> list[tuple[int, int]]:
    """Per replica: requests run, and those that arrived while every other replica had a free slot."""
    import urllib.request

    out = []
    for p in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{p}/_stats", timeout=5) as r:
            stats = orjson.loads(r.read())
            out.append((stats["requests"], stats["requests_others_free"]))
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _gateway_config(variant: Variant, ports: list[int], inference: dict[str, Any]) -> dict[str, Any]:
    pool: dict[str, Any] = {"name": "p", "models": [variant.model], "image_models": ["sim-*"],
                            "balancer": variant.balancer, "max_inflight_per_endpoint": 4096,
                            "endpoints": [{"url": f"http://127.0.0.1:{p}"} for p in ports],
                            "timeouts": {"first_byte_s": 600, "total_s": 1200}}
    if variant.balancer == "inference":
        pool["inference"] = inference
    return {
        "server": {"access_log": "off"},
        "admin": {"enabled": False},
        "issuers": [{"name": "bench", "issuer": "https://bench", "algorithms": ["HS256"],
                     "secret_env": "BENCH_ROUTING_SECRET"}],
        "pools": [pool],
        "routes": [{"name": "bench", "paths": ["/v1/chat/completions"], "auth": "none"}],
    }


def measure(workload: str, args: argparse.Namespace, tmp: Path) -> None:
    variants = TOPOLOGY if args.topology else DEFAULT
    levels = LEVELS[workload][-1:] if args.quick else LEVELS[workload]
    sim = SimConfig(time_scale=args.scale)
    sim = SimConfig(**{**sim.__dict__, "kv_blocks": kv_blocks(workload, args.replicas, sim, LEVELS[workload][-1])})
    print(f"\n## ({workload}) {args.replicas} replicas x {sim.kv_blocks} KV blocks of {sim.block_tokens} tokens, "
          f"max_num_seqs {sim.max_num_seqs}, time scale {args.scale}", flush=True)
    gateways = sum(v.gateways for v in variants)
    base = _free_ports(len(variants) * args.replicas + gateways + 1)
    redis_url = f"redis://127.0.0.1:{base + len(variants) * args.replicas + gateways}/0"
    ports = {v: [base + i * args.replicas + r for r in range(args.replicas)] for i, v in enumerate(variants)}
    gw_ports: dict[Variant, list[int]] = {}
    nxt = base + len(variants) * args.replicas
    for v in variants:
        gw_ports[v] = list(range(nxt, nxt + v.gateways))
        nxt += v.gateways
    sim_args = [f"--{k.replace('_', '-')}={v}" for k, v in sim.__dict__.items()]
    with ExitStack() as stack:
        if any(v.shared for v in variants):
            port = redis_url.rsplit(":", 1)[1].split("/")[0]
            stack.enter_context(_process(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no"], [f"redis://127.0.0.1:{port}"], tmp / "redis.log"))
        for v in variants:
            stack.enter_context(_process(
                [sys.executable, "-m", "gpu_backend.sim", "--port", str(ports[v][0]), "--replicas",
                 str(args.replicas), "--model", v.model, "--chunk-tokens", "8", *sim_args],
                [f"http://127.0.0.1:{p}" for p in ports[v]], tmp / f"sim-{v.model}.log"))
            config = tmp / f"gw-{v.model}.yaml"
            settings = {**_inference_settings(args), **({"shared_index": {"redis_url": redis_url}} if v.shared else {})}
            config.write_text(yaml.safe_dump(_gateway_config(v, ports[v], settings)))
            for port in gw_ports[v]:
                stack.enter_context(_process(
                    [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port),
                     "--workers", str(v.workers)], [f"http://127.0.0.1:{port}"], tmp / f"gw-{port}.log"))
        time.sleep(1.0)
        urls = {v: [f"http://127.0.0.1:{p}/v1/chat/completions" for p in gw_ports[v]] for v in variants}
        for i, rate in enumerate(levels):
            plan = WORKLOADS[workload](rate, args.duration, seed=1000 + i)
            before = {v: _replica_requests(ports[v]) for v in variants}
            results = asyncio.run(run_level(urls, plan, args.scale))
            after = {v: _replica_requests(ports[v]) for v in variants}
            per_replica = {v: [(x[0] - y[0], x[1] - y[1]) for x, y in zip(after[v], before[v], strict=True)]
                           for v in variants}
            _print_level(workload, rate, results, best_hit_share(plan, sim), per_replica)
            for v, r in results.items():  # what the failing variant's gateways said
                for port in gw_ports[v] if r.errors else []:
                    print(f"{v.label} gateway :{port} log tail:\n{(tmp / f'gw-{port}.log').read_text()[-1500:]}")


def _inference_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"load_factor": args.load_factor} if args.load_factor else {}


def _print_level(workload: str, rate: float, results: dict[Variant, Result], best: float,
                 per_replica: dict[Variant, list[tuple[int, int]]]) -> None:
    unit = "sessions/s" if workload == "agent" else "req/s"
    print(f"\n({workload}) {rate:g} {unit}; best possible hit share {best * 100:.0f}%")
    print(f"{'balancer':<23}{'reqs':>6}{'err':>5}{'TTFT p50':>10}{'p90':>8}{'p99':>8}{'e2e p90':>9}{'out tok/s':>11}"
          f"{'hit share':>11}{'of best':>9}{'most/fewest per replica':>26}{'full':>6}")
    by_label = {v.label: r for v, r in results.items()}
    for b, r in results.items():
        share = r.cached_tokens / r.prompt_tokens if r.prompt_tokens else 0.0
        # "No replica runs more than 1.5x the requests of the least loaded one while the others have free
        # slots": requests that found another replica without a free slot (all of max_num_seqs running)
        # are left out of most / fewest; `full` is their share.
        counts = [free for _, free in per_replica[b]]
        full = 1.0 - sum(counts) / max(1, sum(total for total, _ in per_replica[b]))
        print(f"{b.label:<23}{len(r.ttft):>6}{r.errors:>5}{_pct(r.ttft, .5):>9.2f}s{_pct(r.ttft, .9):>7.2f}s"
              f"{_pct(r.ttft, .99):>7.2f}s{_pct(r.e2e, .9):>8.2f}s{r.output_tokens / r.span:>11.0f}"
              f"{share * 100:>10.0f}%{share / best * 100 if best else 0:>8.0f}%"
              f"{max(counts):>13} / {min(counts):<4} ({max(counts) / max(1, min(counts)):.2f}x){full * 100:>5.0f}%")
    for b, r in results.items():
        if r.first_error:
            print(f"{b.label}: first error: {r.first_error}")
    base = next(r for label, r in by_label.items() if label.startswith("least_outstanding"))
    for label, inf in by_label.items():
        if label.startswith("inference") and inf.ttft and base.ttft:
            _ratios(label, inf, base)


def _ratios(label: str, inf: Result, lo: Result) -> None:
    print(f"{label} vs least_outstanding: TTFT p90 {_pct(lo.ttft, .9) / _pct(inf.ttft, .9):.2f}x lower, "
          f"tok/s {(inf.output_tokens / inf.span) / (lo.output_tokens / lo.span):.2f}x", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=4, choices=range(4, 9), metavar="4..8")
    parser.add_argument("--scale", type=float, default=2.0, help="simulated clock slow-down (wall s per sim s)")
    parser.add_argument("--duration", type=float, default=20.0, help="simulated seconds of arrivals per level")
    parser.add_argument("--workloads", default="groups,agent,unique")
    parser.add_argument("--load-factor", type=float, default=None, help="the inference pool's load_factor")
    parser.add_argument("--topology", action="store_true",
                        help="least_outstanding 2x2, inference 1x1 and 2x2 (gateway replicas x workers) instead")
    parser.add_argument("--quick", action="store_true", help="the heavy level only")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so the simulators and gateways started here are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
        for workload in args.workloads.split(","):
            measure(workload, args, Path(tmp))


if __name__ == "__main__":
    main()
