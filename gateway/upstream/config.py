"""What a pool may add to its frame (`pools[]` in `gateway.config.schema`): endpoint discovery by DNS
(`pools[].dns`), a step-by-step rollout of a canary endpoint group (`pools[].rollout`) and the
`inference` balancer's settings (`pools[].inference`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import PoolConfig
from gateway.upstream.rollout import RolloutConfig

NAME = "upstream"


@dataclass(frozen=True)
class DnsConfig:
    """A pool's `dns:` section."""

    name: str  # the hostname to resolve, e.g. edgegw-backend.edgegw.svc.cluster.local
    port: int  # every discovered address is reached on this port
    scheme: str = "http"
    interval_s: float = 5.0
    timeout_s: float = 2.0
    resolver: tuple[str, int] | None = None  # ask this DNS server directly; None: the system resolver
    weight: int = 1
    group: str = "default"

    def url(self, address: str) -> str:
        return f"{self.scheme}://{address}:{self.port}"


def parse_dns(sec: Section) -> DnsConfig:
    """Validate a pool's `dns:` section."""
    resolver = sec.str("resolver", None)
    server: tuple[str, int] | None = None
    if resolver is not None:
        host, sep, port = resolver.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise sec.error("resolver", f"expected host:port of a DNS server, got {resolver!r}")
        server = (host.strip("[]"), int(port))
    cfg = DnsConfig(
        name=sec.str("name"),
        port=sec.int("port", min=1, max=65535),
        scheme=sec.str("scheme", "http", choices=("http", "https")),
        interval_s=sec.float("interval_s", 5.0, min=0.05),
        timeout_s=sec.float("timeout_s", 2.0, min=0.01),
        resolver=server,
        weight=sec.int("weight", 1, min=0),
        group=sec.str("group", "default"),
    )
    sec.done()
    return cfg


@dataclass(frozen=True)
class SharedIndexConfig:
    """`pools[].inference.shared_index`: the prefix index exchanged through Redis
    (gateway.upstream.index_share)."""

    redis_url: str
    key: str  # the pool's Redis stream
    interval_s: float = 0.05
    timeout_ms: int = 250
    retry_s: float = 1.0  # after a failure, Redis is left alone this long
    max_entries: int = 2048  # the stream keeps about this many entries (Redis memory)
    ttl_s: float = 3600.0  # an idle pool's stream goes away


@dataclass(frozen=True)
class InferenceConfig:
    """`pools[].inference`: the `inference` balancer's signals and guard (gateway.upstream.inference)."""

    metrics_path: str = "/metrics"
    scrape_interval_s: float = 0.1
    scrape_timeout_s: float = 0.25
    stale_after_s: float = 0.5  # older signals count as unknown
    max_metrics_bytes: int = 1024 * 1024
    load_factor: float = 1.5  # no endpoint takes more than this times the mean load (plus one), 4 ahead of the least
    balance_ratio: float = 1.25  # requests routed lately: at most this times the least's (with free slots) + 1
    index_blocks: int = 65536  # prefix blocks remembered per pool (per worker)
    session_header: str | None = None  # a client header naming the session (a hint, like `user`)
    shared_index: SharedIndexConfig | None = None  # None: each worker routes on its own index alone


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def parse_shared_index(sec: Section, pool: str) -> SharedIndexConfig:
    """A pool's `inference.shared_index:` (Redis, single node)."""
    url = sec.str("redis_url")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise sec.error("redis_url", "expected a redis://, rediss:// or unix:// URL")
    cfg = SharedIndexConfig(
        redis_url=url,
        key=sec.str("key", f"edgegw:routing-index:{pool}"),
        interval_s=sec.float("interval_s", 0.05, min=0.005, max=10.0),
        timeout_ms=sec.int("timeout_ms", 250, min=1, max=10_000),
        retry_s=sec.float("retry_s", 1.0, min=0.01, max=600.0),
        max_entries=sec.int("max_entries", 2048, min=16, max=1_000_000),
        ttl_s=sec.float("ttl_s", 3600.0, min=1.0, max=30 * 86400.0),
    )
    sec.done()
    return cfg


