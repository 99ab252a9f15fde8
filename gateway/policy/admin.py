"""`/admin/policy`: read the active policy, replace it (YAML body), roll back, and run a canary.
Behind the admin guard (`gateway.auth.admin.AdminGuard`)."""

from __future__ import annotations

import asyncio
from typing import Protocol

import orjson
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.config.reader import ConfigError
from gateway.errors import GatewayError
from gateway.policy.canary import CanarySettings
from gateway.policy.canary_control import CanaryControl, CanaryNotShared
from gateway.policy.restart import report
from gateway.policy.runtime import PolicyRefused, PolicyRuntime
from gateway.policy.version import policy_hash, refusal_text, validate_policy

MAX_POLICY_BYTES = 4 << 20


class _PolicyHost(Protocol):
    """What these endpoints use of the gateway serving them (`app.state.gateway`)."""

    policy: PolicyRuntime
    canary: CanaryControl


class _PolicyResource(HTTPEndpoint):
    """A policy resource, behind the admin guard (the operator's claims: `request.state.admin`)."""

    @property
    def runtime(self) -> PolicyRuntime:
        host: _PolicyHost = self.scope["app"].state.gateway
        return host.policy

    @property
    def canary(self) -> CanaryControl:
        host: _PolicyHost = self.scope["app"].state.gateway
        return host.canary

    def headers(self) -> dict[str, str]:
        return {"x-edgegw-policy-version": self.runtime.current.version, "cache-control": "no-store"}


class Policy(_PolicyResource):
    """`/admin/policy`: GET the active policy's text, PUT a new one (YAML body)."""

    async def get(self, request: Request) -> Response:
        return Response(self.runtime.current.text, media_type="application/yaml", headers=self.headers())

    async def put(self, request: Request) -> Response:
        text = await _read_text(request)
        try:
            version = await self.runtime.publish(text, "admin")
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse({"applied": version.describe()}, headers=self.headers())


class PolicyVersion(_PolicyResource):
    """`GET /admin/policy/version`: the runtime's state."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.runtime.describe(), headers=self.headers())


class PolicyCheck(_PolicyResource):
    """`POST /admin/policy/check` (what `check-config --against` asks): is this text valid here, and
    what would a reload apply when."""

    async def post(self, request: Request) -> Response:
        text = await _read_text(request)
        runtime = self.runtime
        try:
            config = await asyncio.to_thread(validate_policy, text, runtime.path)  # off the loop: it may be large
        except ConfigError as exc:
            raise GatewayError(400, f"policy refused: {refusal_text(exc)}", "policy_refused") from None
        return JSONResponse({"version": policy_hash(text), "running": runtime.current.version,
                             "changes": report(runtime.current.config, config)}, headers=self.headers())


class PolicyRollback(_PolicyResource):
    """`POST /admin/policy/rollback`: back to the previous good version."""

    async def post(self, request: Request) -> Response:
        try:
            version = await self.runtime.rollback()
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse({"applied": version.describe()}, headers=self.headers())


class Canary(_PolicyResource):
    """`/admin/policy/canary`: POST starts one (JSON: `policy` text and settings), GET describes it."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.canary.describe(), headers=self.headers())

    async def post(self, request: Request) -> Response:
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
            started = await self.canary.begin(text, settings)
        except PolicyRefused as exc:
            raise _refused(exc) from None
        return JSONResponse(started.describe(), headers=self.headers())


class _CanaryDecision(_PolicyResource):
    state = ""  # promoted | aborted

    async def post(self, request: Request) -> Response:
        who = request.state.admin.get("sub", "an operator")
        try:
            decided = await self.canary.decide(self.state, f"{self.state} by {who}")
        except PolicyRefused as exc:
            raise GatewayError(409, exc.message, "no_canary") from None
        except CanaryNotShared as exc:  # applied here only: say so (logged where it failed)
            raise GatewayError(500, str(exc), "canary_not_shared") from None
        return JSONResponse(decided.describe(), headers=self.headers())


class CanaryPromote(_CanaryDecision):
    """`POST /admin/policy/canary/promote`."""

    state = "promoted"


class CanaryAbort(_CanaryDecision):
    """`POST /admin/policy/canary/abort`."""

    state = "aborted"


def policy_routes() -> list[BaseRoute]:
    """The policy endpoints, under `/admin` behind the admin guard."""
    return [Route("/policy", Policy, methods=["GET", "PUT"]),
            Route("/policy/version", PolicyVersion, methods=["GET"]),
            Route("/policy/check", PolicyCheck, methods=["POST"]),
            Route("/policy/rollback", PolicyRollback, methods=["POST"]),
            Route("/policy/canary", Canary, methods=["GET", "POST"]),
            Route("/policy/canary/promote", CanaryPromote, methods=["POST"]),
            Route("/policy/canary/abort", CanaryAbort, methods=["POST"])]


async def _read_text(request: Request) -> str:
    try:
        return (await _read_body(request)).decode()
    except UnicodeDecodeError:
        raise GatewayError(400, "the policy must be UTF-8 YAML text", "policy_invalid") from None


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
