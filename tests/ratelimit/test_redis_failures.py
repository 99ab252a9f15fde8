"""Redis killed, frozen and restarted during traffic: each on_redis_error mode, bounded latency, recovery."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.harness import RedisServer
from tests.conftest import gateway_config

PATHS = {"allow": "/v1/completions", "deny": "/v1/chat/completions", "local": "/v1/embeddings"}
BODIES = {"allow": {"model": "fake-model", "prompt": "hi", "max_tokens": 2},
          "deny": {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
          "local": {"model": "fake-model", "input": "hi"}}


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def _config(backend: Any, redis: RedisServer) -> dict:
    cfg = gateway_config([backend])
    cfg["server"]["access_log"] = "off"
    cfg["redis"] = {"url": redis.url, "timeout_ms": 50, "retry_interval_s": 0.2}
    cfg["routes"] = [{"name": mode, "paths": [path],
                      "rate_limits": [{"name": f"rpm-{mode}", "key": "subject", "requests_per_minute": 5,
                                       "on_redis_error": mode}]}
                     for mode, path in PATHS.items()]
    return cfg


async def _round(gw: Any, headers: dict[str, str], n: int = 8) -> dict[str, list[int]]:
    """n requests per route, one after another; every one must finish within a second."""
    out: dict[str, list[int]] = {}
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=5) as client:
        for mode, path in PATHS.items():
            statuses = []
            for _ in range(n):
                started = time.monotonic()
                resp = await client.post(path, json=BODIES[mode])
                assert time.monotonic() - started < 1.0, f"{mode}: request took too long"
                statuses.append(resp.status_code)
            out[mode] = statuses
    return out


async def test_modes_bounded_latency_and_recovery(own_redis: RedisServer, fake_backend: Any,
                                                  make_gateway: Any) -> None:
    gw = make_gateway(_config(fake_backend, own_redis))
    limited = [200] * 5 + [429] * 3
    user = iter(range(100))

    def auth() -> dict[str, str]:  # a fresh subject per round: a clean budget everywhere
        return {"authorization": f"Bearer {gw.token(f'u{next(user)}')}"}

    assert await _round(gw, auth()) == {"allow": limited, "deny": limited, "local": limited}

    own_redis.proc.kill()  # type: ignore[union-attr]
    down = await _round(gw, auth())
    assert down == {"allow": [200] * 8, "deny": [503] * 8, "local": limited}
    assert gw.metric("edgegw_redis_degraded") == 1
    assert gw.metric("edgegw_ratelimit_fallbacks_total", mode="deny") == 8

    own_redis.start()  # same port, empty
    await asyncio.sleep(0.3)
    assert await _round(gw, auth()) == {"allow": limited, "deny": limited, "local": limited}
    assert gw.metric("edgegw_redis_degraded") == 0

    # A frozen Redis (connections open, no answers) costs at most the 50 ms deadline per probe.
    own_redis.proc.signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        frozen = await _round(gw, auth())
        assert frozen == {"allow": [200] * 8, "deny": [503] * 8, "local": limited}
    finally:
        own_redis.proc.signal(signal.SIGCONT)  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert await _round(gw, auth()) == {"allow": limited, "deny": limited, "local": limited}
    assert "redis degraded" in gw.proc.log() and "redis recovered" in gw.proc.log()
