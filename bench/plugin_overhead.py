"""Added latency per wasm plugin per request, and cold load from the module cache vs a fresh compile.

    python bench/plugin_overhead.py [--requests N]

1. In process: the plugin stage's `on_request` for one request, for a header-only plugin (router)
   and a body-rewriting one (redact), against the same route with no plugins, in the same run.
2. Through a real gateway: the gateway's own `x-edgegw-overhead-ms` (upstream time excluded) for
   routes with and without the plugin, sequential requests over keep-alive; and the gateway
   process's CPU time per request (all its threads, from /proc), which a busy machine does not inflate
   the way it inflates wall-clock latency. Variants alternate in blocks so drift hits them alike.
3. Cold load: compile from bytes vs deserialize from the on-disk cache, plus instantiate+configure.

`--instructions` measures instead the plugin stage's CPU instructions per request in process under
callgrind (needs valgrind; a few minutes): two runs per variant with different request counts, the
difference divided by the extra requests, so start-up cancels out. The figure a noisy shared machine
does not move (the epoch ticker is stopped in these runs: its instructions would scale with time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGEGW_PLUGIN_CACHE_DIR", tempfile.mkdtemp(prefix="edgegw-bench-cache-"))

from _common import cpu_seconds  # noqa: E402

from testkit.harness import free_port  # noqa: E402

ROUTER = {"rules": ["header:x-partner-tier=premium->premium", "tenant=acme->premium"], "default": "default"}
REDACT = {"max_tokens": 64}
PROMPT = "Summarise: contact jane.doe@example.com or +1 415 555 0132 about order 42. " * 4


def process_cpu_s(pid: int) -> float:
    """CPU seconds of every thread of `pid`. /proc/PID/stat counts in 10 ms ticks, too coarse for
    blocks of ~0.1 s; the scheduler's own sum_exec_runtime (ns, in /proc/PID/task/*/sched) is exact.
    Falls back to the tick counts where the kernel does not expose it."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "sched").read_text().splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    total += float(line.split(":")[1]) / 1000.0  # milliseconds
                    break
            else:
                return cpu_seconds(pid)
    except OSError:
        return cpu_seconds(pid)
    return total


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def row(name: str, samples: list[float], base: list[float] | None = None) -> str:
    p50, p99 = pct(samples, 0.5), pct(samples, 0.99)
    extra = ""
    if base is not None:
        extra = f"  added p50 {p50 - pct(base, 0.5):8.1f} us  added p99 {p99 - pct(base, 0.99):8.1f} us"
    return f"  {name:28s} p50 {p50:8.1f} us  p99 {p99:8.1f} us{extra}"


async def in_process(built: dict[str, Path], n: int) -> None:
    from gateway.config.schema import RouteConfig
    from gateway.context import RequestContext
    from gateway.plugins.config import NAME, PluginBinding
    from gateway.plugins.embedder import plugin_manager
    from gateway.plugins.stage import PluginPhaseStage
    from wasm_plugins.config import Limits, PluginConfig, encode_config

    relaxed = Limits(deadline_ms=100)  # wall-clock: keep a busy benchmark machine from tripping it
    specs = (PluginConfig("router", str(built["router"]), config=encode_config(ROUTER), config_value=ROUTER,
                          limits=relaxed),
             PluginConfig("redact", str(built["redact"]), config=encode_config(REDACT), config_value=REDACT,
                          limits=relaxed))
    manager = plugin_manager(specs, None)
    await manager.start()
    body = b'{"model":"m","prompt":"%s","max_tokens":500}' % PROMPT.encode()
    routes = {
        "no plugins": (RouteConfig("none", ("/v1/completions",)), "routing"),
        "header-only (router)": (RouteConfig("r", ("/v1/completions",),
                                             sections={NAME: (PluginBinding("router", "routing"),)}), "routing"),
        "body rewrite (redact)": (RouteConfig("p", ("/v1/completions",),
                                              sections={NAME: (PluginBinding("redact", "preprocess"),)}), "preprocess"),
    }
    stages = {phase: PluginPhaseStage(manager, phase) for phase in ("routing", "preprocess")}
    results: dict[str, list[float]] = {name: [] for name in routes}
    for i in range(n + 200):  # interleaved, so drift hits every variant alike; the first 200 warm up
        for name, (route, phase) in routes.items():
            # The same request as through the gateway: no tier header, so the router tries every
            # rule before its default (its most expensive path).
            ctx = RequestContext("bench", "POST", "/v1/completions",
                                 {"host": "gw", "content-type": "application/json"}, "127.0.0.1", body=body)
            ctx.route = route
            stage = stages[phase]
            started = time.perf_counter()
            if stage.enabled_for(ctx):
                await stage.on_request(ctx)
            if i >= 200:
                results[name].append((time.perf_counter() - started) * 1e6)
    base = results["no plugins"]
    print(f"in process, {n} requests each (the plugin stage alone):")
    for name, samples in results.items():
        print(row(name, samples, None if samples is base else base))
    await manager.stop()


