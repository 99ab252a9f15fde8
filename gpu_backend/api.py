"""The backend's HTTP surface (Starlette): OpenAI endpoints, /healthz, /metrics. Errors are OpenAI JSON."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_backend.errors import APIError, bad_request, error_response
from gpu_backend.generation import generate
from gpu_backend.state import BackendState
from gpu_backend.validation import (
    CAPABILITIES,
    VISION_CAPABILITIES,
    check_model,
    embedding_inputs,
    refuse_media,
    require_object,
)

log = logging.getLogger("edgegw.backend.api")
MAX_EMBEDDING_INPUTS = 2048

Handler = Callable[[Request, dict[str, Any], BackendState, Callable[[], None]], Awaitable[Response]]


def create_app(state: BackendState) -> Starlette:
    """The ASGI app for one backend process; model loading starts with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.create_task(state.load())
        yield
        task.cancel()
        state.stop()

    def post(path: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _guarded(request, path, state, handler)
        return Route(path, endpoint, methods=["POST"])

    routes = [
        post("/v1/completions", lambda r, b, s, rel: generate(r, b, s, False, rel)),
        post("/v1/chat/completions", _chat),
        post("/v1/embeddings", _embeddings),
        Route("/v1/models", lambda r: _models(state), methods=["GET"]),
        Route("/healthz", lambda r: _health(state), methods=["GET"]),
        Route("/metrics", lambda r: Response(state.metrics.render(), media_type="text/plain; version=0.0.4"),
              methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(APIError(exc.status_code, exc.detail or "error", code="http_error"))

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


async def _guarded(request: Request, path: str, state: BackendState, handler: Handler) -> Response:
    """Readiness, JSON parsing, in-flight accounting and error rendering shared by the POST endpoints."""
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.inflight -= 1

    state.inflight += 1
    response: Response | None = None
    try:
        if state.status != "ready":
            raise APIError(503, f"the backend is not serving ({state.status})", code=f"backend_{state.status}",
                           headers={"Retry-After": "1"})
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("request body is not valid JSON", code="invalid_json") from None
        response = await handler(request, require_object(body), state, release)
    except APIError as err:
        response = error_response(err)
    except Exception:
        log.exception("unhandled error on %s", path)
        response = error_response(APIError(500, "internal error; see the backend log", code="internal_error"))
    finally:
        if response is None or not hasattr(response, "body_iterator"):
            release()  # streaming responses release when the stream ends
    state.metrics.http(path, response.status_code)
    return response


async def _chat(request: Request, body: dict[str, Any], state: BackendState, release: Any) -> Response:
    if body.get("model") in (None, state.model_name) and state.processor is None:  # another name: 404 later
        refuse_media(body, state.model_name)
    return await generate(request, body, state, True, release)


async def _embeddings(request: Request, body: dict[str, Any], state: BackendState, release: Any) -> Response:
    if state.embedder is None:
        raise APIError(404, "this backend serves no embedding model (start it with --embedding-model)",
                       param="model", code="model_not_found")
    model = check_model(body, [state.embedding_name])
    inputs = embedding_inputs(body)
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise bad_request(f"'input' may hold at most {MAX_EMBEDDING_INPUTS} strings", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and dims != state.embedder.dimensions:
        raise bad_request(f"'dimensions' must be {state.embedder.dimensions} for {model}", "dimensions")
    vectors, tokens = await asyncio.to_thread(state.embedder.embed, inputs)
    state.metrics.embedding_inputs.inc(len(inputs))
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _models(state: BackendState) -> Response:
    if state.status not in ("ready", "draining"):
        return error_response(APIError(503, f"the backend is not serving ({state.status})",
                                       code=f"backend_{state.status}", headers={"Retry-After": "1"}))
    data = [{"id": name, "object": "model", "created": int(state.started), "owned_by": "edgegw",
             "max_model_len": state.context_len if name == state.model_name else None,
             "capabilities": VISION_CAPABILITIES if name == state.model_name and state.processor else CAPABILITIES}
            for name in state.served]
    return JSONResponse({"object": "list", "data": data})


def _health(state: BackendState) -> Response:
    body = {"status": state.status, "model": state.model_name or None, "device": state.device or None}
    if state.error:
        body["error"] = state.error
    if state.status == "ready":
        body.update(running=state.engine.outstanding, max_batch_size=state.options.max_batch_size)
        return JSONResponse(body)
    return JSONResponse(body, status_code=503)
