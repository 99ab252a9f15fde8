"""`python -m gpu_backend.sim --port 9000 --replicas 4`: replicas on ports 9000, 9001, ..."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import fields

from gpu_backend.sim.model import SimConfig
from gpu_backend.sim.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gpu_backend.sim", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the first replica's port; the others count up")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="sim-model")
    parser.add_argument("--chunk-tokens", type=int, default=1, help="output tokens per streamed write")
    for f in fields(SimConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = parser.parse_args()
    config = SimConfig(**{f.name: getattr(args, f.name) for f in fields(SimConfig)})
    ports = [args.port + i for i in range(args.replicas)]
    asyncio.run(serve(config, ports, args.model, args.host, args.chunk_tokens))


if __name__ == "__main__":
    main()