async def stage_loop(built: dict[str, Path], variant: str, n: int) -> None:
    """`n` requests (after 200 to warm up) through one variant's plugin stage: the body of a
    callgrind run (`--instructions`)."""
    import wasm_plugins.engine

    wasm_plugins.engine._tick = lambda eng: None  # no epoch thread: deadlines never fire here
    from gateway.config.schema import RouteConfig
    from gateway.context import RequestContext
    from gateway.plugins.config import NAME, PluginBinding
    from gateway.plugins.embedder import plugin_manager
    from gateway.plugins.stage import PluginPhaseStage
    from wasm_plugins.config import Limits, PluginConfig, encode_config

    config = {"router": ROUTER, "redact": REDACT}.get(variant)
    phase = "preprocess" if variant == "redact" else "routing"
    specs = () if config is None else (PluginConfig(variant, str(built[variant]), config=encode_config(config),
                                                    config_value=config, limits=Limits(deadline_ms=10_000)),)
    manager = plugin_manager(specs, None)
    await manager.start()
    bindings = () if config is None else (PluginBinding(variant, phase),)
    route = RouteConfig("r", ("/v1/completions",), sections={NAME: bindings} if bindings else {})
    stage = PluginPhaseStage(manager, phase)
    body = b'{"model":"m","prompt":"%s","max_tokens":500}' % PROMPT.encode()
    for i in range(200 + n):
        if i == 200:
            # Everything alive now stays out of later collections: a full collection scans the whole
            # heap (imports included), and where one falls would otherwise swamp the difference.
            gc.collect()
            gc.freeze()
        ctx = RequestContext("bench", "POST", "/v1/completions", {"host": "gw", "content-type": "application/json"},
                             "127.0.0.1", body=body)
        ctx.route = route
        if stage.enabled_for(ctx):
            await stage.on_request(ctx)
            await stage.on_response(ctx)
    await manager.stop()


def instructions() -> None:
    """Instructions per request of each variant's plugin stage (see the module docstring)."""
    import re
    import subprocess

    counts: dict[str, float] = {}
    for variant in ("none", "router", "redact"):
        totals = []
        for n in (300, 2300):
            proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                   __file__, "--stage-loop", variant, "--requests", str(n)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            found = re.search(r"Collected : (\d+)", proc.stderr)
            if proc.returncode != 0 or found is None:
                raise RuntimeError(f"callgrind run failed:\n{proc.stderr[-2000:]}")
            totals.append(int(found.group(1)))
        counts[variant] = (totals[1] - totals[0]) / 2000
    print("instructions per request, plugin stage in process (callgrind):")
    for variant, name in (("none", "no plugins"), ("router", "header-only (router)"),
                          ("redact", "body rewrite (redact)")):
        extra = "" if variant == "none" else f"  added {counts[variant] - counts['none']:10.0f}"
        print(f"  {name:28s} {counts[variant]:10.0f}{extra}")


