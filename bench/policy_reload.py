"""Policy hot reload: how long a changed policy file takes to be served by every worker, and what
versioning costs per request (before/after, in the same run).

    python bench/policy_reload.py                       # reload time, 200-route policy, 2 workers
    python bench/policy_reload.py --routes 50 --workers 4
    python bench/policy_reload.py --before DIR          # + req/s and CPU per request: DIR's gateway
                                                        #   (a checkout without hot reload) vs this one
    python bench/policy_reload.py --before DIR --instructions   # callgrind instructions instead

Reload time is measured from the file's rename to the moment `/metrics` shows the new
`edgegw_policy_info` version for every worker (polled every 10 ms), and, inside the workers, the
validate+build+start+swap time (`edgegw_policy_reload_seconds`, the slowest worker).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from _common import EDGEGW, ROOT, Proc, free_port, instructions_per_request, start_server, wrk

SECRET = "bench-secret-0123456789-0123456789-abcdef"


def policy(backend_port: int, routes: int, limit: int, log: str) -> dict:
    models = [f"model-{i}" for i in range(routes)]
    return {
        "server": {"access_log": log},
        "admin": {"issuer": "bench"},
        "issuers": [{"name": "bench", "issuer": "https://bench.idp", "algorithms": ["HS256"],
                     "secret_env": "EDGEGW_BENCH_SECRET", "audience": "edgegw"}],
        "pools": [{"name": "p", "models": ["fake-model", *models],
                   "endpoints": [{"url": f"http://127.0.0.1:{backend_port}"}]}],
        "routes": [{"name": "r", "paths": ["/v1/completions", "/v1/chat/completions"], "models": ["fake-model"]},
                   *({"name": f"route-{i}", "paths": ["/v1/completions", "/v1/chat/completions"],
                      "models": [m],
                      "rate_limits": [{"name": "per-caller", "key": "subject", "requests_per_minute": limit}]}
                     for i, m in enumerate(models))],
    }


def versions(url: str) -> dict[str, str]:
    out = {}
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("edgegw_policy_info{") and line.endswith(" 1.0"):
            pid = re.search(r'pid="(\d+)"', line)
            out[pid.group(1) if pid else "-"] = re.search(r'version="(\w+)"', line).group(1)  # type: ignore[union-attr]
        if line.startswith("edgegw_policy_reload_seconds"):
            out["_swap_s"] = line.rsplit(" ", 1)[1]
    return out


def reload_times(args: argparse.Namespace, backend_port: int, tmp: Path) -> None:
    from gateway.policy.version import policy_hash

    path = tmp / "gw.yaml"
    path.write_text(yaml.safe_dump(policy(backend_port, args.routes, 1000, "off")))
    port = free_port()
    gw = start_server([*EDGEGW, "serve", "--config", str(path), "--port", str(port), "--workers", str(args.workers)],
                      f"http://127.0.0.1:{port}/readyz", name="gateway")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while len([k for k in versions(url) if not k.startswith("_")]) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not all report a version")
            time.sleep(0.1)
        rows = []
        for i in range(args.reloads):
            text = yaml.safe_dump(policy(backend_port, args.routes, 2000 + i, "off"))
            tmp_file = path.with_name("gw.yaml.new")
            tmp_file.write_text(text)
            started = time.perf_counter()
            os.replace(tmp_file, path)
            want = policy_hash(text)
            while True:
                seen = versions(url)
                workers = {k: v for k, v in seen.items() if not k.startswith("_")}
                if len(workers) >= args.workers and set(workers.values()) == {want}:
                    break
                if time.perf_counter() - started > 30:
                    raise SystemExit(f"reload {i} not served by every worker after 30 s: {seen}")
                time.sleep(0.01)
            rows.append((time.perf_counter() - started, float(seen.get("_swap_s", "nan"))))
            time.sleep(0.5)
        print(f"\nPolicy reload, {args.routes + 1} routes (each with a rate limit), {args.workers} workers, "
              f"{os.cpu_count()} cores (shared machine), file watch polled every 0.25 s:")
        print(f"{'reload':<8}{'file -> every worker s':>24}{'swap in worker s':>18}")
        for i, (total, swap) in enumerate(rows):
            print(f"{i + 1:<8}{total:>24.3f}{swap:>18.3f}")
        totals = sorted(t for t, _ in rows)
        print(f"median {totals[len(totals) // 2]:.3f} s, max {totals[-1]:.3f} s (target: under 1 s)")
    finally:
        gw.stop()


def gateway_args(checkout: Path | None, config: Path, port: int) -> list[str]:
    """`edgegw serve` from this tree, or from `checkout` (its `gateway` package first on sys.path)."""
    serve = ["serve", "--config", str(config), "--port", str(port)]
    if checkout is None:
        return [*EDGEGW, *serve]
    boot = f"import sys; sys.path.insert(0, {str(checkout)!r}); from gateway.cli import main; sys.exit(main())"
    return [sys.executable, "-c", boot, *serve]


def overhead(args: argparse.Namespace, backend_port: int, tmp: Path) -> None:
    from gateway.auth.mint import mint_token
    from gateway.features import load_config

    config = tmp / "overhead.yaml"
    config.write_text(yaml.safe_dump(policy(backend_port, 0, 1000, str(tmp / "access.log"))))
    token = mint_token(load_config(config).issuers[0], "bench-partner", ttl_s=3600)
    body = {"model": "fake-model", "prompt": "hello", "max_tokens": 4}
    auth = {"authorization": f"Bearer {token}"}
    trees = {"before": Path(args.before).resolve(), "after": None}
    # A fixed hash seed: string hashing otherwise moves dict probing, and instruction counts, by a few %.
    env = {"EDGEGW_CONFIG": str(config), "PYTHONHASHSEED": "0"}
    if args.instructions:
        counts: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                port = free_port()
                counts[name].append(instructions_per_request(
                    name, gateway_args(tree, config, port), f"http://127.0.0.1:{port}/readyz",
                    f"http://127.0.0.1:{port}/v1/completions", body, auth, seconds=args.seconds, env=env))
        med = {n: sorted(v)[len(v) // 2] for n, v in counts.items()}
        print(f"\nCPU instructions per request under callgrind ({args.rounds} rounds interleaved), median:")
        for name in trees:
            runs = " ".join(f"{v / 1000:.1f}k" for v in counts[name])
            print(f"{name:<8}{med[name] / 1000:>10.1f}k{med[name] / med['before']:>8.3f}   runs: {runs}")
        return
    procs: dict[str, Proc] = {}
    ports: dict[str, int] = {}
    try:
        for name, tree in trees.items():
            ports[name] = free_port()
            procs[name] = start_server(gateway_args(tree, config, ports[name]),
                                       f"http://127.0.0.1:{ports[name]}/readyz", name=name, env=env)
            wrk(f"warm-up {name}", f"http://127.0.0.1:{ports[name]}/v1/completions", body, auth, seconds=2)
        results: dict[str, list] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in trees:
                results[name].append(wrk(f"{name} #{r + 1}", f"http://127.0.0.1:{ports[name]}/v1/completions",
                                         body, auth, seconds=args.seconds, cpu_pid=procs[name].popen.pid))
        for name, rows in results.items():
            print(f"{name:<8}" + " ".join(f"{r.rps:.0f} req/s {r.cpu_us_per_request or 0:.0f} us" for r in rows))
        print(f"\nGateway overhead before/after hot reload ({args.rounds} rounds interleaved, {args.seconds} s each, "
              f"wrk -c32, {os.cpu_count()} cores, shared machine), medians:")
        print(f"{'tree':<8}{'req/s':>10}{'ratio':>8}{'cpu us/req':>12}{'ratio':>8}{'ovh p50 ms':>12}")
        med = {}
        for name, rows in results.items():
            rps = sorted(r.rps for r in rows)[len(rows) // 2]
            cpu = sorted(r.cpu_us_per_request or 0 for r in rows)[len(rows) // 2]
            ovh = sorted(r.overhead_p50_ms or 0 for r in rows)[len(rows) // 2]
            med[name] = (rps, cpu)
            print(f"{name:<8}{rps:>10.0f}{rps / med['before'][0]:>8.3f}{cpu:>12.0f}{cpu / med['before'][1]:>8.3f}"
                  f"{ovh:>12.3f}")
    finally:
        for proc in procs.values():
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--before", default=None, help="a checkout to compare per-request cost against")
    parser.add_argument("--instructions", action="store_true", help="with --before: callgrind instructions")
    parser.add_argument("--no-reload", action="store_true", help="only the before/after comparison")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    os.environ["EDGEGW_BENCH_SECRET"] = SECRET
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-bench-reload-"))
    bport = free_port()
    backend = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(bport), "--models",
                            ",".join(["fake-model", *(f"model-{i}" for i in range(args.routes))])],
                           f"http://127.0.0.1:{bport}/healthz", name="fake-backend")
    try:
        if not args.no_reload:
            reload_times(args, bport, tmp)
        if args.before:
            overhead(args, bport, tmp)
    finally:
        backend.stop()


if __name__ == "__main__":
    assert ROOT.exists()
    main()
