"""A request's prompt as chained block hashes, for prefix-affinity routing (`balancer: inference`).

The prompt's canonical form is a byte stream: each chat message in order (role, then its text parts;
an image or audio part stands in as a digest of its content *as sent*, the base64 text, never
decoded). The stream is cut into fixed blocks and each block's hash covers everything before it, so
two prompts share their first k block hashes exactly when they share their first k blocks: the same
property a model server's prefix cache has. Everything is keyed by model.

The work is bounded whatever the client sends: at most `MAX_MESSAGES` messages and `MAX_BYTES` of
stream are hashed (a longer prompt routes on its first `MAX_BYTES`), and a media part costs a
constant-size sample of its text (length, head, tail and strided windows), so a 4 MB image costs
the same as a 4 KB one.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

BLOCK_BYTES = 512  # about 128 tokens of English text
MAX_BYTES = 128 * 1024  # 256 blocks, about 32k tokens
MAX_MESSAGES = 512
DIGEST_BYTES = 16  # a block hash's size (also what gateway.upstream.index_share sends per block)
_MEDIA_SAMPLE = 4096  # head and tail of a media part's text
_MEDIA_WINDOWS = 32  # strided windows of 64 characters in between
_ROLE_MARK = b"\x1e"
_PART_MARK = b"\x1f"


@dataclass(frozen=True, slots=True)
class PromptKey:
    """What the inference balancer routes on.

    `blocks`: chained digests, one per block of the canonical prompt (the last may be partial).
    `session`: a stable 64-bit key for the conversation (the client's `user` or session header when
    given, else system prompt + first user message); None when the prompt has no stable part.
    `stable`: how many of the blocks lie wholly before the first user message (the system prompt: what
    every user of a shared document or agent sends alike).
    """

    blocks: tuple[bytes, ...]
    session: int | None
    stable: int = 0


def media_digest(text: str) -> bytes:
    """A constant-cost digest of a media part's text (a data URL or base64): its length, head, tail and
    evenly spaced windows. Two different screenshots differ all through their base64, so the sample
    separates them; a collision would only mis-route a hint, never an answer."""
    n = len(text)
    h = blake2b(digest_size=DIGEST_BYTES)
    h.update(n.to_bytes(8, "little"))
    if n <= 2 * _MEDIA_SAMPLE + _MEDIA_WINDOWS * 64:
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.digest()
    h.update(text[:_MEDIA_SAMPLE].encode("utf-8", "surrogatepass"))
    h.update(text[-_MEDIA_SAMPLE:].encode("utf-8", "surrogatepass"))
    step = (n - 2 * _MEDIA_SAMPLE) // _MEDIA_WINDOWS
    for i in range(_MEDIA_WINDOWS):
        at = _MEDIA_SAMPLE + i * step
        h.update(text[at:at + 64].encode("utf-8", "surrogatepass"))
    return h.digest()


def _part_bytes(part: Any) -> bytes:
    if not isinstance(part, dict):
        return b""
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else b""
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return b"\x00img" + media_digest(url) if isinstance(url, str) else b""
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, dict) else None
        return b"\x00aud" + media_digest(data) if isinstance(data, str) else b""
    return b""


def _content_bytes(content: Any) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8", "surrogatepass")
    if isinstance(content, list):
        return _PART_MARK.join(_part_bytes(p) for p in content[:MAX_MESSAGES])
    return b""


class _Stream:
    """The canonical byte stream, stopped at `MAX_BYTES`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> bool:
        """Append; False once the stream is full (the caller stops walking the prompt)."""
        room = MAX_BYTES - self.size
        if room <= 0:
            return False
        if len(data) > room:
            data = data[:room]
        self.parts.append(data)
        self.size += len(data)
        return self.size < MAX_BYTES


def _chain(model: str, stream: bytes) -> tuple[bytes, ...]:
    h = blake2b(model.encode("utf-8", "surrogatepass")[:64], digest_size=DIGEST_BYTES)
    view = memoryview(stream)
    out = []
    for at in range(0, len(stream), BLOCK_BYTES):
        h.update(view[at:at + BLOCK_BYTES])
        out.append(h.copy().digest())
    return tuple(out)


def _session_int(model: str, data: bytes) -> int:
    h = blake2b(data, digest_size=8, key=model.encode("utf-8", "surrogatepass")[:64])
    return int.from_bytes(h.digest(), "little")


def prompt_key(model: str, body: dict[str, Any], session_hint: str | None = None) -> PromptKey | None:
    """The routing key of an OpenAI chat or completions body; None when it has no prompt to hash."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return _chat_key(model, messages, session_hint or _user_field(body))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch routes on its first prompt
    if isinstance(prompt, str) and prompt:
        data = prompt.encode("utf-8", "surrogatepass")[:MAX_BYTES]
        hint = session_hint or _user_field(body)
        return PromptKey(_chain(model, data), _session_int(model, hint.encode()) if hint else None)
    return None


def _user_field(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user else None


def _text_only(content: Any) -> bytes:
    """A message's text parts (the session key leaves media out: the agent's first screenshot is
    dropped from later steps, its task text stays)."""
    if isinstance(content, list):
        return _PART_MARK.join(_part_bytes(p) for p in content[:MAX_MESSAGES]
                               if isinstance(p, dict) and p.get("type") == "text")
    return _content_bytes(content)


def _chat_key(model: str, messages: list[Any], hint: str | None) -> PromptKey | None:
    stream = _Stream()
    session: bytes | None = None
    stable = 0
    for msg in messages[:MAX_MESSAGES]:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        role_bytes = role.encode("utf-8", "surrogatepass")[:32] if isinstance(role, str) else b"?"
        start = stream.size
        more = stream.add(_ROLE_MARK + role_bytes + _PART_MARK) and stream.add(_content_bytes(msg.get("content")))
        if session is None and role == "user":
            # System prompt + first user message: never the system prompt alone, which every session shares.
            head = b"".join(stream.parts)[:start]
            stable = start // BLOCK_BYTES
            session = head + _ROLE_MARK + role_bytes + _PART_MARK + _text_only(msg.get("content"))
        if not more:
            break
    if not stream.size:
        return None
    blocks = _chain(model, b"".join(stream.parts))
    if hint:
        return PromptKey(blocks, _session_int(model, b"\x00hint" + hint.encode("utf-8", "surrogatepass")), stable)
    return PromptKey(blocks, _session_int(model, session) if session is not None else None, stable)
