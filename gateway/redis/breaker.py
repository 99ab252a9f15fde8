"""The link's circuit breaker: after a failure Redis is left alone for a while, then probed again."""

from __future__ import annotations

import logging
import time

from gateway.redis.metrics import redis_degraded, redis_errors_total

log = logging.getLogger("edgegw.redis")


class Breaker:
    """After a failed call the link is *degraded*: `open` is True (callers get `RedisUnavailable` at
    once, without touching the network) until `retry_interval_s` has passed; then the next call probes
    Redis, and its success (`succeeded`) ends the degraded state."""

    __slots__ = ("retry_interval_s", "degraded", "_down_until")

    def __init__(self, retry_interval_s: float) -> None:
        self.retry_interval_s = retry_interval_s
        self.degraded = False
        self._down_until = 0.0

    @property
    def open(self) -> bool:
        """Degraded, and not yet time to probe Redis again."""
        return self.degraded and time.monotonic() < self._down_until

    def failed(self, op: str, exc: BaseException) -> None:
        redis_errors_total.labels(op).inc()
        self._down_until = time.monotonic() + self.retry_interval_s
        if not self.degraded:
            self.degraded = True
            redis_degraded.set(1)
            log.warning("redis degraded (%s: %s): limits use their on_redis_error fallback, the cache is "
                        "bypassed; probing again every %.2fs", op, exc or type(exc).__name__,
                        self.retry_interval_s)

    def succeeded(self) -> None:
        if self.degraded:
            self.degraded = False
            redis_degraded.set(0)
            log.warning("redis recovered: limits and the cache use Redis again")
