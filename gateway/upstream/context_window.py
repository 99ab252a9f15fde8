"""Whether a request surely does not fit a model's context window, decided without a tokenizer.

A token is never longer than the longest entry of the model's vocabulary, so a prompt of B bytes is
at least ceil(B / max_token_bytes) tokens: a lower bound that holds for any text, including text built
from the longest tokens on purpose. The chat template only adds tokens, and media parts are left out,
so the bound stays a lower bound. A request is refused only when even that bound does not fit, as the
backend checks it: the prompt must leave room for one token, and prompt + `max_tokens` (when given)
must fit. So the gateway never refuses what the backend would accept; what it lets through and the
backend refuses gets the backend's own 400.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError


def prompt_tokens_at_least(body: dict[str, Any], max_token_bytes: int) -> int:
    """A lower bound of the longest prompt's tokens (a batch of prompts is checked prompt by prompt)."""
    if "messages" in body:
        return _at_least(_text_bytes(body.get("messages")), max_token_bytes)
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return len(prompt)  # token ids: exact
    if isinstance(prompt, list):
        return max((prompt_tokens_at_least({"prompt": p}, max_token_bytes) for p in prompt), default=0)
    return _at_least(_text_bytes(prompt), max_token_bytes)


def _at_least(size: int, max_token_bytes: int) -> int:
    return -(-size // max_token_bytes)


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    if isinstance(value, dict):
        return _text_bytes(value.get("content")) + _text_bytes(value.get("text"))
    return 0


def requested_output(body: dict[str, Any]) -> int:
    """The output the request asks room for: `max_tokens` (or `max_completion_tokens`), 0 when unset
    (the backend then caps generation to what is left of the window)."""
    out = body.get("max_completion_tokens") or body.get("max_tokens")
    return out if type(out) is int and out > 0 else 0


def surely_too_long(body: dict[str, Any], context_length: int, max_token_bytes: int) -> GatewayError | None:
    """The 400 `context_length_exceeded` when the request cannot fit the window; None when it may."""
    prompt = prompt_tokens_at_least(body, max_token_bytes)
    output = requested_output(body)
    if prompt < context_length and prompt + output <= context_length:
        return None
    what = f"at least {prompt} prompt tokens" + (f" plus max_tokens {output}" if output else "")
    param = "max_tokens" if output and prompt < context_length else ("messages" if "messages" in body else "prompt")
    return GatewayError(400, f"This model's maximum context length is {context_length} tokens; the request "
                             f"needs {what}. Shorten the prompt or reduce max_tokens.",
                        "context_length_exceeded", param=param)
