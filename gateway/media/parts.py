"""Find, check and convert the media parts of one chat request.

Two spellings reach the gateway. MessagePack clients send raw bytes:
`{"type": "image", "data": <bin>, "mime_type": "image/png"}` and
`{"type": "input_audio", "data": <bin>, "format": "wav"}`; these become OpenAI's parts
(`image_url` with a `data:` URL, `input_audio` with base64 `data`), so any OpenAI-compatible backend
understands them. JSON clients (and MessagePack ones) may send OpenAI's parts themselves; those pass
unchanged, but are held to the same limits: their base64 is measured, and its first bytes decoded
and sniffed, without decoding the rest.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import bad_request
from gateway.media.config import MediaLimits
from gateway.media.sniff import AUDIO_FORMATS, FORMAT_MIME, SNIFF_BYTES, normalise, sniff

_SNIFF_CHARS = (SNIFF_BYTES + 2) // 3 * 4  # base64 characters that decode to the sniffed prefix
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986


@dataclass(slots=True)
class MediaFound:
    """What a request's media parts add up to."""

    parts: int = 0
    decoded_bytes: int = 0
    wire_bytes: int = 0  # what the media occupies of the request body as received (bin or base64)
    modalities: dict[str, str] = field(default_factory=dict)  # "image"/"audio" -> first part's field name


def scan(messages: list[Any], limits: MediaLimits) -> MediaFound:
    """Check every media part against `limits`, converting binary parts in place. 400 names the field."""
    found = MediaFound()
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind not in ("image", "input_audio", "image_url"):
                continue
            where = f"messages[{i}].content[{j}]"
            found.parts += 1
            if found.parts > limits.max_parts:
                raise bad_request(f"too many media parts: at most {limits.max_parts} per request on this route",
                                  param=where, code="too_many_media_parts")
            converted = _check_part(part, kind, where, limits, found)
            if converted is not None:
                content[j] = converted
    return found


def _check_part(part: dict[str, Any], kind: str, where: str, limits: MediaLimits,
                found: MediaFound) -> dict[str, Any] | None:
    if kind == "image":
        return _binary_image(part, where, limits, found)
    if kind == "input_audio" and "data" in part:
        return _binary_audio(part, where, limits, found)
    if kind == "input_audio":
        _json_audio(part, where, limits, found)
    else:
        _json_image(part, where, limits, found)
    return None


def _binary_image(part: dict[str, Any], where: str, limits: MediaLimits, found: MediaFound) -> dict[str, Any]:
    data = _bytes(part, where)
    declared = part.get("mime_type")
    if declared is not None and not isinstance(declared, str):
        raise bad_request(f"'{where}.mime_type' must be a string", param=f"{where}.mime_type", code="invalid_type")
    mime = _sniffed(data[:SNIFF_BYTES], declared, f"{where}.mime_type" if declared else f"{where}.data",
                    limits, "image")
    _count(found, len(data), len(data), where, limits, "image")
    image_url: dict[str, Any] = {"url": f"data:{mime};base64,{_b64(data)}"}
    detail = part.get("detail")
    if detail is not None:
        if not isinstance(detail, str):
            raise bad_request(f"'{where}.detail' must be a string", param=f"{where}.detail", code="invalid_type")
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def _binary_audio(part: dict[str, Any], where: str, limits: MediaLimits, found: MediaFound) -> dict[str, Any]:
    data = _bytes(part, where)
    fmt = part.get("format")
    if not isinstance(fmt, str) or fmt not in FORMAT_MIME:
        raise bad_request(f"'{where}.format' must be one of {', '.join(FORMAT_MIME)}", param=f"{where}.format",
                          code="invalid_value")
    mime = _sniffed(data[:SNIFF_BYTES], FORMAT_MIME[fmt], f"{where}.format", limits, "audio")
    _count(found, len(data), len(data), where, limits, "audio")
    return {"type": "input_audio", "input_audio": {"data": _b64(data), "format": AUDIO_FORMATS[mime]}}


