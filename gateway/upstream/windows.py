"""Context windows as the backends report them: `max_model_len` in their `GET /v1/models` (the
built-in backend and vLLM both list it), read at start-up for pools with `discover_context_length`."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from gateway.upstream.failures import UPSTREAM_ERRORS
from gateway.upstream.pool import Endpoint, Pool

log = logging.getLogger("edgegw.upstream")


async def read_windows(pool: Pool, session: aiohttp.ClientSession) -> None:
    """Fill `pool.context_lengths` (backend model name -> window) from every usable endpoint. Where
    endpoints differ, the largest window is kept: the gateway must never refuse what one would accept."""
    found = await asyncio.gather(*(_read(pool, session, e) for e in pool.endpoints if e.usable))
    for windows in found:
        for name, window in windows.items():
            pool.context_lengths[name] = max(window, pool.context_lengths.get(name, 0))
    if pool.context_lengths:
        log.info("pool %s context windows: %s", pool.name, pool.context_lengths)


async def _read(pool: Pool, session: aiohttp.ClientSession, endpoint: Endpoint) -> dict[str, int]:
    try:
        async with session.get(endpoint.url + "/v1/models", headers=pool.config.upstream_headers,
                               timeout=aiohttp.ClientTimeout(total=pool.config.health.timeout_s)) as resp:
            data = orjson.loads(await resp.read()) if resp.status == 200 else None
    except (*UPSTREAM_ERRORS, orjson.JSONDecodeError):
        return {}
    models = data.get("data") if isinstance(data, dict) else None
    out: dict[str, int] = {}
    for model in models if isinstance(models, list) else []:
        if isinstance(model, dict) and isinstance(model.get("id"), str):
            window = model.get("max_model_len")
            if type(window) is int and window > 0:
                out[model["id"]] = window
    return out
