"""Send a request to its model, then to that model's fallbacks in order while a trigger says so.

Each (route, model, pool) gets a plan once: the hops in depth-first order, each with the backend's
name for the model, its context window and the triggers that lead to it. Requests whose model has no
settings and no fallbacks have no plan and never come here (`ModelPlans.plan` is None).

A fallback hop is a new request for another model as far as policy goes: the caller's token must
allow the model, the route's limits are asked again (`Readmit`), the hop's pool must have retry
budget left, and it gets what is left of the first pool's total deadline. Streams fall back only
before their first byte reaches the client: the first chunk is read before the answer is committed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson
from prometheus_client import Counter

from gateway.config.models import MAX_CHAIN, TRIGGERS, FallbackGraph, Node
from gateway.config.schema import DEFAULT_MAX_TOKEN_BYTES, Fallback, GatewayConfig, RouteConfig
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.metrics import registry
from gateway.upstream.context_window import surely_too_long
from gateway.upstream.failures import UPSTREAM_ERRORS
from gateway.upstream.forward import UpstreamResponse, Upstreams

fallbacks_total = Counter("edgegw_model_fallbacks_total", "Requests sent on to a fallback model",
                          ["from_model", "to_model", "reason"], registry=registry)

SERVED_HEADER = "x-edgegw-served-model"
Readmit = Callable[[RequestContext], Awaitable[None]]  # the stages' `on_model_change`: raises to refuse
_ALL = frozenset(TRIGGERS)
# Upstream failures (GatewayError codes) by the trigger they are.
_CODES = {"no_healthy_upstream": "no_healthy_endpoint", "pool_saturated": "overloaded",
          "upstream_503": "overloaded", "upstream_timeout": "first_byte_timeout"}


@dataclass(frozen=True, slots=True)
class Hop:
    model: str  # public name
    pool: str
    backend_name: str
    rename: bool  # answers are rewritten to `model` (the entry has settings: the backend's name never shows)
    context_length: int | None
    max_token_bytes: int
    on: frozenset[str]  # the triggers that lead here
    skip_to: int  # the index after this hop's own fallbacks


class ModelPlans:
    """Plans for the models of one policy version."""

    def __init__(self, config: GatewayConfig) -> None:
        self.graph = FallbackGraph([(p.name, p.models, p.model_specs) for p in config.pools])
        self._plans: dict[tuple[str, str, str], tuple[Hop, ...] | None] = {}

    @staticmethod
    def needed(config: GatewayConfig) -> bool:
        """Whether any model has settings or any route fallbacks (else requests skip all of this)."""
        return any(p.model_specs for p in config.pools) or any(r.fallbacks for r in config.routes)

    def plan(self, route: RouteConfig, model: str | None, pool: str) -> tuple[Hop, ...] | None:
        if model is None:
            return None
        key = (route.name, model, pool)
        try:
            return self._plans[key]
        except KeyError:
            pass
        found = self._build(route, (model, pool))
        if len(self._plans) < 4096:  # model names come from clients: bound the memo
            self._plans[key] = found
        return found

    def _build(self, route: RouteConfig, first: Node) -> tuple[Hop, ...] | None:
        graph = self.graph
        alternatives = graph.targets(route.fallbacks) if route.fallbacks else graph.edges(first)
        if graph.spec(first) is None and not alternatives:
            return None
        hops: list[Hop] = []
        seen: set[Node] = set()

        def add(node: Node, on: frozenset[str], nxt: list[tuple[Fallback, Node]]) -> None:
            if node in seen or len(hops) >= MAX_CHAIN:
                return
            seen.add(node)
            at = len(hops)
            hops.append(self._hop(node, on, 0))
            for fb, child in nxt:
                add(child, fb.on, graph.edges(child))
            hops[at] = self._hop(node, on, len(hops))

        add(first, _ALL, alternatives)
        return tuple(hops)

    def _hop(self, node: Node, on: frozenset[str], skip_to: int) -> Hop:
        spec = self.graph.spec(node)
        model, pool = node
        if spec is None:
            return Hop(model, pool, model, False, None, DEFAULT_MAX_TOKEN_BYTES, on, skip_to)
        return Hop(model, pool, spec.backend_name, True, spec.context_length, spec.max_token_bytes, on, skip_to)


class FallbackSender:
    """Walks a plan: the first hop that answers is the answer; when every hop fails, the last failure,
    labelled with the models tried."""

    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    async def send(self, ctx: RequestContext, path: str, hops: tuple[Hop, ...], readmit: Readmit) -> UpstreamResponse:
        assert ctx.pool is not None and ctx.body_json is not None
        deadline = time.monotonic() + ctx.pool.config.timeouts.total_s
        requested = ctx.model
        tried: list[str] = []
        reason = ""  # the last trigger: a hop that cannot be used is passed over as if it failed alike
        i = 0
        while True:
            hop = hops[i]
            outcome = await self._try(ctx, path, hop, i, deadline, readmit, more=i + 1 < len(hops))
            if isinstance(outcome, UpstreamResponse):
                ctx.response_headers[SERVED_HEADER] = hop.model
                if hop.rename or i:
                    ctx.served_model = hop.model
                if i:
                    ctx.fallback_from = requested
                return outcome
            kind, failure = outcome
            tried.append(hop.model)
            reason = reason if kind == "refused" else kind
            j = _next(hops, i, reason)
            if j is None or time.monotonic() >= deadline:
                if len(tried) == 1:  # no fallback was taken: the answer is what it is without one
                    if isinstance(failure, UpstreamResponse):
                        return failure
                    raise failure
                raise _exhausted(failure if isinstance(failure, GatewayError) else _as_error(failure), tried)
            fallbacks_total.labels(hop.model, hops[j].model, reason).inc()
            i = j

    async def _try(self, ctx: RequestContext, path: str, hop: Hop, i: int, deadline: float, readmit: Readmit,
                   more: bool) -> UpstreamResponse | tuple[str, GatewayError | UpstreamResponse]:
        """One hop: its answer, or (the trigger it failed with, its error or the backend's answer)."""
        body = ctx.body_json
        assert body is not None
        if i:
            refused = await self._enter(ctx, hop, readmit)
            if refused is not None:
                return "refused", refused
        window = hop.context_length or self.upstreams.pools[hop.pool].context_lengths.get(hop.backend_name)
        if window is not None:
            too_long = surely_too_long(body, window, hop.max_token_bytes)
            if too_long is not None:
                return "context_length", too_long
        data = ctx.body if hop.backend_name == body.get("model") else orjson.dumps({**body, "model": hop.backend_name})
        try:
            resp = await self.upstreams.send(ctx, path, data, deadline=deadline, fallback=bool(i))
        except GatewayError as exc:
            return _CODES.get(exc.code, "upstream_error" if exc.status >= 500 else "none"), exc
        if resp.status == 400 and b"context_length_exceeded" in (resp.body or b""):
            return "context_length", resp  # the backend counted: it knows better than our bound
        if resp.status == 429 or resp.status >= 500:
            return ("overloaded" if resp.status in (429, 503) else "upstream_error"), resp
        if resp.body is None and more:
            failed = await _first_chunk(ctx, resp)
            if failed is not None:
                return failed
        return resp

    async def _enter(self, ctx: RequestContext, hop: Hop, readmit: Readmit) -> GatewayError | None:
        """Everything a request for `hop.model` must pass, as if it had asked for it."""
        allowed = ctx.models_allowed
        if allowed is not None and hop.model not in allowed and "*" not in allowed:
            return GatewayError(403, f"token does not grant access to model {hop.model!r}", "model_forbidden",
                                param="model")
        pool = self.upstreams.pools[hop.pool]
        if not pool.retry_budget.try_acquire():
            return GatewayError(503, f"pool {hop.pool!r} has no retry budget left for a fallback",
                                "fallback_budget_exhausted", headers={"retry-after": "1"})
        changed = hop.model != ctx.model  # (the same model in another pool was admitted already)
        ctx.model, ctx.pool = hop.model, pool
        if changed:
            try:
                await readmit(ctx)
            except GatewayError as exc:
                return exc
        return None


def _next(hops: tuple[Hop, ...], i: int, trigger: str) -> int | None:
    """The next hop in depth-first order that `trigger` leads to (a hop it does not lead to is skipped
    with its own fallbacks); None when there is none."""
    j = i + 1
    while j < len(hops):
        if trigger in hops[j].on:
            return j
        j = hops[j].skip_to
    return None


async def _first_chunk(ctx: RequestContext, resp: UpstreamResponse) -> tuple[str, GatewayError] | None:
    """Read a stream's first chunk before anything is sent to the client, so a stream that fails
    before its first byte can still fall back. None when it came (kept in `resp.head`)."""
    raw = resp.raw
    assert raw is not None and ctx.pool is not None and resp.endpoint is not None
    try:
        head = await raw.content.readany()
    except UPSTREAM_ERRORS as exc:
        head, failure = b"", exc
    else:
        if head:
            resp.head = head
            return None
        failure = aiohttp.ServerDisconnectedError()
    raw.close()
    if resp.release is not None:
        resp.release()
    ctx.pool.on_failure(resp.endpoint)
    if isinstance(failure, TimeoutError):
        return "first_byte_timeout", GatewayError(504, "upstream did not answer in time", "upstream_timeout")
    return "upstream_error", GatewayError(502, "upstream closed the stream before its first byte",
                                          "upstream_read_error")


def _as_error(resp: UpstreamResponse) -> GatewayError:
    """A backend's 429, 5xx (or context-window 400) answer as the error a client gets when no fallback is left. A backend's
    500 is the gateway's 502 (bad gateway): the gateway itself never answers 500 for a chain."""
    message, code, param = f"upstream answered {resp.status}", f"upstream_{resp.status}", None
    try:
        found = orjson.loads(resp.body or b"")["error"]
    except Exception:
        found = None
    if isinstance(found, dict):
        if isinstance(found.get("message"), str):
            message = f"upstream: {found['message']}"[:500]
        if resp.status == 400 and isinstance(found.get("code"), str):
            code, param = found["code"], found.get("param") if isinstance(found.get("param"), str) else None
    status = resp.status if resp.status in (400, 429, 503, 504) else 502
    headers = {"retry-after": resp.headers["retry-after"]} if "retry-after" in resp.headers else None
    return GatewayError(status, message, code, param=param, headers=headers)


def _exhausted(error: GatewayError, tried: list[str]) -> GatewayError:
    """The last hop's error, labelled: every model tried, in order."""
    status = 502 if error.status == 500 else error.status
    out = GatewayError(status, f"every model tried failed ({', '.join(tried)}); the last, {tried[-1]!r}: "
                               f"{error.message}", error.code, param=error.param, headers=error.headers)
    out.headers["x-edgegw-tried-models"] = ",".join(tried)
    return out