def _json_image(part: dict[str, Any], where: str, limits: MediaLimits, found: MediaFound) -> None:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    field_name = f"{where}.image_url.url" if isinstance(image_url, dict) else f"{where}.image_url"
    if not isinstance(url, str):
        raise bad_request(f"'{field_name}' must be a string", param=field_name, code="invalid_type")
    scheme = _scheme(url)
    if scheme != "data":
        if scheme not in limits.remote_urls:
            accepted = ", ".join(f"{s}:" for s in ("data", *limits.remote_urls))
            raise bad_request(f"'{field_name}': {scheme + ': URLs are' if scheme else 'a URL without a scheme is'} "
                              f"not accepted on this route (accepted: {accepted})", param=field_name,
                              code="unsupported_url_scheme")
        found.modalities.setdefault("image", where)  # a remote image: the backend fetches it
        return
    head, comma, payload = url.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        raise bad_request(f"'{field_name}' must be a base64 data URL (data:MIME;base64,...)", param=field_name,
                          code="invalid_value")
    _sniffed(_b64_head(payload, field_name), head[5:-7], field_name, limits, "image")
    _count(found, _b64_size(payload), len(payload), where, limits, "image")


def _json_audio(part: dict[str, Any], where: str, limits: MediaLimits, found: MediaFound) -> None:
    audio = part.get("input_audio")
    if not isinstance(audio, dict):
        raise bad_request(f"'{where}.input_audio' must be an object", param=f"{where}.input_audio",
                          code="invalid_type")
    data, fmt = audio.get("data"), audio.get("format")
    if not isinstance(data, str):
        raise bad_request(f"'{where}.input_audio.data' must be a base64 string", param=f"{where}.input_audio.data",
                          code="invalid_type")
    if not isinstance(fmt, str) or fmt not in FORMAT_MIME:
        raise bad_request(f"'{where}.input_audio.format' must be one of {', '.join(FORMAT_MIME)}",
                          param=f"{where}.input_audio.format", code="invalid_value")
    _sniffed(_b64_head(data, f"{where}.input_audio.data"), FORMAT_MIME[fmt], f"{where}.input_audio.format",
             limits, "audio")
    _count(found, _b64_size(data), len(data), where, limits, "audio")


def _bytes(part: dict[str, Any], where: str) -> bytes:
    data = part.get("data")
    if not isinstance(data, bytes):
        raise bad_request(f"'{where}.data' must be binary (MessagePack bin) holding the file's bytes",
                          param=f"{where}.data", code="invalid_type")
    if not data:
        raise bad_request(f"'{where}.data' is empty", param=f"{where}.data", code="invalid_value")
    return data


def _sniffed(head: bytes, declared: str | None, field_name: str, limits: MediaLimits, modality: str) -> str:
    """The part's real MIME type; 400 when the bytes are not what the part says, or not allowed here."""
    actual = sniff(head)
    if actual is None or not actual.startswith(modality):
        raise bad_request(f"'{field_name}': the bytes are not a recognised {modality} format", param=field_name,
                          code="invalid_media")
    if declared is not None and normalise(declared) != actual:
        raise bad_request(f"'{field_name}' says {declared} but the bytes are {actual}", param=field_name,
                          code="media_type_mismatch")
    if actual not in limits.mime_types:
        raise bad_request(f"'{field_name}': {actual} is not accepted on this route "
                          f"(accepted: {', '.join(limits.mime_types) or 'none'})", param=field_name,
                          code="unsupported_media_type")
    return actual


def _count(found: MediaFound, decoded: int, wire: int, where: str, limits: MediaLimits, modality: str) -> None:
    found.decoded_bytes += decoded
    found.wire_bytes += wire
    found.modalities.setdefault(modality, where)
    if found.decoded_bytes > limits.max_bytes:
        raise bad_request(f"'{where}': media in this request exceed {limits.max_bytes} bytes on this route",
                          param=where, code="media_too_large")


def _scheme(url: str) -> str:
    """The URL's scheme in lower case (schemes are case-insensitive); "" when it has none that is valid
    (no colon, or other characters before it: a leading space, a path)."""
    scheme, colon, _ = url.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return ""
    return scheme.lower()


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64_head(payload: str, field_name: str) -> bytes:
    try:
        return binascii.a2b_base64(payload[:_SNIFF_CHARS].encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise bad_request(f"'{field_name}' is not valid base64", param=field_name, code="invalid_value") from None


def _b64_size(payload: str) -> int:
    """Decoded size of a base64 string, without decoding it."""
    pad = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return len(payload) * 3 // 4 - pad
