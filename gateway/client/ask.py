"""`edgegw ask`: one chat question, with images or audio, sent to a gateway as MessagePack.

    edgegw ask --image photo.jpg "What is in this picture?"

For manual tries: the files go as raw bytes (`docs/api.md`), the answer comes back as MessagePack,
and the reply's text is printed. `--json` sends the same request as JSON with base64 instead.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any

MSGPACK = "application/msgpack"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ask", help="ask a gateway one chat question, with --image/--audio files, as MessagePack")
    p.add_argument("question")
    p.add_argument("--image", action="append", default=[], type=Path, help="an image file (repeatable)")
    p.add_argument("--audio", action="append", default=[], type=Path, help="a WAV or MP3 file (repeatable)")
    p.add_argument("--model", default=None,
                   help="default: the first model the gateway lists that accepts the files given")
    p.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"),
                   help="the gateway (default: $GATEWAY_URL, else http://127.0.0.1:8080)")
    p.add_argument("--token", default=os.environ.get("TOKEN"), help="bearer token (default: $TOKEN)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--json", action="store_true", help="send JSON with base64 media instead of MessagePack")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    try:
        parts = [{"type": "text", "text": args.question}, *_media_parts(args.image, args.audio)]
    except ValueError as exc:
        print(f"edgegw ask: {exc}", file=sys.stderr)
        return 2
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=120) as client:
        need = {m for m, files in (("image", args.image), ("audio", args.audio)) if files}
        model = args.model or _pick_model(client, need)
        if model is None:
            print("edgegw ask: the gateway lists no model that accepts these files; name one with --model",
                  file=sys.stderr)
            return 2
        body = {"model": model, "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": parts}]}
        resp = _post(client, body, args.json)
    answer = _decode(resp)
    if resp.status_code != 200:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        where = f" ({error['param']})" if error.get("param") else ""
        print(f"edgegw ask: {resp.status_code}: {error.get('message', resp.text[:200])}{where}", file=sys.stderr)
        return 1
    print(answer["choices"][0]["message"]["content"])
    return 0


def _media_parts(images: list[Path], audio: list[Path]) -> list[dict[str, Any]]:
    from gateway.media.sniff import AUDIO_FORMATS, sniff

    parts: list[dict[str, Any]] = []
    for path, modality in [(p, "image") for p in images] + [(p, "audio") for p in audio]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        mime = sniff(data[:16])
        if mime is None or not mime.startswith(modality):
            raise ValueError(f"{path} is not a recognised {modality} file")
        if modality == "image":
            parts.append({"type": "image", "data": data, "mime_type": mime})
        else:
            parts.append({"type": "input_audio", "data": data, "format": AUDIO_FORMATS[mime]})
    return parts


def _pick_model(client: Any, need: set[str]) -> str | None:
    resp = client.get("/v1/models")
    if resp.status_code != 200:
        return None
    for model in resp.json().get("data", []):
        if need <= set(model.get("capabilities", ["text"])):
            return str(model["id"])
    return None


def _post(client: Any, body: dict[str, Any], as_json: bool) -> Any:
    if as_json:
        for part in body["messages"][0]["content"]:
            if part["type"] == "image":
                url = f"data:{part.pop('mime_type')};base64,{base64.b64encode(part.pop('data')).decode()}"
                part.update(type="image_url", image_url={"url": url})
            elif part["type"] == "input_audio":
                part["input_audio"] = {"data": base64.b64encode(part.pop("data")).decode(),
                                       "format": part.pop("format")}
        return client.post("/v1/chat/completions", json=body)
    import msgpack

    return client.post("/v1/chat/completions", content=msgpack.packb(body, use_bin_type=True),
                       headers={"content-type": MSGPACK, "accept": MSGPACK})


def _decode(resp: Any) -> Any:
    import msgpack

    try:
        if resp.headers.get("content-type", "").startswith(MSGPACK):
            return msgpack.unpackb(resp.content)
        return resp.json()
    except ValueError:
        return {}
