"""Drive one plugin through one request phase: a stream context from create to delete.

Request phases (auth, routing, preprocess): on_request_headers, on_request_body, then on_done,
on_log, on_delete. The response phase: on_request_headers (so the plugin sees the request), then
on_response_headers and on_response_body. A PAUSE from the last callback of a direction holds the
stream until the plugin resumes it (`settle`), delivering its http calls' answers meanwhile."""

from __future__ import annotations

import asyncio

import orjson

from wasm_plugins import abi
from wasm_plugins.embedder import Embedder, RequestView
from wasm_plugins.instance import PluginInstance
from wasm_plugins.pseudo import apply_pseudo_headers, check_unchanged, request_target
from wasm_plugins.raw import WasmCallError
from wasm_plugins.state import StreamState


def request_headers(ctx: RequestView) -> list[tuple[str, str]]:
    return [(":method", ctx.method), (":path", request_target(ctx)), (":authority", ctx.headers.get("host", "")),
            (":scheme", "http"), *ctx.headers.items()]


def request_body(ctx: RequestView) -> bytes:
    if ctx.body_dirty and ctx.body_json is not None:
        # an earlier stage rewrote the JSON: serialise once so this plugin sees the current body
        ctx.body = orjson.dumps(ctx.body_json)
        ctx.body_dirty = False
    return ctx.body


async def settle(inst: PluginInstance, st: StreamState) -> None:
    """After a callback returned PAUSE: hold the stream until the plugin resumes it (continues, answers
    locally or resets). Meanwhile its http calls' answers are delivered to on_http_call_response, and
    any other context may resume it (a tick, a queue, another request: `proxy_set_effective_context`
    then `proxy_continue_stream`), as in Envoy. Held at most `limits.http_call_timeout_ms` without an
    answer coming, then the plugin fails (`pause_timeout`: its failure policy decides, fail_closed a
    500), so a forgotten resume never holds a request, or its rate-limit slot, for ever.
    Callers await it only on PAUSE, so the common path creates no coroutine and never yields."""
    hold_s = inst.limits.http_call_timeout_ms / 1000
    st.wakeup = wakeup = asyncio.Event()
    try:
        while not st.ended and not st.continued:
            waiter = asyncio.ensure_future(wakeup.wait())
            try:
                done, _ = await asyncio.wait([*st.pending.values(), waiter], timeout=hold_s,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not done:
                raise WasmCallError("pause_timeout", f"paused the request and did not resume it within "
                                    f"{hold_s * 1000:.0f} ms (limits.http_call_timeout_ms)")
            wakeup.clear()
            for token, task in list(st.pending.items()):
                if task not in done:
                    continue
                del st.pending[token]
                answer = inst.delivering = task.result()
                try:
                    # As in Envoy (the call is made on the root context), the answer goes to the root
                    # context's id: the Go and C++ SDKs look the call up there and fail on any other
                    # id. The stream stays current for hosts' sake; SDKs switch to it with
                    # proxy_set_effective_context, remembered per call by their token.
                    inst.callback(st, "proxy_on_http_call_response", st.root_id, token, len(answer.headers),
                                  len(answer.body), 0)
                finally:
                    inst.delivering = None
                # Reachable: the callback can end or continue the stream (proxy_send_local_response,
                # proxy_continue_stream), but mypy keeps the `while` condition's narrowing across it.
                if st.ended or st.continued:
                    break  # type: ignore[unreachable]
    finally:
        st.wakeup = None
    st.continued = False


def _paused(inst: PluginInstance, st: StreamState, name: str, size: int, end_of_stream: int) -> bool:
    """Run one stream callback; True when the plugin paused (the caller then awaits `settle`).
    Synchronous on purpose: the common path must not create a coroutine per callback."""
    return inst.callback(st, name, st.id, size, end_of_stream) == abi.PAUSE


async def run_request(inst: PluginInstance, root_id: int, ctx: RequestView, embedder: Embedder) -> StreamState:
    st = inst.open_stream(root_id, ctx)
    error: WasmCallError | None = None
    try:
        headers = st.request_headers = request_headers(ctx)
        body = request_body(ctx) if "proxy_on_request_body" in inst.fn else b""
        # inst.callback inlined (current context, then call): this is the per-request hot path
        inst.current = st
        # A Pause from the headers with the body still to come holds only the headers, as in Envoy
        # (StopIteration): the body callback comes next and its answer decides.
        if inst.call("proxy_on_request_headers", st.id, len(headers), 0 if body else 1) == abi.PAUSE and \
                (st.pending or not body):
            await settle(inst, st)
        if body and not st.ended:
            st.request_body = body
            inst.current = st
            if inst.call("proxy_on_request_body", st.id, len(body), 1) == abi.PAUSE:
                await settle(inst, st)
    finally:
        error = inst.close_stream(st)
    if error is not None:
        raise error
    if not st.ended:
        apply_request(st, ctx, embedder)
    return st


async def run_response(inst: PluginInstance, root_id: int, ctx: RequestView) -> StreamState:
    st = inst.open_stream(root_id, ctx)
    try:
        st.request_headers = request_headers(ctx)
        st.request_body = ctx.body
        # The response's callbacks follow: a Pause here holds only while an http call is pending.
        if _paused(inst, st, "proxy_on_request_headers", len(st.request_headers), 1) and st.pending:
            await settle(inst, st)
        body = ctx.response_body
        st.response_headers = [(":status", str(ctx.status)), *ctx.response_headers.items()]
        more = bool(body) and "proxy_on_response_body" in inst.fn
        if not st.ended and _paused(inst, st, "proxy_on_response_headers", len(st.response_headers),
                                    0 if body else 1) and (st.pending or not more):
            await settle(inst, st)
        if not st.ended and body and "proxy_on_response_body" in inst.fn:
            st.response_body = body
            if _paused(inst, st, "proxy_on_response_body", len(body), 1):
                await settle(inst, st)
    finally:
        error = inst.close_stream(st)
    if error is not None:
        raise error
    if not st.ended:
        if st.pseudo_changed:
            # the request went upstream already: its headers are a read-only view here
            check_unchanged(st.request_headers, request_headers(ctx), "the request was already forwarded")
            check_unchanged(st.response_headers, [(":status", str(ctx.status))],
                            "a response plugin cannot change the status (answer with a local response)")
        if st.response_headers_changed:
            ctx.response_headers = {k: v for k, v in st.response_headers or () if not k.startswith(":")}
    return st


def apply_request(st: StreamState, ctx: RequestView, embedder: Embedder) -> None:
    """Carry the plugin's header and body changes into the request the gateway forwards."""
    if st.request_headers_changed and st.request_headers is not None:
        if st.pseudo_changed:
            headers: dict[str, str] = {}
            pseudo: dict[str, str] = {}
            for k, v in st.request_headers:
                if k[:1] == ":":
                    pseudo.setdefault(k, v)
                else:
                    headers[k] = v
            apply_pseudo_headers(pseudo, ctx, headers, embedder.upstream_path)
            ctx.headers = headers
        else:
            ctx.headers = {k: v for k, v in st.request_headers if not k.startswith(":")}
    if st.request_body_changed and st.request_body is not None:
        try:
            data = orjson.loads(st.request_body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise WasmCallError("bad_body", "the plugin replaced the request body with something that is "
                                            "not a JSON object")
        ctx.set_body_json(data)
        ctx.body = st.request_body
        ctx.model = data.get("model", ctx.model)
        ctx.stream = bool(data.get("stream"))
