"""DNS endpoint discovery: the config, the wire client, reconciling a pool, and a gateway under traffic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.config.reader import ConfigError
from gateway.config.schema import PoolConfig
from gateway.features import parse_config
from gateway.upstream.config import DnsConfig, pool_options
from gateway.upstream.discovery import DnsDiscovery
from gateway.upstream.dns import DnsError, parse_a_answers, query_a
from gateway.upstream.pool import Pool
from testkit.harness import free_port
from tests.conftest import gateway_config, issuer_config
from tests.ops.dns_server import FakeDns

NAME = "backend.edgegw.svc.cluster.local"


def _config(dns: dict[str, Any], endpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"admin": {"issuer": "test"}, "issuers": [issuer_config()],
            "pools": [{"name": "p", "endpoints": endpoints or [], "dns": dns}],
            "routes": [{"name": "r", "paths": ["/v1/completions"]}]}


def test_dns_section_is_validated() -> None:
    cfg = parse_config(_config({"name": NAME, "port": 9101, "resolver": "127.0.0.1:5353", "interval_s": 1}),
                       "t.yaml")
    dns = pool_options(cfg.pools[0]).dns
    assert dns is not None
    assert dns == DnsConfig(name=NAME, port=9101, interval_s=1.0, resolver=("127.0.0.1", 5353))
    assert dns.url("10.0.0.7") == "http://10.0.0.7:9101"
    for bad, key in (({"name": NAME, "port": 9101, "resolver": "nope"}, "pools[0].dns.resolver"),
                     ({"name": NAME, "port": 0}, "pools[0].dns.port"),
                     ({"name": NAME, "port": 1, "ttl": 3}, "pools[0].dns.ttl"),
                     ({"port": 1}, "pools[0].dns.name")):
        with pytest.raises(ConfigError) as err:
            parse_config(_config(bad), "t.yaml")
        assert err.value.key == key


async def test_wire_client_against_our_server(fake_dns: FakeDns) -> None:
    fake_dns.set(NAME, ["127.0.0.3", "127.0.0.2", "127.0.0.2"])
    assert await query_a(NAME, ("127.0.0.1", fake_dns.port)) == ["127.0.0.2", "127.0.0.3"]
    assert await query_a("unknown.example", ("127.0.0.1", fake_dns.port)) == []  # NXDOMAIN
    fake_dns.silent = True
    with pytest.raises(DnsError):
        await query_a(NAME, ("127.0.0.1", fake_dns.port), timeout_s=0.2)
    with pytest.raises(DnsError):
        parse_a_answers(b"\x00\x01\x81\x80", 1)


async def test_reconcile_adds_drains_and_keeps_on_failure(fake_dns: FakeDns) -> None:
    pool = Pool(PoolConfig(name="p", endpoints=()))
    discovery = DnsDiscovery(pool, DnsConfig(name=NAME, port=9, resolver=("127.0.0.1", fake_dns.port),
                                             timeout_s=0.2))  # no session: no probes, we play health checker
    fake_dns.set(NAME, ["127.0.0.2", "127.0.0.3"])
    await discovery.refresh()
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.2:9", "http://127.0.0.3:9"]
    assert not any(e.healthy for e in pool.endpoints)  # until a health check passes
    for e in pool.endpoints:
        e.healthy = True
    busy = pool.endpoints[0]
    busy.in_flight = 1
    fake_dns.set(NAME, ["127.0.0.3"])
    await discovery.refresh()
    assert busy in pool.endpoints and busy.draining  # still finishing a request
    busy.in_flight = 0
    discovery.reap()
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.3:9"]
    # Neither a resolver outage nor an empty answer empties the pool.
    fake_dns.silent = True
    await discovery.refresh()
    fake_dns.silent = False
    fake_dns.set(NAME, [])
    await discovery.refresh()
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.3:9"]
    # Make before break: while the replacement is unhealthy the old endpoint keeps serving.
    fake_dns.set(NAME, ["127.0.0.4"])
    await discovery.refresh()
    old, new = pool.endpoints
    assert not old.draining and not new.healthy
    new.healthy = True
    old.in_flight = 1
    await discovery.refresh()
    assert old.draining
    # A draining endpoint that comes back is taken back, not duplicated.
    fake_dns.set(NAME, ["127.0.0.3", "127.0.0.4"])
    await discovery.refresh()
    assert sorted((e.url, e.draining) for e in pool.endpoints) == [("http://127.0.0.3:9", False),
                                                                   ("http://127.0.0.4:9", False)]


class Traffic:
    """Client threads sending chat completions (a third of them slow) until stopped; counts outcomes."""

    def __init__(self, url: str, token: str, threads: int = 6) -> None:
        self.url = url
        self.token = token
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _loop(self, n: int) -> None:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(base_url=self.url, timeout=10,
                          headers={"authorization": f"Bearer {self.token}"}) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                # Slow requests keep work in flight on an endpoint while it drains.
                headers = {"x-fake-fault": "slow:0.3"} if (i + n) % 3 == 0 else {}
                try:
                    resp = client.post("/v1/chat/completions", json=body, headers=headers)
                    if resp.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


def _wait(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_gateway_follows_dns_under_traffic(fake_dns: FakeDns, host_backends: Any, make_gateway: Any) -> None:
    port = free_port()
    b2, b3 = host_backends("127.0.0.2", port, "b2"), host_backends("127.0.0.3", port, "b3")
    fake_dns.set(NAME, [b2.host])
    config = gateway_config([], server={"access_log": "off"})
    pool = config["pools"][0]
    pool.pop("endpoints")
    pool["dns"] = {"name": NAME, "port": port, "resolver": fake_dns.address, "interval_s": 0.2}
    gw = make_gateway(config)
    admin = {"authorization": f"Bearer {gw.token(scopes=['admin'])}"}

    def endpoints() -> dict[str, dict[str, Any]]:
        listing = httpx.get(gw.url + "/admin/pools", headers=admin, timeout=5).json()["default"]
        return {e["url"]: e for e in listing}

    assert list(endpoints()) == [b2.url] and endpoints()[b2.url]["healthy"]
    with Traffic(gw.url, gw.token()) as traffic:
        _wait("traffic", lambda: traffic.ok > 20)
        fake_dns.set(NAME, [b2.host, b3.host])  # scale out
        _wait("b3 to take traffic", lambda: b3.stats()["requests"] > 10)
        fake_dns.set(NAME, [b3.host])  # scale in: b2 drains, then goes
        _wait("b2 removed", lambda: list(endpoints()) == [b3.url])
        assert b2.stats()["in_flight"] == 0
        seen = b2.stats()["requests"]
        b2.proc.stop()
        b4 = host_backends("127.0.0.4", port, "b4")
        fake_dns.set(NAME, [b4.host])  # replace b3 by b4 in one step
        _wait("b3 replaced by b4", lambda: list(endpoints()) == [b4.url] and b4.stats()["requests"] > 10)
        b3.proc.stop()
        ok_before = traffic.ok
        _wait("more traffic", lambda: traffic.ok > ok_before + 20)
    assert traffic.failures == [], traffic.failures[:5]
    assert seen > 10 and traffic.ok > 100
    assert gw.metric("edgegw_discovery_events_total", pool="default", event="removed") == 2