def through_gateway(built: dict[str, Path], n: int, block: int) -> None:
    import httpx
    import yaml

    from testkit.harness import EDGEGW, start_server

    os.environ.setdefault("EDGEGW_TEST_SECRET", "bench-secret-0123456789-abcdefghijklmnop")
    bport, gport = free_port(), free_port()
    backend = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(bport)],
                           f"http://127.0.0.1:{bport}/healthz", name="bench-backend")
    paths = ["/v1/completions"]
    cfg: dict[str, Any] = {
        "server": {"access_log": "off"},
        "pools": [{"name": "default", "models": ["fake-model", "m-*"], "endpoints": [{"url": f"http://127.0.0.1:{bport}"}]}],
        "plugins": [{"name": "router", "file": str(built["router"]), "config": ROUTER,
                     "limits": {"deadline_ms": 100}},
                    {"name": "redact", "file": str(built["redact"]), "config": REDACT,
                     "limits": {"deadline_ms": 100}}],
        "routes": [{"name": "plain", "paths": paths, "models": ["m-plain"], "auth": "none"},
                   {"name": "router", "paths": paths, "models": ["m-router"], "auth": "none",
                    "plugins": [{"name": "router", "phase": "routing"}]},
                   {"name": "redact", "paths": paths, "models": ["m-redact"], "auth": "none",
                    "plugins": [{"name": "redact", "phase": "preprocess"}]}],
    }
    path = Path(tempfile.mkdtemp()) / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    gw = start_server([*EDGEGW, "serve", "--config", str(path), "--port", str(gport)],
                      f"http://127.0.0.1:{gport}/healthz", name="bench-gateway")
    try:
        models = {"m-plain": "no plugins", "m-router": "header-only (router)", "m-redact": "body rewrite (redact)"}
        results: dict[str, list[float]] = {model: [] for model in models}
        cpu: dict[str, float] = dict.fromkeys(models, 0.0)
        pid = gw.popen.pid
        with httpx.Client(base_url=f"http://127.0.0.1:{gport}", timeout=10) as client:

            def send(model: str, count: int, samples: list[float] | None) -> None:
                for _ in range(count):
                    resp = client.post("/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": 2})
                    assert resp.status_code == 200, resp.text
                    if samples is not None:
                        samples.append(float(resp.headers["x-edgegw-overhead-ms"]) * 1000)

            for model in models:
                send(model, 100, None)  # warm up
            done = 0
            while done < n:
                count = min(block, n - done)
                for model, samples in results.items():
                    before = process_cpu_s(pid)
                    send(model, count, samples)
                    cpu[model] += process_cpu_s(pid) - before
                done += count
        base = results["m-plain"]
        print(f"through the gateway, {n} requests each (x-edgegw-overhead-ms, upstream excluded):")
        for model, name in models.items():
            print(row(name, results[model], None if model == "m-plain" else base))
        per_req = {model: cpu[model] / n * 1e6 for model in models}
        print("gateway CPU us per request (all threads of the gateway process, whole request):")
        for model, name in models.items():
            extra = "" if model == "m-plain" else f"  plugin cost {per_req[model] - per_req['m-plain']:8.1f} us"
            print(f"  {name:28s} {per_req[model]:8.1f} us{extra}")
    finally:
        gw.stop()
        backend.stop()


def cold_load(built: dict[str, Path]) -> None:
    from wasm_plugins.config import Limits
    from wasm_plugins.engine import compile_module
    from wasm_plugins.module import inspect
    from wasm_plugins.services import Services
    from wasm_plugins.version import PluginVersion, VersionMeta

    print("cold load (median of 20):")
    for name in ("router", "auth"):
        data = built[name].read_bytes()
        compile_module(data)  # fill the cache
        fresh = [compile_module(data, use_cache=False).seconds for _ in range(20)]
        cached = [compile_module(data).seconds for _ in range(20)]
        compiled = compile_module(data)
        config = ROUTER if name == "router" else {"keys": ["k|s|t|x"]}
        starts = []
        for _ in range(20):
            v = PluginVersion(name, 1, compiled, inspect(compiled.module), Limits(), b"", {}, config,
                              VersionMeta("bench"), Services())
            t = time.perf_counter()
            v.prepare({v.config_for(None)})
            starts.append(time.perf_counter() - t)
        print(f"  {name:8s} ({len(data):6d} bytes): compile {statistics.median(fresh) * 1000:7.2f} ms   "
              f"from cache {statistics.median(cached) * 1000:7.2f} ms   "
              f"instantiate+configure {statistics.median(starts) * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--block", type=int, default=100, help="requests per variant before switching (CPU reads)")
    parser.add_argument("--instructions", action="store_true",
                        help="instead: instructions per request under callgrind (valgrind), the noise-free figure")
    parser.add_argument("--stage-loop", default=None, help=argparse.SUPPRESS)  # one callgrind run's body
    args = parser.parse_args()
    from wasm_plugins.build import build_all

    if args.stage_loop is not None:
        built = {name: ROOT / "build" / "plugins" / f"{name}.wasm" for name in ("router", "redact")}
        asyncio.run(stage_loop(built, args.stage_loop, args.requests))
        return
    built = build_all(ROOT / "build" / "plugins")
    if args.instructions:
        instructions()
        return
    asyncio.run(in_process(built, args.requests))
    if not args.skip_gateway:
        through_gateway(built, max(200, args.requests // 3), args.block)
    cold_load(built)


if __name__ == "__main__":
    main()
