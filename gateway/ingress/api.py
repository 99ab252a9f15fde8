"""The OpenAI-compatible endpoints the gateway serves, and validation of their request bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError, bad_request


@dataclass(frozen=True)
class ApiSpec:
    path: str
    upstream_path: str
    required: tuple[tuple[str, tuple[type, ...]], ...]
    streams: bool = True


CHAT = ApiSpec("/v1/chat/completions", "/v1/chat/completions", (("model", (str,)), ("messages", (list,))))
COMPLETIONS = ApiSpec("/v1/completions", "/v1/completions", (("model", (str,)), ("prompt", (str, list))))
EMBEDDINGS = ApiSpec("/v1/embeddings", "/v1/embeddings", (("model", (str,)), ("input", (str, list))),
                     streams=False)
GENERATE = ApiSpec("/v1/generate", "/v1/completions", (("prompt", (str,)),), streams=False)
SPECS = {s.path: s for s in (CHAT, COMPLETIONS, EMBEDDINGS, GENERATE)}

_TYPE_NAMES = {str: "a string", list: "an array", dict: "an object", int: "an integer", float: "a number",
               bool: "a boolean"}
# Optional fields with a fixed type: checked here so the backend never sees nonsense.
_OPTIONAL: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "max_tokens": ((int,), 1, None),
    "max_completion_tokens": ((int,), 1, None),
    "n": ((int,), 1, 16),
    "temperature": ((int, float), 0, 2),
    "top_p": ((int, float), 0, 1),
    "seed": ((int,), None, None),
    "stream": ((bool,), None, None),
    "user": ((str,), None, None),
    "stop": ((str, list), None, None),
    "stream_options": ((dict,), None, None),
}


def validate(spec: ApiSpec, body: Any) -> dict[str, Any]:
    """Check a parsed request body; raise a 400 that names the offending field."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    for name, types in spec.required:
        value = body.get(name)
        if value is None:
            raise bad_request(f"missing required field '{name}'", param=name, code="missing_field")
        if not _is(value, types):
            raise bad_request(f"'{name}' must be {_TYPE_NAMES[types[0]]}", param=name, code="invalid_type")
        if isinstance(value, str | list) and len(value) == 0:
            raise bad_request(f"'{name}' must not be empty", param=name, code="invalid_value")
    for name, (types, lo, hi) in _OPTIONAL.items():
        value = body.get(name)
        if value is None:
            continue
        if not _is(value, types):
            raise bad_request(f"'{name}' must be {_TYPE_NAMES[types[0]]}", param=name, code="invalid_type")
        if lo is not None and value < lo:
            raise bad_request(f"'{name}' must be at least {lo}", param=name, code="invalid_value")
        if hi is not None and value > hi:
            raise bad_request(f"'{name}' must be at most {hi}", param=name, code="invalid_value")
    if "model" in body and not isinstance(body["model"], str):
        raise bad_request("'model' must be a string", param="model", code="invalid_type")
    if spec is CHAT:
        _validate_messages(body["messages"])
    if body.get("stream") and not spec.streams:
        raise bad_request(f"stream is not supported on {spec.path}", param="stream", code="invalid_value")
    return body


def check_output_cap(body: dict[str, Any], limit: int) -> None:
    """400 naming the field when the request asks for more output tokens than its route allows
    (a backend that trusted 2^64-1 could size its memory by it)."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and value > limit:
            raise bad_request(f"'{name}' must be at most {limit} on this route", param=name, code="invalid_value")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python; JSON true is not a number.
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _validate_messages(messages: list[Any]) -> None:
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"'{where}' must be an object", param=where, code="invalid_type")
        if not isinstance(msg.get("role"), str):
            raise bad_request(f"'{where}.role' must be a string", param=f"{where}.role", code="invalid_type")
        content = msg.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(f"'{where}.content' must be a string or an array", param=f"{where}.content",
                              code="invalid_type")


def generate_to_completions(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    """Map `/v1/generate` {prompt, max_tokens} onto the backend's completions API.

    `model` is the request's, else the route's default (`RouteTable.default_model`); None means the
    route reaches no generation model, so the client has to name one.
    """
    if model is None:
        raise bad_request("'model' is required on this route (it has no default generation model)",
                          param="model", code="missing_field")
    out = {k: v for k, v in body.items() if k in ("prompt", "max_tokens", "temperature", "top_p", "stop", "seed")}
    out["model"] = model
    out.setdefault("max_tokens", 64)
    return out


def parse_completion(body: bytes, content_type: str) -> Any:
    """The backend's successful completion for `/v1/generate`, parsed (`completions_to_generate` maps
    it). One that is not JSON is a 502: there is no text to return."""
    if not content_type.startswith("application/json"):
        raise GatewayError(502, "upstream answered with a non-JSON body", "upstream_bad_response")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError(502, "upstream answered with invalid JSON", "upstream_bad_response") from None
    return data


def completions_to_generate(data: Any) -> dict[str, Any]:
    """Map the backend's completion onto `/v1/generate`'s answer: `generated_text` is the completion alone."""
    try:
        choice = data["choices"][0]
        text = choice["text"]
    except (KeyError, IndexError, TypeError):
        raise GatewayError(502, "upstream completion has no text", "upstream_bad_response") from None
    if not isinstance(text, str):
        raise GatewayError(502, "upstream completion text is not a string", "upstream_bad_response")
    return {"generated_text": text, "model": data.get("model"), "finish_reason": choice.get("finish_reason"),
            "usage": data.get("usage")}
