"""`/admin/policy`: read the active policy, replace it (YAML body) and roll back. Admin scope required."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.config.reader import ConfigError
from gateway.errors import GatewayError
from gateway.policy.canary import CanarySettings
from gateway.policy.canary_control import CanaryControl, CanaryNotShared
from gateway.policy.restart import report
from gateway.policy.runtime import PolicyRefused, PolicyRuntime
from gateway.policy.version import policy_hash, refusal_text, validate_policy

MAX_POLICY_BYTES = 4 << 20


def policy_routes(runtime: PolicyRuntime, canary: CanaryControl,
                  require_admin: Callable[[Request], Awaitable[Any]]) -> list[Route]:
    """GET/PUT /admin/policy, GET /admin/policy/version, POST /admin/policy/rollback, and the canary:
    POST /admin/policy/canary (JSON: `policy` text and settings), GET it, POST .../promote and .../abort."""

    def headers() -> dict[str, str]:
        return {"x-edgegw-policy-version": runtime.current.version, "cache-control": "no-store"}

    async def get_policy(request: Request) -> Response:
        await require_admin(request)
        return Response(runtime.current.text, media_type="application/yaml", headers=headers())

    async def get_version(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse(runtime.describe(), headers=headers())

    async def put_policy(request: Request) -> Response:
        await require_admin(request)
        body = await _read_body(request)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise GatewayError(400, "the policy must be UTF-8 YAML text", "policy_invalid") from None
        try:
            version = await runtime.publish(text, "admin")
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse({"applied": version.describe()}, headers=headers())

    async def check(request: Request) -> Response:
        """What `check-config --against` asks: is this text valid here, and what would a reload apply when."""
        await require_admin(request)
        try:
            text = (await _read_body(request)).decode()
        except UnicodeDecodeError:
            raise GatewayError(400, "the policy must be UTF-8 YAML text", "policy_invalid") from None
        try:
            config = validate_policy(text, runtime.path)
        except ConfigError as exc:
            raise GatewayError(400, f"policy refused: {refusal_text(exc)}", "policy_refused") from None
        return JSONResponse({"version": policy_hash(text), "running": runtime.current.version,
                             "changes": report(runtime.current.config, config)}, headers=headers())

    async def rollback(request: Request) -> Response:
        await require_admin(request)
        try:
            version = await runtime.rollback()
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse({"applied": version.describe()}, headers=headers())

    async def canary_start(request: Request) -> Response:
        await require_admin(request)
        try:
            data = orjson.loads(await _read_body(request))
        except orjson.JSONDecodeError:
            raise GatewayError(400, "expected a JSON object: {\"policy\": YAML text, settings...}",
                               "invalid_json") from None
        if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
            raise GatewayError(400, "`policy` (the YAML text) is required", "invalid_request", param="policy")
        text = data.pop("policy")
        try:
            settings = CanarySettings.parse(data)
        except ValueError as exc:
            raise GatewayError(400, str(exc), "invalid_request") from None
        try:
            started = await canary.begin(text, settings)
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse(started.describe(), headers=headers())

    async def canary_status(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse(canary.describe(), headers=headers())

    def canary_decision(state: str, verb: str) -> Any:
        async def decide(request: Request) -> Response:
            claims = await require_admin(request)
            try:
                decided = await canary.decide(state, f"{verb} by {claims.get('sub', 'an operator')}")
            except PolicyRefused as exc:
                raise GatewayError(409, exc.message, "no_canary") from None
            except CanaryNotShared as exc:  # applied here only: say so (logged where it failed)
                raise GatewayError(500, str(exc), "canary_not_shared") from None
            return JSONResponse(decided.describe(), headers=headers())

        return decide

    return [Route("/admin/policy", get_policy, methods=["GET"]),
            Route("/admin/policy/canary", canary_start, methods=["POST"]),
            Route("/admin/policy/canary", canary_status, methods=["GET"]),
            Route("/admin/policy/canary/promote", canary_decision("promoted", "promoted"), methods=["POST"]),
            Route("/admin/policy/canary/abort", canary_decision("aborted", "aborted"), methods=["POST"]),
            Route("/admin/policy", put_policy, methods=["PUT"]),
            Route("/admin/policy/version", get_version, methods=["GET"]),
            Route("/admin/policy/check", check, methods=["POST"]),
            Route("/admin/policy/rollback", rollback, methods=["POST"])]


def _refused(exc: PolicyRefused) -> GatewayError:
    return GatewayError(400 if exc.message.startswith("invalid configuration") else 409,
                        f"policy refused: {exc.message}", "policy_refused")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_POLICY_BYTES:
        raise GatewayError(413, f"a policy is at most {MAX_POLICY_BYTES} bytes", "body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_POLICY_BYTES:
            raise GatewayError(413, f"a policy is at most {MAX_POLICY_BYTES} bytes", "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
