"""Gateway overhead: the same fast fake backend measured directly and through the gateway (JWT on).

Prints req/s, p50 and p99 for both, the ratio, and the gateway's own overhead from the
`x-edgegw-overhead-ms` header. Load comes from wrk in another process. Run: `make bench`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml
from _common import EDGEGW, free_port, print_table, start_server, wrk

SECRET = "bench-secret-0123456789-0123456789-abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--access-log", default="file", choices=("file", "off"))
    args = parser.parse_args()
    os.environ["EDGEGW_BENCH_SECRET"] = SECRET
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-bench-"))
    bport, gport = free_port(), free_port()
    backend = start_server([sys.executable, "-m", "tests.fakes.backend", "--port", str(bport)],
                           f"http://127.0.0.1:{bport}/healthz", name="fake-backend")
    config = {
        "server": {"access_log": str(tmp / "access.log") if args.access_log == "file" else "off"},
        "admin": {"issuer": "bench"},
        "issuers": [{"name": "bench", "issuer": "https://bench.idp", "algorithms": ["HS256"],
                     "secret_env": "EDGEGW_BENCH_SECRET", "audience": "edgegw"}],
        "pools": [{"name": "p", "models": ["fake-model"], "endpoints": [{"url": f"http://127.0.0.1:{bport}"}]}],
        "routes": [{"name": "r", "paths": ["/v1/completions", "/v1/chat/completions"]}],
    }
    (tmp / "gw.yaml").write_text(yaml.safe_dump(config))
    gateway = start_server([*EDGEGW, "serve", "--config", str(tmp / "gw.yaml"), "--port", str(gport)],
                           f"http://127.0.0.1:{gport}/readyz", name="gateway")
    try:
        from gateway.auth.mint import mint_token
        from gateway.config import load_config

        token = mint_token(load_config(tmp / "gw.yaml").issuers[0], "bench-partner", ttl_s=3600)
        body = {"model": "fake-model", "prompt": "hello", "max_tokens": 4}
        auth = {"authorization": f"Bearer {token}"}
        # warm both paths (connection pools, token cache) before measuring
        wrk("warm-up", f"http://127.0.0.1:{gport}/v1/completions", body, auth, seconds=2,
            connections=args.connections)
        direct = wrk("backend direct", f"http://127.0.0.1:{bport}/v1/completions", body, auth,
                     seconds=args.seconds, connections=args.connections, cpu_pid=backend.popen.pid)
        through = wrk("gateway (JWT auth) -> backend", f"http://127.0.0.1:{gport}/v1/completions", body, auth,
                      seconds=args.seconds, connections=args.connections, cpu_pid=gateway.popen.pid)
        print_table(f"Gateway overhead ({os.cpu_count()} cores, wrk -c{args.connections}, "
                    f"{args.seconds}s each, access log {args.access_log})", [direct, through], direct)
        print("\ncpu us/req: CPU time of that server process per request (robust on a busy machine);"
              " for the gateway row it is the gateway's own cost, upstream client work included")
        print("targets: >= 3000 req/s through one gateway worker with JWT auth; p50 overhead <= 1 ms")
    finally:
        gateway.stop()
        backend.stop()


if __name__ == "__main__":
    main()