def parse_inference(sec: Section, pool: str = "") -> InferenceConfig:
    """A pool's `inference:` settings (read whatever the balancer, so a typo is caught either way)."""
    header = sec.str("session_header", None)
    if header is not None and not _HEADER_NAME.match(header):
        raise sec.error("session_header", "not a valid HTTP header name")
    path = sec.str("metrics_path", "/metrics")
    if not path.startswith("/"):
        raise sec.error("metrics_path", "must start with /")
    cfg = InferenceConfig(
        metrics_path=path,
        scrape_interval_s=sec.float("scrape_interval_s", 0.1, min=0.01, max=60.0),
        scrape_timeout_s=sec.float("scrape_timeout_s", 0.25, min=0.01, max=10.0),
        stale_after_s=sec.float("stale_after_s", 0.5, min=0.02, max=600.0),
        max_metrics_bytes=sec.int("max_metrics_bytes", 1024 * 1024, min=1024, max=64 * 1024 * 1024),
        load_factor=sec.float("load_factor", 1.5, min=1.0, max=100.0),
        balance_ratio=sec.float("balance_ratio", 1.25, min=1.0, max=100.0),
        index_blocks=sec.int("index_blocks", 65536, min=16, max=16 * 1024 * 1024),
        session_header=header.lower() if header else None,
        shared_index=parse_shared_index(sec.section("shared_index"), pool) if sec.has("shared_index") else None,
    )
    sec.done()
    return cfg


@dataclass(frozen=True)
class PoolOptions:
    dns: DnsConfig | None = None  # endpoint discovery, see gateway.upstream.discovery
    rollout: RolloutConfig | None = None  # canary group rolled out step by step, see gateway.upstream.rollout
    inference: InferenceConfig | None = None  # `balancer: inference` settings; None: its defaults


_NONE = PoolOptions()


def pool_options(pool: PoolConfig) -> PoolOptions:
    """A pool's discovery and rollout settings (neither: both None)."""
    return cast(PoolOptions, pool.sections.get(NAME, _NONE))


def parse_pool_part(sec: Section, frame: Frame) -> PoolOptions | None:
    endpoints = sec.data.get("endpoints") or []  # read (and checked) by the frame already
    dns = parse_dns(sec.section("dns")) if sec.has("dns") else None
    if not endpoints and dns is None:
        raise sec.error("endpoints", "a pool needs endpoints or dns discovery")
    groups = {str(e.get("group", "default")) for e in endpoints if isinstance(e, dict)}
    rollout = _rollout(sec.section("rollout"), groups) if sec.has("rollout") else None
    inference = parse_inference(sec.section("inference"), str(sec.data.get("name", ""))) if sec.has(
        "inference") else None
    if dns is None and rollout is None and inference is None:
        return None
    return PoolOptions(dns, rollout, inference)


def _rollout(sec: Section, groups: set[str]) -> RolloutConfig:
    """A pool's `rollout:`: its canary group must have endpoints."""
    steps = sec.raw("steps", [5, 25, 50, 100])
    if not isinstance(steps, list) or not steps or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 100 for x in steps):
        raise sec.error("steps", "expected a list of canary shares in percent, each above 0 and at most 100")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise sec.error("steps", "shares must increase")
    cfg = RolloutConfig(
        canary_group=sec.str("canary_group", "canary"),
        steps=tuple(float(x) for x in steps),
        interval_s=sec.float("interval_s", 60.0, min=0.0),
        min_requests=sec.int("min_requests", 100, min=1),
        max_error_rate_increase=sec.float("max_error_rate_increase", 0.02, min=0.0, max=1.0),
        max_latency_ratio=sec.float("max_latency_ratio", 1.5, min=1.0),
        max_ttft_ratio=sec.float("max_ttft_ratio", 1.5, min=1.0),
        confidence=sec.float("confidence", RolloutConfig.confidence, min=0.5, max=0.999999),
        failed_looks=sec.int("failed_looks", 1, min=1),
    )
    if groups and cfg.canary_group not in groups:
        raise sec.error("canary_group", f"no endpoint of this pool has group {cfg.canary_group!r}")
    sec.done()
    return cfg
