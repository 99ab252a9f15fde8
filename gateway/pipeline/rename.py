"""Write the public model name into a backend's answer, whatever name the backend put there.

Only answers of models with settings (an alias) or served by a fallback pass through here; every
other answer is passed on as the backend sent it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson


def rename_json(body: bytes, name: str) -> bytes:
    """A JSON object's top-level `model` set to `name` (anything else is returned as it is)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict) or "model" not in data:
        return body
    data["model"] = name
    return orjson.dumps(data)


async def rename_stream(chunks: AsyncIterator[bytes], name: str) -> AsyncIterator[bytes]:
    """SSE chunks with every `data:` event's `model` set to `name`. Events are rewritten whole: a
    line split across chunks waits for its end (the rest of the chunk is not held back)."""
    pending = b""
    async for chunk in chunks:
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            yield _rename_lines(data[:cut], name)
    if pending:
        yield _rename_lines(pending, name)


def _rename_lines(block: bytes, name: str) -> bytes:
    if b'"model"' not in block:
        return block
    lines = block.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data:") and b'"model"' in line:
            payload = line[5:].lstrip()
            renamed = rename_json(payload, name)
            if renamed is not payload:
                lines[i] = b"data: " + renamed
    return b"\n".join(lines)
