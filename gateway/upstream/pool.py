"""A pool of OpenAI-compatible endpoints and how one is picked for a request."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from gateway import metrics
from gateway.config.schema import EndpointConfig, PoolConfig
from gateway.errors import unavailable
from gateway.upstream.balance import RoutedShare, endpoint_salt
from gateway.upstream.config import InferenceConfig, pool_options
from gateway.upstream.inference import InferenceBalancer
from gateway.upstream.prompt_key import PromptKey
from gateway.upstream.rollout import BackendRollout
from gateway.upstream.signals import EndpointSignals


@dataclass(eq=False)
class Endpoint:
    """One backend replica and its live state."""

    pool: str
    url: str
    weight: int = 1
    group: str = "default"
    healthy: bool = True  # last active health check
    in_flight: int = 0
    consecutive_failures: int = 0
    ejected_until: float = 0.0  # monotonic time; 0 when not ejected
    ejections: int = 0  # consecutive ejections, for exponential back-off
    draining: bool = False  # removed by discovery; finishes in-flight work, takes no new
    latency_ewma_s: float = 0.0
    current_weight: int = 0  # smooth weighted round-robin state
    # `balancer: inference`: the server's own load signals, and a counter that invalidates every prefix
    # affinity to this endpoint at once (bumped when it fails or is ejected: its cache may be gone).
    signals: EndpointSignals | None = None
    affinity_epoch: int = 0
    routed: RoutedShare = field(default_factory=RoutedShare)
    host: str = field(init=False)
    salt: int = field(init=False)
    _targets: dict[str, URL] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.host = urlsplit(self.url).netloc
        self.salt = endpoint_salt(self.url)

    def target(self, path: str) -> URL:
        """The parsed URL for `path` on this endpoint, parsed once (parsing per request adds up)."""
        url = self._targets.get(path)
        if url is None:
            url = self._targets[path] = URL(self.url + path)
        return url

    @property
    def ejected(self) -> bool:
        return self.ejected_until > 0.0

    @property
    def usable(self) -> bool:
        """Healthy, not ejected and not draining: it may take new requests when it has room."""
        return self.healthy and not self.ejected and not self.draining

    def available(self, max_in_flight: int) -> bool:
        return self.usable and self.in_flight < max_in_flight

    def label(self) -> tuple[str, str]:
        return (self.pool, self.host)

    def describe(self) -> dict[str, Any]:
        """What operators see of this endpoint (`/admin/pools`, the status page)."""
        out: dict[str, Any] = {
            "url": self.url, "healthy": self.healthy, "ejected": self.ejected, "in_flight": self.in_flight,
            "weight": self.weight, "group": self.group, "latency_ms": round(self.latency_ewma_s * 1000, 3)}
        if self.routed.requests or self.signals is not None:
            s = self.signals
            predicted = self.routed.predicted_hit_share
            out["inference"] = {
                "queue": s.waiting if s else None, "running": s.running if s else None,
                "kv_use": round(s.kv, 4) if s else None,
                "signal_age_s": round(time.monotonic() - s.at, 3) if s else None,
                "prefix_hit_share": round(s.hit_share, 4) if s and s.hit_share is not None else None,
                "predicted_hit_share": round(predicted, 4) if predicted is not None else None,
                "routed": self.routed.requests}
        return out


class RetryBudget:
    """Retries may add at most `ratio` of recent requests (but always `min_per_s`): no retry storms."""

    WINDOW_S = 10.0

    def __init__(self, ratio: float, min_per_s: float) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self._window_start = time.monotonic()
        self._requests = 0
        self._retries = 0

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self._window_start > self.WINDOW_S:
            self._window_start, self._requests, self._retries = now, 0, 0

    def record_request(self) -> None:
        self._roll()
        self._requests += 1

    def try_acquire(self) -> bool:
        self._roll()
        allowed = max(self.min_per_s * self.WINDOW_S, self.ratio * self._requests)
        if self._retries < allowed:
            self._retries += 1
            return True
        return False


class Pool:
    """Named endpoints serving a set of models, with the configured balancer."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.name = config.name
        self.models = frozenset(config.models)
        self.context_lengths: dict[str, int] = {}  # backend model name -> window (`discover_context_length`)
        self.endpoints: list[Endpoint] = []
        self.retry_budget = RetryBudget(config.retries.budget_ratio, config.retries.min_retries_per_s)
        self._rr = 0
        # A canary rollout between endpoint groups (`rollout:`); None for most pools.
        options = pool_options(config)
        self.rollout = BackendRollout(config.name, options.rollout) if options.rollout is not None else None
        # `balancer: inference` routes on the prompt (`pick(..., key)`); the others never look at it.
        self.inference = (InferenceBalancer(config.name, options.inference or InferenceConfig())
                          if config.balancer == "inference" else None)
        pick = {"least_outstanding": self._pick_p2c, "round_robin": self._pick_rr,
                "weighted": self._pick_weighted, "inference": self._pick_p2c}
        self._pick = pick[config.balancer]
        for ep in config.endpoints:
            self.add_endpoint(ep)

    def add_endpoint(self, ep: EndpointConfig) -> Endpoint:
        endpoint = Endpoint(self.name, ep.url, ep.weight, ep.group)
        self.endpoints.append(endpoint)
        metrics.endpoint_healthy.labels(*endpoint.label()).set(1)
        metrics.endpoint_in_flight.labels(*endpoint.label()).set(0)
        return endpoint

    def remove_endpoint(self, endpoint: Endpoint) -> None:
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
            metrics.endpoint_healthy.labels(*endpoint.label()).set(0)

    def has_healthy(self) -> bool:
        return any(e.usable for e in self.endpoints)

    def pick(self, exclude: set[Endpoint] | None = None, key: PromptKey | None = None) -> Endpoint:
        """Choose an endpoint for one attempt or raise a fast 503 (never queue without bound). `key`: the
        prompt, for `balancer: inference` (which routes like least_outstanding without it)."""
        limit = self.config.max_inflight_per_endpoint
        candidates = [e for e in self.endpoints if e.available(limit) and (not exclude or e not in exclude)]
        if not candidates:
            up = [e for e in self.endpoints if e.usable]
            if up and all(e.in_flight >= limit for e in up):
                raise unavailable(f"pool {self.name!r} is saturated; retry shortly", 1, "pool_saturated")
            raise unavailable(f"pool {self.name!r} has no healthy endpoint", 2, "no_healthy_upstream")
        if self.rollout is not None:
            candidates = self.rollout.narrow(candidates)
        if self.inference is not None:
            return self.inference.pick(candidates, key)
        if len(candidates) == 1:
            return candidates[0]
        return self._pick(candidates)

    def _pick_p2c(self, candidates: list[Endpoint]) -> Endpoint:
        a, b = random.sample(candidates, 2)
        if a.in_flight != b.in_flight:
            return a if a.in_flight < b.in_flight else b
        return a if a.latency_ewma_s <= b.latency_ewma_s else b

    def _pick_rr(self, candidates: list[Endpoint]) -> Endpoint:
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def _pick_weighted(self, candidates: list[Endpoint]) -> Endpoint:
        # Smooth weighted round-robin (as nginx): exact shares, evenly interleaved.
        total = 0
        best: Endpoint | None = None
        for e in candidates:
            e.current_weight += e.weight
            total += e.weight
            if best is None or e.current_weight > best.current_weight:
                best = e
        if best is None or total == 0:
            return candidates[0]
        best.current_weight -= total
        return best

    # --- outcomes, reported by the forwarder -------------------------------------------------

    def on_success(self, endpoint: Endpoint, latency_s: float) -> None:
        if self.rollout is not None:
            self.rollout.record(endpoint, True, latency_s)
        endpoint.consecutive_failures = 0
        endpoint.ejections = 0
        endpoint.latency_ewma_s = latency_s if endpoint.latency_ewma_s == 0 else (
            0.8 * endpoint.latency_ewma_s + 0.2 * latency_s)

    def on_failure(self, endpoint: Endpoint) -> None:
        if self.rollout is not None:
            self.rollout.record(endpoint, False, None)
        endpoint.affinity_epoch += 1  # a failing replica may have lost its cache: route no prefix there
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures >= self.config.outlier.consecutive_failures and not endpoint.ejected:
            self.eject(endpoint)

    def eject(self, endpoint: Endpoint) -> None:
        o = self.config.outlier
        backoff = min(o.max_ejection_s, o.base_ejection_s * (2 ** endpoint.ejections))
        endpoint.ejections += 1
        endpoint.affinity_epoch += 1
        endpoint.signals = None
        endpoint.ejected_until = time.monotonic() + backoff
        metrics.ejections_total.labels(*endpoint.label()).inc()
        metrics.endpoint_healthy.labels(*endpoint.label()).set(0)

    def readmit(self, endpoint: Endpoint) -> None:
        endpoint.ejected_until = 0.0
        endpoint.consecutive_failures = 0
        metrics.readmissions_total.labels(*endpoint.label()).inc()
        metrics.endpoint_healthy.labels(*endpoint.label()).set(1)
