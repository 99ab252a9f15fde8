"""Password-protected Redis and Redis Cluster (three primaries started here) work for limits and the cache."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.cache.store import RedisCacheStore
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.redis.config import RedisConfig
from gateway.redis.link import RedisLink, RedisUnavailable
from testkit.harness import Proc, RedisServer, free_port
from tests.ratelimit.test_limiter import check, rule


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is needed to form a cluster")
    work = tempfile.mkdtemp(prefix="edgegw-cluster-")
    ports = [_low_port() for _ in range(3)]
    procs = [Proc(["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{p}.conf", "--dir", work],
                  name=f"redis-cluster-{p}") for p in ports]
    try:
        for p in ports:
            _wait(lambda p=p: _cli(p, "ping") == "PONG")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=30)
        _wait(lambda: all("cluster_state:ok" in _cli(p, "cluster", "info") for p in ports))
        yield ports
    finally:
        for proc in procs:
            proc.kill()


def _low_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid too."""
    while True:
        port = free_port()
        if port < 55_000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10_000))
                except OSError:
                    continue
            return port


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=5)
    return out.stdout.strip()


def _wait(ready: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, "redis cluster did not come up"
        time.sleep(0.05)


@pytest.fixture
async def cluster_link(cluster_ports: list[int]) -> AsyncIterator[RedisLink]:
    link = RedisLink(RedisConfig(url=f"redis://127.0.0.1:{cluster_ports[0]}", cluster=True, timeout_ms=1000))
    yield link
    await link.stop()


async def test_cluster_limits_and_cache(cluster_link: RedisLink) -> None:
    limiter = RedisLimiter(cluster_link)
    store = RedisCacheStore(cluster_link, "edgegw")
    await cluster_link.start()
    # Keys of one request share the route's hash tag, so a multi-key script runs in one slot;
    # different routes spread over the cluster.
    for route in ("alpha", "beta", "gamma"):
        a = rule("requests_per_minute", 3, key=f"edgegw:rl:{{{route}}}:l:rpm:x")
        b = rule("concurrent", 10, key=f"edgegw:rl:{{{route}}}:l:conc:x")
        results = [await limiter.acquire(check(a, b), f"m{i}") for i in range(5)]
        assert results == [True] * 3 + [False] * 2
    entry, leader = await store.lookup("k1", "tok", 1000)
    assert entry is None and leader
    await store.put("k1", b"E1-entry", 10_000, "tok")
    assert await store.peek("k1") == (b"E1-entry", False)


async def test_password_url() -> None:
    server = RedisServer(password="s3cret-pass").start()
    try:
        good = RedisLink(RedisConfig(url=server.url, timeout_ms=500))
        limiter = RedisLimiter(good)
        await good.start()
        assert await limiter.acquire(check(rule("requests_per_second", 1)), "a")
        await good.stop()
        bad = RedisLink(RedisConfig(url=server.url.replace("s3cret-pass", "wrong"), timeout_ms=500))
        limiter = RedisLimiter(bad)
        await bad.start()
        with pytest.raises(RedisUnavailable):
            await limiter.acquire(check(rule("requests_per_second", 1)), "a")
        await bad.stop()
    finally:
        server.stop()
