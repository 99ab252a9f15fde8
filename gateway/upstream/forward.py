"""Send a request to a pool: pick an endpoint, retry safely, report outcomes, stream the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import orjson

from gateway import metrics
from gateway.config.schema import PoolConfig
from gateway.context import RequestContext
from gateway.errors import GatewayError, error_body, error_code
from gateway.telemetry.propagation import propagate_unsampled
from gateway.upstream.config import pool_options
from gateway.upstream.discovery import DnsDiscovery
from gateway.upstream.failures import UPSTREAM_ERRORS, AnswerTooLarge, failure_kind
from gateway.upstream.health import HealthChecker
from gateway.upstream.index_share import IndexShare
from gateway.upstream.pool import Endpoint, Pool
from gateway.upstream.prompt_key import PromptKey, prompt_key
from gateway.upstream.signals import SignalScraper
from gateway.upstream.windows import read_windows

log = logging.getLogger("edgegw.upstream")

# Never forwarded: hop-by-hop headers, and the partner's credentials (the backend trusts the gateway).
_DROP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                   "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie",
                   "expect", "x-api-key"})
_PASS_BACK = ("content-type", "retry-after", "x-request-id")
_RETRY_STATUS = frozenset({502, 503})
# What the client is told when an attempt failed before anything was sent to it (by `failure_kind`).
_FAILURE_MESSAGES = {"connect": ("unreachable", "upstream_connect_error"),
                     "reset": ("closed the connection", "upstream_connect_error"),
                     "protocol": ("sent an invalid HTTP response", "upstream_protocol_error")}


@dataclass(slots=True)
class StreamTally:
    """What a streamed answer delivered so far: charged when the stream ends early."""

    events: int = 0  # SSE `data:` lines passed on (about one token each)
    complete: bool = False  # the backend ended it with `data: [DONE]`


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes | None  # None when streaming
    raw: aiohttp.ClientResponse | None = None
    endpoint: Endpoint | None = None
    # A stream's: frees the endpoint's in-flight slot once it ends, and when the attempt began.
    release: Callable[[], None] | None = None
    started: float = 0.0
    head: bytes = b""  # a stream's first chunk, already read (gateway.upstream.fallback): sent first


class Upstreams:
    """Every pool with its one keep-alive HTTP client and its health checker."""

    def __init__(self, configs: tuple[PoolConfig, ...]) -> None:
        self.pools: dict[str, Pool] = {c.name: Pool(c) for c in configs}
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.checkers: list[HealthChecker] = []
        self.discoveries: list[DnsDiscovery] = []
        self.scrapers: list[SignalScraper] = []
        self.shares: list[IndexShare] = []  # `inference.shared_index`: prefix indexes exchanged through Redis
        metrics.on_scrape(self._export_in_flight)
        # Per pool: (streamed, non-streamed). A stream's first byte and every gap between its chunks
        # are bounded by first_byte_s; a non-streamed answer arrives in one piece when the whole
        # generation is done, so only its total is bounded.
        self._timeouts = {c.name: (aiohttp.ClientTimeout(total=c.timeouts.total_s, sock_connect=c.timeouts.connect_s,
                                                         sock_read=c.timeouts.first_byte_s),
                                   aiohttp.ClientTimeout(total=min(c.timeouts.non_stream_total_s, c.timeouts.total_s),
                                                         sock_connect=c.timeouts.connect_s))
                          for c in configs}

    async def start(self) -> None:
        for name, pool in self.pools.items():
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=30)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                            cookie_jar=aiohttp.DummyCookieJar(),
                                            skip_auto_headers=("User-Agent", "Accept-Encoding"))
            self.sessions[name] = session
            checker = HealthChecker(pool, session)
            self.checkers.append(checker)
            dns = pool_options(pool.config).dns
            if dns is not None:
                self.discoveries.append(DnsDiscovery(pool, dns, session))
            if pool.inference is not None:
                self.scrapers.append(SignalScraper(pool, pool.inference.config, session))
                if pool.inference.config.shared_index is not None:
                    self.shares.append(IndexShare(pool, pool.inference.config.shared_index))
        # Discovered endpoints join before the first health round, so /readyz counts them.
        await asyncio.gather(*(d.refresh() for d in self.discoveries))
        # One synchronous round first, so /readyz is truthful from the first request.
        await asyncio.gather(*(c.check_all() for c in self.checkers))
        await asyncio.gather(*(read_windows(p, self.sessions[p.name]) for p in self.pools.values()
                               if p.config.discover_context_length))
        for checker in self.checkers:
            checker.start()
        for discovery in self.discoveries:
            discovery.start()
        for scraper in self.scrapers:
            scraper.start()
        for share in self.shares:
            share.start()

    async def stop(self) -> None:
        for scraper in self.scrapers:
            await scraper.stop()
        for share in self.shares:
            await share.stop()
        for discovery in self.discoveries:
            await discovery.stop()
        for checker in self.checkers:
            await checker.stop()
        for session in self.sessions.values():
            await session.close()

    def _export_in_flight(self) -> None:
        for pool in self.pools.values():
            for endpoint in pool.endpoints:
                metrics.endpoint_in_flight.labels(*endpoint.label()).set(endpoint.in_flight)

    def ready(self) -> bool:
        return all(p.has_healthy() for p in self.pools.values())

    async def send(self, ctx: RequestContext, path: str, body: bytes, deadline: float | None = None,
                   fallback: bool = False) -> UpstreamResponse:
        """Forward to `ctx.pool`, retrying failed connections, invalid answers, 502 and 503 on another
        endpoint. `deadline` (monotonic) caps the total timeout; a `fallback` hop took its retry budget."""
        pool = ctx.pool
        assert pool is not None
        session = self.sessions[pool.name]
        timeout = self._timeouts[pool.name][0 if ctx.stream else 1]
        if deadline is not None:
            left = max(0.001, deadline - time.monotonic())
            if timeout.total is None or left < timeout.total:
                timeout = aiohttp.ClientTimeout(total=left, sock_connect=timeout.sock_connect,
                                                sock_read=timeout.sock_read)
        headers = {k: v for k, v in ctx.headers.items() if k not in _DROP}
        headers["x-request-id"] = ctx.request_id
        headers["x-forwarded-for"] = ctx.client_ip
        headers["content-type"] = "application/json"
        headers.update(pool.config.upstream_headers)  # the pool's own credentials, never the client's
        if ctx.upstream_host:  # a plugin set `:authority`
            headers["host"] = ctx.upstream_host
        trace = ctx.trace
        if trace is not None:
            trace.begin_inference(ctx)
        elif ctx.trace_context is not None:  # tracing is on, this request is not sampled
            propagate_unsampled(ctx, headers)
        if not fallback:
            pool.retry_budget.record_request()
        key = _prompt_key(ctx, pool) if pool.inference is not None else None
        tried: set[Endpoint] = set()
        last_error: GatewayError | None = None
        for attempt in range(pool.config.retries.attempts + 1):
            if attempt:
                if not pool.retry_budget.try_acquire():
                    break
                metrics.retries_total.labels(pool.name, last_error.code if last_error else "error").inc()
            try:
                endpoint = pool.pick(tried, key)
            except GatewayError as exc:
                if last_error is None:
                    raise
                if exc.code == "pool_saturated":
                    last_error = exc
                break
            tried.add(endpoint)
            ctx.endpoint = endpoint
            ctx.attempts = attempt + 1
            if trace is None:
                result = await self._attempt(ctx, pool, endpoint, session, timeout, path, body, headers)
            else:  # in a span of its own, whose context the backend gets
                begun = trace.begin_attempt(headers)
                reason = last_error.code if last_error else None
                try:
                    result = await self._attempt(ctx, pool, endpoint, session, timeout, path, body, headers)
                except BaseException as exc:
                    trace.end_attempt(begun, endpoint.url, attempt + 1, reason, None, error_code(exc))
                    raise
                trace.end_attempt(begun, endpoint.url, attempt + 1, reason, result.status,
                                  result.code if isinstance(result, GatewayError) else None)
            if isinstance(result, UpstreamResponse):
                return result
            last_error = result
        assert last_error is not None
        raise last_error

    async def _attempt(self, ctx: RequestContext, pool: Pool, endpoint: Endpoint,
                       session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout, path: str,
                       body: bytes, headers: dict[str, str]) -> UpstreamResponse | GatewayError:
        """One try. Returns a retryable GatewayError, or the response; raises what must not be retried."""
        started = time.perf_counter()
        endpoint.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                endpoint.in_flight -= 1

        try:
            resp = await session.post(endpoint.target(path), data=body, headers=headers, timeout=timeout)
        except UPSTREAM_ERRORS as exc:
            release()
            ctx.upstream_s += time.perf_counter() - started
            return self._failed(pool, endpoint, exc)
        except BaseException:
            release()
            raise
        if resp.status in _RETRY_STATUS:
            try:
                payload = await resp.read()
            except UPSTREAM_ERRORS:
                payload = b""
            finally:
                release()
                resp.release()
            ctx.upstream_s += time.perf_counter() - started
            pool.on_failure(endpoint)
            metrics.upstream_errors_total.labels(pool.name, f"http_{resp.status}").inc()
            err = GatewayError(resp.status, _upstream_message(payload, resp.status), f"upstream_{resp.status}")
            if "retry-after" in resp.headers:
                err.headers["retry-after"] = resp.headers["retry-after"]
            return err
        out_headers = {k: resp.headers[k] for k in _PASS_BACK if k in resp.headers}
        if resp.status >= 500:
            pool.on_failure(endpoint)
        streaming = ctx.stream and resp.status == 200 and out_headers.get("content-type", "").startswith(
            "text/event-stream")
        if streaming:
            ctx.upstream_s += time.perf_counter() - started
            if pool.rollout is not None:  # a stream's first byte: time to first token, for the rollout's judge
                pool.rollout.first_byte(endpoint, time.perf_counter() - started)
            return UpstreamResponse(resp.status, out_headers, None, raw=resp, endpoint=endpoint, release=release,
                                    started=started)
        failure: BaseException | None = None
        try:
            limit = pool.config.max_response_bytes
            length = resp.content_length
            # (aiohttp reads exactly a declared length: only an undeclared one is read in capped steps)
            payload = await resp.read() if length is not None and length <= limit else await _read_capped(resp, limit)
        except UPSTREAM_ERRORS as exc:
            failure = exc
        finally:
            release()
            resp.release() if failure is None else resp.close()
            elapsed = time.perf_counter() - started
            ctx.upstream_s += elapsed
            metrics.upstream_seconds_by.get(pool.name).observe(elapsed)
        if failure is not None:  # the answer broke off: nothing was sent to the client yet
            return self._failed(pool, endpoint, failure, "read")
        if resp.status < 500:
            pool.on_success(endpoint, elapsed)
        if ctx.collect_response:
            ctx.upstream_content_type = out_headers.get("content-type", "")
        return UpstreamResponse(resp.status, out_headers, payload, endpoint=endpoint)

    @staticmethod
    def _failed(pool: Pool, endpoint: Endpoint, exc: BaseException, during: str = "") -> GatewayError:
        """An attempt's failure, counted towards the endpoint's ejection: a retryable 502, or raises a
        504 on a timeout (the backend may still be working on it: not retried)."""
        pool.on_failure(endpoint)
        kind = failure_kind(exc)
        metrics.upstream_errors_total.labels(pool.name, kind if kind == "timeout" else during or kind).inc()
        if kind == "timeout":
            raise GatewayError(504, "upstream did not answer in time", "upstream_timeout") from None
        log.info("upstream %s %s failure%s: %s", endpoint.url, kind, f" ({during})" if during else "",
                 type(exc).__name__)
        if during:
            return GatewayError(502, f"upstream failed while answering: {type(exc).__name__}",
                                "upstream_read_error")
        what, code = _FAILURE_MESSAGES[kind]
        return GatewayError(502, f"upstream {endpoint.host} {what}", code)

    async def iter_stream(self, ctx: RequestContext, upstream: UpstreamResponse) -> AsyncIterator[bytes]:
        """Yield SSE bytes as they arrive. An upstream failure mid-stream ends with an SSE error event."""
        raw = upstream.raw
        assert raw is not None and ctx.pool is not None and upstream.endpoint is not None
        pool, endpoint = ctx.pool, upstream.endpoint
        tally = ctx.streamed = StreamTally()
        failed = False
        prev = last = b""
        try:
            if upstream.head:
                tally.events += upstream.head.count(b"data:")
                last = upstream.head
                yield upstream.head
            async for chunk in raw.content.iter_any():
                # Counted as it passes, not at the end: a client that leaves ends this generator late.
                tally.events += chunk.count(b"data:")
                prev, last = last, chunk
                yield chunk
            tally.complete = b"[DONE]" in prev[-16:] + last
        except UPSTREAM_ERRORS as exc:
            failed = True
            pool.on_failure(endpoint)
            metrics.upstream_errors_total.labels(pool.name, "stream").inc()
            ctx.error = "upstream_stream_error"
            log.info("upstream %s died mid-stream: %s", endpoint.url, type(exc).__name__)
            yield sse_error("upstream connection lost mid-stream; the response is incomplete",
                            "upstream_stream_error")
        finally:
            raw.release() if not failed else raw.close()
            if upstream.release is not None:
                upstream.release()
            elapsed = time.perf_counter() - upstream.started
            metrics.upstream_seconds_by.get(pool.name).observe(elapsed)
            if not failed:
                pool.on_success(endpoint, elapsed)


def _prompt_key(ctx: RequestContext, pool: Pool) -> PromptKey | None:
    """What `balancer: inference` routes this request on (None: no JSON prompt, e.g. an embedding)."""
    body = ctx.body_json
    if body is None:
        return None
    assert pool.inference is not None
    header = pool.inference.config.session_header
    return prompt_key(ctx.model or "", body, ctx.headers.get(header) if header else None)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of an answer without a declared length within the limit, or raise `AnswerTooLarge`."""
    if resp.content_length is not None:
        raise AnswerTooLarge(f"answer of {resp.content_length} bytes declared, over {limit}")
    parts: list[bytes] = []
    size = 0
    async for part in resp.content.iter_chunked(65536):
        size += len(part)
        if size > limit:
            raise AnswerTooLarge(f"answer over {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def sse_error(message: str, code: str) -> bytes:
    """An SSE error event in OpenAI's in-stream error shape, then the terminator clients wait for."""
    payload = orjson.dumps(error_body(message, "server_error", code))
    return b"event: error\ndata: " + payload + b"\n\ndata: [DONE]\n\n"


def _upstream_message(payload: bytes, status: int) -> str:
    try:
        message = orjson.loads(payload)["error"]["message"]
        if isinstance(message, str):
            return f"upstream: {message}"[:500]
    except Exception:
        pass
    return f"upstream answered {status}"
