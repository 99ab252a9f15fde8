"""Request-body validation for the OpenAI endpoints: every rejection is a 400 naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_backend.errors import APIError, bad_request
from gpu_backend.sequence import SamplingParams

MAX_STOP = 16
MAX_N = 16


@dataclass(frozen=True)
class GenerationRequest:
    """What the completion endpoints need after validation (prompts are tokenized later)."""

    params: SamplingParams
    max_tokens_given: bool
    n: int
    stream: bool
    include_usage: bool


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    return body


def check_model(body: dict[str, Any], served: list[str]) -> str:
    """The requested model (optional, defaults to the first served) must be one this process serves."""
    model = body.get("model")
    if model is None:
        return served[0]
    if not isinstance(model, str):
        raise bad_request("'model' must be a string", "model", "invalid_type")
    if model not in served:
        raise APIError(404, f"The model '{model}' does not exist; this backend serves {', '.join(served)}.",
                       param="model", code="model_not_found")
    return model


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"'{name}' must be a number", name, "invalid_type")
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be between {lo:g} and {hi:g}, got {value}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer", name, "invalid_type")
    return value


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean", name, "invalid_type")
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if len(stop) > MAX_STOP:
            raise bad_request(f"'stop' may hold at most {MAX_STOP} strings", "stop")
        return tuple(stop)
    raise bad_request("'stop' must be a string or an array of strings", "stop", "invalid_type")


def generation_request(body: dict[str, Any], context_len: int, default_max_tokens: int | None) -> GenerationRequest:
    """Validate sampling and streaming fields. `default_max_tokens` None means "up to the context"."""
    max_tokens = _integer(body, "max_completion_tokens")
    field = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, field = _integer(body, "max_tokens"), "max_tokens"
    given = max_tokens is not None
    if given and not 1 <= max_tokens <= context_len:
        raise bad_request(f"'{field}' must be between 1 and the model's context length ({context_len}), "
                          f"got {max_tokens}", field)
    if not given:
        max_tokens = default_max_tokens or context_len
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise bad_request("'top_p' must be greater than 0", "top_p")
    presence = _number(body, "presence_penalty", 0.0, -2.0, 2.0)
    frequency = _number(body, "frequency_penalty", 0.0, -2.0, 2.0)
    top_k = _integer(body, "top_k") or 0
    if top_k < -1:
        raise bad_request(f"'top_k' must be -1 or 0 (no cut) or a positive integer, got {top_k}", "top_k")
    for name in ("logprobs", "top_logprobs"):
        if body.get(name) not in (None, False, 0):
            raise bad_request(f"'{name}' is not supported by this backend", name, "unsupported")
    if body.get("echo"):
        raise bad_request("'echo' is not supported by this backend", "echo", "unsupported")
    seed = _integer(body, "seed")
    n = _integer(body, "n")
    if n is not None and not 1 <= n <= MAX_N:
        raise bad_request(f"'n' must be between 1 and {MAX_N}", "n")
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object", "stream_options", "invalid_type")
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise bad_request("'stream_options.include_usage' must be a boolean", "stream_options.include_usage",
                              "invalid_type")
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=max(top_k, 0),
                            frequency_penalty=frequency, presence_penalty=presence, seed=seed,
                            stop=_stop(body), ignore_eos=_boolean(body, "ignore_eos"))
    return GenerationRequest(params, given, n or 1, stream, include_usage)


def prompts(body: dict[str, Any]) -> list[str | list[int]]:
    """`/v1/completions` prompt: a string, an array of strings, an array of token ids, or an array of those."""
    prompt = body.get("prompt")
    if prompt is None:
        raise bad_request("missing required field 'prompt'", "prompt", "missing_field")
    if isinstance(prompt, str):
        out: list[str | list[int]] = [prompt]
    elif isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        out = [list(prompt)]
    elif isinstance(prompt, list) and prompt and all(
            isinstance(p, str) or (isinstance(p, list) and p and all(_is_int(t) for t in p)) for p in prompt):
        out = list(prompt)
    elif isinstance(prompt, list) and not prompt:
        raise bad_request("'prompt' must not be empty", "prompt")
    else:
        raise bad_request("'prompt' must be a string, an array of strings or an array of token ids", "prompt",
                          "invalid_type")
    return out


def messages(body: dict[str, Any], images: bool = False) -> list[dict[str, Any]]:
    """Chat messages, with array-of-text-parts content flattened to a string for the chat template.
    With `images` (an image-text-to-text model), content arrays stay arrays of parts: text parts
    {"type": "text", "text"} and image parts {"type": "image", "url", "where"} (`where` names the part)."""
    msgs = body.get("messages")
    if msgs is None:
        raise bad_request("missing required field 'messages'", "messages", "missing_field")
    if not isinstance(msgs, list):
        raise bad_request("'messages' must be an array", "messages", "invalid_type")
    if not msgs:
        raise bad_request("'messages' must not be empty", "messages")
    out = []
    for i, msg in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"'{where}' must be an object", where, "invalid_type")
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise bad_request(f"'{where}.role' must be one of system, user, assistant, tool", f"{where}.role")
        content = msg.get("content")
        parts = _parts(content, f"{where}.content") if images and isinstance(content, list) else None
        out.append({"role": "system" if role == "developer" else role,
                    "content": parts if parts is not None else _content(content, f"{where}.content")})
    return out


def _parts(content: list[Any], where: str) -> list[dict[str, Any]]:
    from gpu_backend.images import image_url

    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            parts.append({"type": "image", "url": image_url(part, at), "where": at})
        elif kind in MEDIA_PARTS:
            raise bad_request(f"'{at}': this model takes text and image_url parts, not {kind}", at,
                              "unsupported_modality")
        else:
            raise bad_request(f"'{at}' must be a text or image_url part", at, "invalid_type")
    return parts


MEDIA_PARTS = {"image_url": "image", "image": "image", "input_image": "image", "input_audio": "audio",
               "audio": "audio", "file": "file"}
CAPABILITIES = ["text"]  # the input modalities of a text-only model (`/v1/models`)
VISION_CAPABILITIES = ["text", "image"]  # ... and of an image-text-to-text one


def refuse_media(body: dict[str, Any], model: str) -> None:
    """400 naming the model and the part when a chat message carries an image or audio part: the
    models this backend runs are text-only, and a generic "must be text parts" would not say why."""
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return
    for i, msg in enumerate(msgs):
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = MEDIA_PARTS.get(part.get("type")) if isinstance(part, dict) else None
            if kind is not None:
                where = f"messages[{i}].content[{j}]"
                raise bad_request(f"model {model} is text-only: it does not accept {kind} input ('{where}' is "
                                  f"a {part['type']} part)", where, "unsupported_modality")


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise bad_request(f"'{where}' parts must be text parts", where, "invalid_type")
            parts.append(part["text"])
        return "".join(parts)
    raise bad_request(f"'{where}' must be a string or an array of text parts", where, "invalid_type")


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if value is None:
        raise bad_request("missing required field 'input'", "input", "missing_field")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and not value:
        raise bad_request("'input' must not be empty", "input")
    raise bad_request("'input' must be a string or an array of strings", "input", "invalid_type")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
