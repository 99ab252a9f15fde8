"""Capacity of the gateway alone: `edgegw loadtest --sweep` against the fake backend directly and through
one gateway (JWT auth, a rate limit on the route, 1 or 2 workers), side by side.

The fake backend answers instantly (or streams tokens at --token-delay), so what bends is the gateway
(and, on a small machine, the load generator sharing its cores). Run:
`python bench/loadtest_capacity.py [--sweep users=1,4,16,64] [--duration 4s] [--workers 1] [--stream]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _common import EDGEGW, ROOT, free_port, start_server

SECRET = "bench-secret-0123456789-0123456789-abcdef"


def sweep(label: str, url: str, token: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [*EDGEGW, "loadtest", url, "--model", "fake-model", "--sweep", args.sweep, "--duration", args.duration,
           "--max-tokens", str(args.max_tokens), "--quiet", "--report", str(out / label)]
    if args.stream:
        cmd.append("--stream")
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "EDGEGW_LOADTEST_TOKEN": token}, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / label / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", default="users=1,4,16,64")
    parser.add_argument("--duration", default="4s")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    os.environ["EDGEGW_BENCH_SECRET"] = SECRET
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-capacity-"))
    bport, gport = free_port(), free_port()
    backend = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(bport), "--token-delay",
                            str(args.token_delay)], f"http://127.0.0.1:{bport}/healthz", name="fake-backend")
    config = {
        "server": {"access_log": "off"},
        "issuers": [{"name": "bench", "issuer": "https://bench.idp", "algorithms": ["HS256"],
                     "secret_env": "EDGEGW_BENCH_SECRET", "audience": "edgegw"}],
        "pools": [{"name": "p", "models": ["fake-model"], "endpoints": [{"url": f"http://127.0.0.1:{bport}"}]}],
        "routes": [{"name": "r", "paths": ["/v1/completions", "/v1/chat/completions"],
                    "rate_limits": [{"name": "partner", "key": "subject", "requests_per_minute": 10_000_000}]}],
        "admin": {"issuer": "bench"},
    }
    (tmp / "gw.yaml").write_text(yaml.safe_dump(config))
    gateway = start_server([*EDGEGW, "serve", "--config", str(tmp / "gw.yaml"), "--port", str(gport),
                            "--workers", str(args.workers)], f"http://127.0.0.1:{gport}/readyz", name="gateway")
    try:
        from gateway.auth.mint import mint_token
        from gateway.features import load_config

        token = mint_token(load_config(tmp / "gw.yaml").issuers[0], "bench-partner", ttl_s=3600)
        direct = sweep("direct", f"http://127.0.0.1:{bport}", token, args, tmp)
        through = sweep("gateway", f"http://127.0.0.1:{gport}", token, args, tmp)
    finally:
        gateway.stop()
        backend.stop()
    print(f"\nCapacity: {args.sweep}, {args.duration} per point, gateway workers {args.workers}, "
          f"{'streaming' if args.stream else 'not streaming'} {args.max_tokens} tokens, token delay "
          f"{args.token_delay * 1000:g} ms, {os.cpu_count()} cores shared by load generator, gateway and backend")
    print(f"{'load':>6} {'direct ok/s':>12} {'gateway ok/s':>13} {'ratio':>6} {'direct p50':>11} {'gw p50':>8} "
          f"{'gw p99':>8} {'gw TTFT p50':>12} {'overhead p50':>13} {'gw err%':>8}")
    for d, g, run in zip(direct["points"], through["points"], through["runs"], strict=True):
        overhead = run["summary"]["overhead_ms"]["p50"]
        print(f"{d['load']:>6g} {d['throughput']:>12.1f} {g['throughput']:>13.1f} "
              f"{g['throughput'] / max(d['throughput'], 1e-9):>6.2f} {_ms(d['latency_p50']):>11} "
              f"{_ms(g['latency_p50']):>8} {_ms(g['latency_p99']):>8} {_ms(g['ttft_p50']):>12} "
              f"{'-' if overhead is None else f'{overhead:.2f}':>13} {g['error_rate'] * 100:>8.1f}")
    print(f"knee direct: {direct['knee']['knee']:g} ({direct['knee']['reason']})")
    print(f"knee gateway: {through['knee']['knee']:g} ({through['knee']['reason']})")
    print(f"reports: {tmp}/direct/report.html {tmp}/gateway/report.html")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


if __name__ == "__main__":
    main()
