"""One request against an OpenAI-compatible endpoint, timed: headers, each SSE content event, the end.

aiohttp's line reader hands over each SSE line as soon as its bytes arrive (no fixed-size reads
that would batch events), so token timestamps are those of the wire, give or take the event loop.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from gateway.client.loadtest.metrics import Sample

OVERHEAD_HEADER = "x-edgegw-overhead-ms"


class Target:
    """Where requests go and how: the endpoint URL, headers and the request timeout."""

    def __init__(self, url: str, token: str | None, timeout_s: float,
                 extra_headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = {"content-type": "application/json", "accept": "text/event-stream, application/json",
                        **(extra_headers or {})}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)


async def send(session: aiohttp.ClientSession, target: Target, body: bytes, stream: bool,
               epoch: float) -> Sample:
    """Send one request and measure it; never raises for HTTP or transport failures (they are samples)."""
    start = time.perf_counter() - epoch
    sample = Sample(start=start, end=start, status=0, ok=False)
    try:
        # A redirect is an answer (an error by its status), never followed: it could lead off this machine.
        async with session.post(target.url, data=body, headers=target.headers, timeout=target.timeout,
                                allow_redirects=False) as resp:
            sample.status = resp.status
            overhead = resp.headers.get(OVERHEAD_HEADER)
            if overhead is not None:
                sample.overhead_ms = _float(overhead)
            if resp.status != 200:
                sample.error_code = _error_code(await resp.read())
            elif stream and resp.content_type == "text/event-stream":
                await _read_stream(resp, sample, epoch)
            else:
                _read_json(await resp.read(), sample, time.perf_counter() - epoch)
    except TimeoutError:
        sample.error_code = "client_timeout"
    except aiohttp.ClientConnectorError:
        sample.error_code = "connect_error"
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        sample.error_code = "connection_cut"
    except aiohttp.ClientError as exc:
        sample.error_code = type(exc).__name__
    sample.end = time.perf_counter() - epoch
    if sample.ok and not stream and sample.first_token is None:
        sample.first_token = sample.end  # non-streaming: the whole answer is the first token
    return sample


async def _read_stream(resp: aiohttp.ClientResponse, sample: Sample, epoch: float) -> None:
    events = 0
    usage_tokens: int | None = None
    done = False
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        now = time.perf_counter() - epoch
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            sample.error_code = "bad_sse_event"
            return
        if "error" in event:  # an error reported inside the stream after a 200
            sample.error_code = _code_of(event) or "stream_error"
            return
        if event.get("usage"):
            usage_tokens = event["usage"].get("completion_tokens", usage_tokens)
        if _has_content(event):
            events += 1
            sample.token_times.append(now)
            if sample.first_token is None:
                sample.first_token = now
    if not done:
        sample.error_code = "stream_incomplete"
        return
    sample.output_tokens = usage_tokens if usage_tokens is not None else events
    sample.ok = True


def _has_content(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            return True
    return False


def _read_json(raw: bytes, sample: Sample, now: float) -> None:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        sample.error_code = "bad_json"
        return
    usage = payload.get("usage") if isinstance(payload, dict) else None
    sample.output_tokens = int((usage or {}).get("completion_tokens") or 0)
    sample.first_token = now
    sample.ok = True


def _error_code(raw: bytes) -> str:
    try:
        return _code_of(orjson.loads(raw)) or "-"
    except orjson.JSONDecodeError:
        return "-"


def _code_of(payload: Any) -> str | None:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("code") or error.get("type") or "") or None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
