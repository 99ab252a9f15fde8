"""`GET /admin/usage?since=...&by=...`: usage buckets grouped by the labels asked for, with cost
where the pool config prices the model. Admin-only; a bad parameter is a 400 that names it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, bad_request
from gateway.feature import GatewayView
from gateway.telemetry.config import pool_prices
from gateway.telemetry.runtime import TELEMETRY_KEY
from gateway.telemetry.usage import COUNTS

if TYPE_CHECKING:
    from gateway.telemetry.config import ModelPrice
    from gateway.telemetry.usage_store import Buckets

_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PARAMS = ("since", "by")
DEFAULT_SINCE = "24h"


def parse_since(text: str, now: float) -> float:
    """`7d`, `24h`, `30m`, `2w`, a Unix time or an ISO 8601 time; raises ValueError."""
    match = _DURATION.match(text.strip())
    if match:
        return now - int(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def prices_by_model(config: GatewayConfig) -> dict[str, ModelPrice]:
    out: dict[str, ModelPrice] = {}
    for pool in config.pools:
        prices = pool_prices(pool)
        if prices is not None:
            for model, price in prices.by_model.items():
                out.setdefault(model, price)
    return out


def report(buckets: Buckets, names: tuple[str, ...], by: list[str], prices: dict[str, ModelPrice]) -> dict[str, Any]:
    """Rows grouped by `by` (label names), largest first, and the totals."""
    index = [names.index(b) for b in by]
    model_at = names.index("model") if "model" in names else None
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    totals: dict[str, Any] = {c: 0 for c in COUNTS}
    totals["cost"] = 0.0 if prices and model_at is not None else None
    for series in buckets.values():
        for key, counts in series.items():
            group = tuple(key[i] for i in index)
            row = rows.get(group)
            if row is None:
                row = rows[group] = {**dict(zip(by, group, strict=True)), **{c: 0 for c in COUNTS},
                                     "cost": totals["cost"] if totals["cost"] is None else 0.0}
            for what, n in zip(COUNTS, counts, strict=True):
                row[what] += n
                totals[what] += n
            if model_at is not None and totals["cost"] is not None:
                price = prices.get(key[model_at])
                if price is not None:
                    cost = price.cost(counts[1], counts[2], counts[3])
                    row["cost"] += cost
                    totals["cost"] += cost
    ordered = sorted(rows.values(), key=lambda r: (-r["input_tokens"] - r["output_tokens"], -r["requests"]))
    return {"rows": ordered, "totals": totals}


def usage_routes(config: GatewayConfig) -> list[BaseRoute]:
    """`GET /admin/usage` (mounted under `/admin`, behind the admin check)."""

    async def get_usage(request: Request) -> Response:
        gateway: GatewayView = request.app.state.gateway
        telemetry = gateway.state(TELEMETRY_KEY)
        if telemetry is None or telemetry.store is None:
            raise GatewayError(404, "usage is not counted: add `telemetry:` (with usage) to the policy",
                               "usage_disabled")
        store = telemetry.store
        for name in request.query_params:
            if name not in PARAMS:
                raise bad_request(f"unknown parameter {name!r} (allowed: {', '.join(PARAMS)})", param=name)
        now = time.time()
        since_text = request.query_params.get("since", DEFAULT_SINCE)
        try:
            since = parse_since(since_text, now)
        except ValueError:
            raise bad_request(f"since: expected a duration such as 7d, 24h or 30m, a Unix time or an ISO 8601 "
                              f"time, got {since_text[:64]!r}", param="since") from None
        if since > now:
            raise bad_request("since: lies in the future", param="since")
        by = [b.strip() for b in request.query_params.get("by", ",".join(store.names)).split(",") if b.strip()]
        for b in by:
            if b not in store.names:
                raise bad_request(f"by: unknown label {b[:64]!r} (counted: {', '.join(store.names)})", param="by")
        if len(set(by)) != len(by):
            raise bad_request("by: a label is listed twice", param="by")
        buckets = await store.buckets(since)
        body = report(buckets, store.names, by, prices_by_model(gateway.config))
        scope = store.scope
        body.update({
            "scope": scope,
            "note": "every replica (counters kept in Redis)" if scope == "cluster" else
                    "this replica only (every worker of it): configure redis: to count across replicas",
            "since": datetime.fromtimestamp(since, UTC).isoformat(),
            "until": datetime.fromtimestamp(now, UTC).isoformat(),
            "by": by,
            "hour_buckets": True,  # counts are kept per hour: `since` starts at its hour
            "max_series": telemetry.config.usage.max_series if telemetry.config.usage else None,
        })
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return [Route("/usage", get_usage, methods=["GET"])]
