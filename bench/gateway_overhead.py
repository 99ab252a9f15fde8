"""Gateway overhead: the same fast fake backend measured directly and through the gateway (JWT on).

Prints req/s, p50 and p99 for both, the ratio, and the gateway's own overhead from the
`x-edgegw-overhead-ms` header. Load comes from wrk in another process. Run: `make bench`.

MessagePack (`docs/api.md`): a row with the same request as a MessagePack body beside the JSON one,
and a 200 KB PNG chat request as JSON+base64 against MessagePack bytes (bytes on the wire, gateway
CPU per request, same run). `--body msgpack` makes `--instructions` count the MessagePack request.

Telemetry (`docs/observability.md`): a row with the same gateway exporting every request's trace
(100% sampled) to an OTLP/HTTP receiver, GenAI metrics and usage on; `--instructions --telemetry`
counts instructions per request (every thread) with telemetry off and at each `--sample-ratio`
(default 100% and 10%), same run, with the export sending full batches as at production rates and the
gateway's idle cost per second shown apart (`traced_instructions`).

`--servers` compares HTTP servers for the same app in one run, rounds interleaved:
`edgegw` (`edgegw serve`: uvicorn with the edge listener limits), `uvicorn-stock` (uvicorn's own
httptools protocol, no limits: the listener before the limits were added) and `granian` (when
the `granian` package is importable).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import yaml
from _common import (
    EDGEGW,
    LoadResult,
    Proc,
    free_port,
    instructions_per_request,
    print_table,
    start_server,
    wrk,
)

SECRET = "bench-secret-0123456789-0123456789-abcdef"
MSGPACK = "application/msgpack"
SERVERS = ("edgegw", "uvicorn-stock", "granian")


def start_gateway(server: str, config: Path, port: int) -> Proc:
    """The gateway app under `server` (one worker, uvloop, no access log of the server's own)."""
    return start_server(gateway_command(server, config, port), f"http://127.0.0.1:{port}/readyz", name=server,
                        env={"EDGEGW_CONFIG": str(config)})


def gateway_command(server: str, config: Path, port: int) -> list[str]:
    if server == "edgegw":
        args = [*EDGEGW, "serve", "--config", str(config), "--port", str(port)]
    elif server == "uvicorn-stock":
        args = [sys.executable, "-m", "uvicorn", "gateway.app:app_factory", "--factory", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers",
                "--log-level", "warning", "--backlog", "4096"]
    else:
        if importlib.util.find_spec("granian") is None:
            raise SystemExit("--servers granian needs the granian package (pip install granian)")
        args = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--port", str(port),
                "--loop", "uvloop", "--no-ws", "--log-level", "warning", "--backlog", "4096",
                "gateway.app:app_factory"]
    return args


def print_server_ratios(servers: list[str], rows: list[LoadResult]) -> None:
    """Median req/s and CPU per request of each server over the rounds, against the first server."""
    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    per = {name: rows[i::len(servers)] for i, name in enumerate(servers)}
    rps = {name: median([r.rps for r in rs]) for name, rs in per.items()}
    cpu = {name: median([r.cpu_us_per_request or 0.0 for r in rs]) for name, rs in per.items()}
    base = servers[0]
    print(f"\nmedians over rounds, ratio to {base}:")
    print(f"{'server':<16}{'req/s':>10}{'ratio':>8}{'cpu us/req':>12}{'ratio':>8}")
    for name in servers:
        print(f"{name:<16}{rps[name]:>10.0f}{rps[name] / rps[base]:>8.2f}{cpu[name]:>12.0f}"
              f"{cpu[name] / cpu[base] if cpu[base] else 0:>8.2f}")


