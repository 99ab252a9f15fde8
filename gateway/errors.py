"""OpenAI-style errors: every failure a client sees is a `GatewayError` rendered as JSON."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """A failure with an HTTP status, a machine-readable code and a message safe to show the client."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _TYPES.get(status, "error")
        self.param = param
        self.headers = dict(headers or {})
        self.type = type or _TYPES.get(status, "api_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        headers = {**self.headers, **(extra_headers or {})}
        return Response(orjson.dumps(self.body()), status_code=self.status, headers=headers,
                        media_type="application/json")


def error_code(exc: BaseException) -> str:
    """What failed, in a word (a span's `error.type`): a GatewayError's code, else the exception's class."""
    return exc.code if isinstance(exc, GatewayError) else type(exc).__name__


def error_body(message: str, type: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-style error object every client-facing failure is rendered as (also inside SSE)."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def internal_error_body() -> dict[str, Any]:
    """What a client sees for a failure the gateway did not expect: nothing about its cause."""
    return error_body("internal gateway error", "server_error", "internal_error")


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code, param=param)


def unavailable(message: str, retry_after_s: int = 1, code: str = "upstream_unavailable") -> GatewayError:
    return GatewayError(503, message, code, headers={"retry-after": str(retry_after_s)})
