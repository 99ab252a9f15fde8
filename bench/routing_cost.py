"""What one `balancer: inference` decision costs, in process: hashing the prompt into blocks and picking
an endpoint (prefix index lookup and record, loads, the guard), for a 2,000-token chat body and for
one carrying a 4 MB base64 image. The JSON parse is the gateway's whatever the balancer: shown apart.

`--shared-index`: the pool also queues each decision for the other routers (`inference.shared_index`;
the exchange itself runs off the request path and is not started here).

The CPU columns are this thread's CPU time (time.thread_time), which other load on the machine does
not inflate; the wall columns include being descheduled. Targets (issue 21): <= 0.2 ms p99 for the 2,000-token body, <= 1 ms with the 4 MB image.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.schema import EndpointConfig, PoolConfig  # noqa: E402
from gateway.upstream.config import SharedIndexConfig  # noqa: E402
from gateway.upstream.index_share import IndexShare  # noqa: E402
from gateway.upstream.pool import Pool  # noqa: E402
from gateway.upstream.prompt_key import prompt_key  # noqa: E402


def _words(rnd: random.Random, tokens: int) -> str:
    return " ".join(f"w{rnd.randrange(5000)}" for _ in range(tokens))


def bodies() -> dict[str, dict[str, Any]]:
    rnd = random.Random(3)
    system = _words(random.Random(1), 1500)
    history: list[dict[str, Any]] = [{"role": "system", "content": system},
                                     {"role": "user", "content": _words(rnd, 100)}]
    for _ in range(4):
        history += [{"role": "assistant", "content": _words(rnd, 80)}, {"role": "user", "content": _words(rnd, 20)}]
    image = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()  # 4 MB of base64
    with_image = [*history[:-1], {"role": "user", "content": [
        {"type": "text", "text": "the screen now"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]
    return {"2,000-token chat": {"model": "m", "messages": history},
            "same + 4 MB base64 image": {"model": "m", "messages": with_image}}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--shared-index", action="store_true", help="queue each decision for other routers too")
    args = parser.parse_args()
    pool = Pool(PoolConfig(name="p", endpoints=tuple(EndpointConfig(url=f"http://10.0.0.{i}:8000") for i in range(8)),
                           models=("m",), balancer="inference"))
    if args.shared_index:
        IndexShare(pool, SharedIndexConfig(redis_url="redis://127.0.0.1:1/0", key="bench"))  # not started
    rnd = random.Random(5)
    # A warm index: 5,000 other sessions routed before.
    for i in range(5000):
        pool.pick(None, prompt_key("m", {"messages": [{"role": "user", "content": f"{i} " + _words(rnd, 300)}]}))
    print(f"{'body':<28}{'bytes':>10}{'parse p50':>11}{'decision p50':>14}{'p99':>9}{'CPU p50':>10}{'CPU p99':>10}")
    for name, body in bodies().items():
        raw = orjson.dumps(body)
        parse, decide, cpu = [], [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            parsed = orjson.loads(raw)
            t1, c1 = time.perf_counter(), time.thread_time()
            endpoint = pool.pick(None, prompt_key("m", parsed))
            t2, c2 = time.perf_counter(), time.thread_time()
            endpoint.in_flight = 0
            parse.append(t1 - t0)
            decide.append(t2 - t1)
            cpu.append(c2 - c1)
        ms = 1000.0
        print(f"{name:<28}{len(raw):>10,}{_pct(parse, .5) * ms:>9.3f}ms{_pct(decide, .5) * ms:>12.3f}ms"
              f"{_pct(decide, .99) * ms:>7.3f}ms{_pct(cpu, .5) * ms:>8.3f}ms{_pct(cpu, .99) * ms:>8.3f}ms")
    print("targets: decision p99 <= 0.2 ms (2,000-token chat), <= 1 ms (4 MB image). Wall time includes the\n"
          "moments a busy machine takes the CPU away; the CPU columns (this thread's) do not.")


if __name__ == "__main__":
    main()