def count_instructions(servers: list[str], config: Path, seconds: int, rounds: int, packed: bool = False) -> None:
    from gateway.auth.mint import mint_token
    from gateway.features import load_config

    token = mint_token(load_config(config).issuers[0], "bench-partner", ttl_s=3600)
    body: dict | bytes = {"model": "fake-model", "prompt": "hello", "max_tokens": 4}
    content_type = "application/json"
    if packed:
        body, content_type = msgpack.packb(body), MSGPACK
    counts: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name in servers:
            if name == "granian":
                raise SystemExit("--instructions measures one-process servers; granian runs its worker in a child")
            port = free_port()
            counts[name].append(instructions_per_request(
                name, gateway_command(name, config, port), f"http://127.0.0.1:{port}/readyz",
                f"http://127.0.0.1:{port}/v1/completions", body, {"authorization": f"Bearer {token}"},
                seconds=seconds, env={"EDGEGW_CONFIG": str(config)}, content_type=content_type))
    median = {name: sorted(values)[len(values) // 2] for name, values in counts.items()}
    base = servers[0]
    print(f"\nCPU instructions per request under callgrind ({'MessagePack' if packed else 'JSON'} body, {seconds}s each, 8 connections, {rounds} rounds "
          f"interleaved), median and ratio to {base}:")
    for name in servers:
        runs = " ".join(f"{v / 1000:.1f}k" for v in counts[name])
        print(f"{name:<16}{median[name] / 1000:>10.1f}k{median[name] / median[base]:>8.3f}   runs: {runs}")


def telemetry_config(config: Path, receiver_url: str, ratio: float = 1.0, **extra: Any) -> Path:
    """`config` with `telemetry:` on: requests traced (`ratio` of them) to `receiver_url`, GenAI metrics, usage."""
    data = yaml.safe_load(config.read_text())
    data["telemetry"] = {"otlp_endpoint": receiver_url, "sample_ratio": ratio, **extra}
    out = config.with_name(f"gw-telemetry-{ratio:g}.yaml")
    out.write_text(yaml.safe_dump(data))
    return out


@dataclass
class Counted:
    """One gateway's measured window under callgrind."""

    requests: float
    instructions: float  # every thread, from the first measured request until the window's end
    idle_per_s: float  # every thread, the gateway idle right after (timers: its per-second cost)
    window_s: float
    spans: int  # exported during the window
    batches: int  # export requests the receiver got during the window
    gc: float = 0.0  # of `instructions`, in CPython's cyclic garbage collector

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests

    @property
    def gc_free_per_request(self) -> float:
        """Less the cyclic GC's collections that landed in the window (each ~15M instructions)."""
        return (self.instructions - self.gc) / self.requests

    @property
    def net_per_request(self) -> float:
        """Less what the gateway spends per second whatever its load (its timers), which weighs on
        every request at callgrind's few dozen requests a second and on none at real rates."""
        return (self.instructions - self.idle_per_s * self.window_s) / self.requests


def _callgrind_total(path: Path) -> int:
    return int(re.search(r"^(?:totals|summary): (\d+)", path.read_text(), re.M).group(1))  # type: ignore[union-attr]


def _callgrind_gc(path: Path) -> int:
    """Instructions in the cyclic GC's collections (inclusive): one collection costs ~15M here and
    lands in a window of a few hundred requests by chance, so it is shown apart."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
                         capture_output=True, text=True).stdout
    found = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\*?\s*\S*gcmodule\.c:gc_collect_main ", out, re.M)
    return int(found.group(1).replace(",", "")) if found else 0


def traced_instructions(name: str, config: Path, url: str, body: dict, headers: dict[str, str], receiver: Any,
                        seconds: int, idle_s: float = 5.0) -> Counted:
    """The gateway under callgrind, every thread counted: a warm-up, then `seconds` of load (the
    window, and a 2 s tail for answers and exports in flight), then `idle_s` without load.

    Fair to export outside the request path: the bench's telemetry sends batches when they are full
    (512 spans: `schedule_delay_ms` is set far beyond the window), as at any production rate above
    about 100 requests a second, while callgrind serves a few dozen. Each request's spans are encoded
    on its own path, inside the window; the batches sent in the window carry about as many spans as
    the window made (the warm-up's last partial batch in, the window's out)."""
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="edgegw-callgrind-")) / "out"
    proc = Proc(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                 *gateway_command("edgegw", config, port)], name=f"{name}-callgrind", env={"EDGEGW_CONFIG": str(config)})
    target = f"http://127.0.0.1:{port}{url}"

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(proc.popen.pid)], capture_output=True, check=True)

    try:
        proc.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=300)
        wrk(f"warm-up {name} (callgrind)", target, body, headers, seconds=5, connections=8)
        time.sleep(2)
        spans, batches = len(receiver.spans), receiver.requests
        control("-i", "on")
        started = time.monotonic()
        result = wrk(f"{name} (callgrind)", target, body, headers, seconds=seconds, connections=8)
        time.sleep(2)
        window_s = time.monotonic() - started
        spans, batches = len(receiver.spans) - spans, receiver.requests - batches
        control("-d")
        idle_started = time.monotonic()
        time.sleep(idle_s)
        control("-d")
        idle_s = time.monotonic() - idle_started
    finally:
        proc.stop()
    return Counted(result.rps * seconds, _callgrind_total(Path(f"{out}.1")), _callgrind_total(Path(f"{out}.2")) / idle_s,
                   window_s, spans, batches, _callgrind_gc(Path(f"{out}.1")))


def count_telemetry_instructions(config: Path, seconds: int, rounds: int, ratios: list[float]) -> None:
    """Instructions per request with telemetry off and on at each of `ratios`, rounds interleaved."""
    from gateway.auth.mint import mint_token
    from gateway.features import load_config
    from testkit.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver().start()
    configs = {"telemetry off": config}
    for ratio in ratios:
        configs[f"telemetry {ratio:.0%}"] = telemetry_config(config, receiver.url, ratio, schedule_delay_ms=60_000)
    token = mint_token(load_config(config).issuers[0], "bench-partner", ttl_s=3600)
    body = {"model": "fake-model", "prompt": "hello", "max_tokens": 4}
    runs: dict[str, list[Counted]] = {name: [] for name in configs}
    try:
        for _ in range(rounds):
            for name, path in configs.items():
                runs[name].append(traced_instructions(name, path, "/v1/completions", body,
                                                      {"authorization": f"Bearer {token}"}, receiver, seconds))
    finally:
        receiver.stop()

    def median(name: str, value: Callable[[Counted], float]) -> float:
        values = sorted(value(c) for c in runs[name])
        return values[len(values) // 2]

    raw = {name: median(name, lambda c: c.per_request) for name in configs}
    net = {name: median(name, lambda c: c.net_per_request) for name in configs}
    gc_free = {name: median(name, lambda c: c.gc_free_per_request) for name in configs}
    print(f"\nCPU instructions per request under callgrind, every thread, telemetry off against on (traces "
          f"exported over OTLP/HTTP in full batches, GenAI metrics, usage; {seconds}s each, {rounds} rounds "
          f"interleaved; load average {os.getloadavg()[0]:.1f}), median and ratio to off; `net`: less the "
          "gateway's idle instructions per second over the window; `no GC`: less the cyclic GC's collections "
          "that landed in the window:")
    print(f"{'':<16}{'instr/req':>11}{'ratio':>8}{'net':>11}{'ratio':>8}{'no GC':>11}{'ratio':>8}{'spans/req':>11}"
          f"{'batches':>9}{'requests':>10}   runs (instr/req, net, GC per request)")
    for name in configs:
        counted = runs[name]
        print(f"{name:<16}{raw[name] / 1000:>10.1f}k{raw[name] / raw['telemetry off']:>8.3f}"
              f"{net[name] / 1000:>10.1f}k{net[name] / net['telemetry off']:>8.3f}"
              f"{gc_free[name] / 1000:>10.1f}k{gc_free[name] / gc_free['telemetry off']:>8.3f}"
              f"{median(name, lambda c: c.spans / c.requests):>11.2f}{median(name, lambda c: c.batches):>9.0f}"
              f"{median(name, lambda c: c.requests):>10.0f}   "
              + " ".join(f"{c.per_request / 1000:.0f}k/{c.net_per_request / 1000:.0f}k/{c.gc / c.requests / 1000:.0f}k"
                         for c in counted))
    print("spans/req: spans exported during the window per request; batches: export requests in it")
    if "telemetry 100%" in gc_free:
        # Judged without the GC's collections: one (~12M instructions at the gateway's young-generation
        # threshold) lands in a window or not; at full speed neither configuration collects in 50-60k
        # requests (docs/benchmarks.md).
        ratio = gc_free["telemetry 100%"] / gc_free["telemetry off"]
        print(f"target: telemetry 100% <= 1.10 x telemetry off, no GC: {ratio:.3f}x, "
              f"{'met' if ratio <= 1.10 else 'NOT met'}")


def media_rows(url: str, auth: dict[str, str], gateway: Proc, args: argparse.Namespace) -> None:
    """A 200 KB PNG in a chat request: JSON with a base64 data URL against MessagePack bytes."""
    import base64

    from testkit.media_files import png

    image = png(pad_bytes=200_000)
    text = {"type": "text", "text": "What is in this picture?"}
    as_json = {"model": "fake-model", "max_tokens": 4, "messages": [{"role": "user", "content": [
        text, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}]}]}
    as_msgpack = msgpack.packb({"model": "fake-model", "max_tokens": 4, "messages": [{"role": "user", "content": [
        text, {"type": "image", "data": image, "mime_type": "image/png"}]}]})
    json_bytes = len(json.dumps(as_json, separators=(",", ":")))
    conns = min(args.connections, 8)  # the fake backend decodes every image: keep the queue short
    rows = [wrk("200 KB PNG, JSON+base64", url + "/v1/chat/completions", as_json, auth, seconds=args.seconds,
                connections=conns, cpu_pid=gateway.popen.pid),
            wrk("200 KB PNG, MessagePack", url + "/v1/chat/completions", as_msgpack, auth, seconds=args.seconds,
                connections=conns, cpu_pid=gateway.popen.pid, content_type=MSGPACK)]
    print(f"\nChat request with a {len(image) // 1000} KB PNG through the gateway (wrk -c{conns}, {args.seconds}s "
          "each, same run): request bytes on the wire and the gateway's CPU per request")
    print(f"{'body':<28}{'bytes':>10}{'ratio':>8}{'req/s':>10}{'cpu us/req':>12}{'ratio':>8}{'errors':>8}")
    base_cpu = rows[0].cpu_us_per_request or 0.0
    for row, size in zip(rows, (json_bytes, len(as_msgpack)), strict=True):
        cpu = row.cpu_us_per_request or 0.0
        print(f"{row.name:<28}{size:>10}{size / json_bytes:>8.2f}{row.rps:>10.0f}{cpu:>12.0f}"
              f"{cpu / base_cpu if base_cpu else 0:>8.2f}{row.errors:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--access-log", default="file", choices=("file", "off"))
    parser.add_argument("--servers", default="edgegw",
                        help=f"comma-separated HTTP servers to measure the gateway under: {', '.join(SERVERS)}")
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times, interleaved")
    parser.add_argument("--instructions", action="store_true",
                        help="instead: each server's CPU instructions per request under callgrind (valgrind), "
                             "the noise-free figure (uvicorn-based servers only: granian runs its worker in a "
                             "child process)")
    parser.add_argument("--body", default="json", choices=("json", "msgpack"),
                        help="--instructions: the request body's encoding")
    parser.add_argument("--no-media", action="store_true", help="skip the MessagePack and 200 KB image rows")
    parser.add_argument("--telemetry", action="store_true",
                        help="with --instructions: telemetry off against on, instead of servers")
    parser.add_argument("--sample-ratio", default="1,0.1",
                        help="--telemetry: the shares of requests traced, comma-separated (each against off)")
    args = parser.parse_args()
    servers = args.servers.split(",")
    for name in servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r} (choose from {', '.join(SERVERS)})")
    os.environ["EDGEGW_BENCH_SECRET"] = SECRET
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-bench-"))
    bport = free_port()
    backend = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(bport)],
                           f"http://127.0.0.1:{bport}/healthz", name="fake-backend")
    config = {
        "server": {"access_log": str(tmp / "access.log") if args.access_log == "file" else "off"},
        "admin": {"issuer": "bench"},
        "issuers": [{"name": "bench", "issuer": "https://bench.idp", "algorithms": ["HS256"],
                     "secret_env": "EDGEGW_BENCH_SECRET", "audience": "edgegw"}],
        "pools": [{"name": "p", "models": ["fake-model"], "image_models": ["fake-model"],
                   "endpoints": [{"url": f"http://127.0.0.1:{bport}"}]}],
        "routes": [{"name": "r", "paths": ["/v1/completions", "/v1/chat/completions"]}],
    }
    (tmp / "gw.yaml").write_text(yaml.safe_dump(config))
    if args.instructions and args.telemetry:
        try:
            count_telemetry_instructions(tmp / "gw.yaml", args.seconds, args.rounds,
                                         [float(r) for r in args.sample_ratio.split(",")])
        finally:
            backend.stop()
        return
    if args.instructions:
        try:
            count_instructions(servers, tmp / "gw.yaml", args.seconds, args.rounds, args.body == "msgpack")
        finally:
            backend.stop()
        return
    gateways: dict[str, Proc] = {}
    ports: dict[str, int] = {}
    from testkit.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver().start()
    try:
        for name in servers:
            ports[name] = free_port()
            gateways[name] = start_gateway(name, tmp / "gw.yaml", ports[name])
        ports["telemetry"] = free_port()
        gateways["telemetry"] = start_gateway("edgegw", telemetry_config(tmp / "gw.yaml", receiver.url),
                                              ports["telemetry"])
        from gateway.auth.mint import mint_token
        from gateway.features import load_config

        token = mint_token(load_config(tmp / "gw.yaml").issuers[0], "bench-partner", ttl_s=3600)
        body = {"model": "fake-model", "prompt": "hello", "max_tokens": 4}
        auth = {"authorization": f"Bearer {token}"}
        # warm every path (connection pools, token cache) before measuring
        for name in [*servers, "telemetry"]:
            wrk(f"warm-up {name}", f"http://127.0.0.1:{ports[name]}/v1/completions", body, auth, seconds=2,
                connections=args.connections)
        direct = wrk("backend direct", f"http://127.0.0.1:{bport}/v1/completions", body, auth,
                     seconds=args.seconds, connections=args.connections, cpu_pid=backend.popen.pid)
        rows = [direct]
        for r in range(args.rounds):
            for name in servers:
                label = "gateway (JWT auth) -> backend" if servers == ["edgegw"] else f"gateway under {name}"
                label += f" #{r + 1}" if args.rounds > 1 else ""
                rows.append(wrk(label, f"http://127.0.0.1:{ports[name]}/v1/completions", body, auth,
                                seconds=args.seconds, connections=args.connections,
                                cpu_pid=gateways[name].popen.pid))
        traced = wrk("gateway, telemetry 100% sampled", f"http://127.0.0.1:{ports['telemetry']}/v1/completions",
                     body, auth, seconds=args.seconds, connections=args.connections,
                     cpu_pid=gateways["telemetry"].popen.pid)
        rows.append(traced)
        if not args.no_media:
            url = f"http://127.0.0.1:{ports[servers[0]]}"
            rows.append(wrk("gateway, MessagePack body", url + "/v1/completions", msgpack.packb(body), auth,
                            seconds=args.seconds, connections=args.connections,
                            cpu_pid=gateways[servers[0]].popen.pid, content_type=MSGPACK))
        print_table(f"Gateway overhead ({os.cpu_count()} cores, wrk -c{args.connections}, "
                    f"{args.seconds}s each, access log {args.access_log})", rows, direct)
        if not args.no_media:
            media_rows(f"http://127.0.0.1:{ports[servers[0]]}", auth, gateways[servers[0]], args)
        if len(servers) > 1:
            print_server_ratios(servers, rows[1:])
        plain_cpu, traced_cpu = rows[1].cpu_us_per_request or 0.0, traced.cpu_us_per_request or 0.0
        print(f"\ntelemetry at 100% sampling (spans exported: {len(receiver.spans)}): {traced_cpu:.0f} cpu us/req "
              f"against {plain_cpu:.0f} without, x{traced_cpu / plain_cpu if plain_cpu else 0:.2f} "
              "(instructions, the noise-free figure: --instructions --telemetry)")
        print("\ncpu us/req: CPU time of that server process per request (robust on a busy machine);"
              " for the gateway row it is the gateway's own cost, upstream client work included")
        print("targets: >= 3000 req/s through one gateway worker with JWT auth; p50 overhead <= 1 ms")
    finally:
        for proc in gateways.values():
            proc.stop()
        backend.stop()
        receiver.stop()

if __name__ == "__main__":
    main()
