"""Image parts of chat messages: data: URLs (and, when enabled, remote URLs) to checked RGB images.

Every refusal is a 400 naming the part. Limits, as vLLM's: images per request (--limit-mm-per-prompt)
and pixels per image (checked from the header before any pixel is decoded, so a 20,000 x 20,000 PNG
of a few kilobytes costs nothing). Only PNG, JPEG and WebP are accepted, judged by the bytes, not by
what the URL claims.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from gpu_backend.errors import bad_request

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ImageLimits:
    """Per-request image limits (`edgegw backend --limit-mm-per-prompt`, `--max-image-pixels`, ...)."""

    max_images: int = 8
    max_pixels: int = 12_845_056  # Qwen2.5-VL's max_pixels (16384 * 28 * 28): a 4K screenshot fits
    allow_remote: bool = False
    remote_max_bytes: int = 10 * 1024 * 1024
    remote_timeout_s: float = 5.0


def image_url(part: dict[str, Any], where: str) -> str:
    """The URL of an OpenAI `image_url` part (`{"image_url": {"url": ...}}`, or the URL as a string)."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request(f"'{where}.image_url.url' must be a data: URL or an http(s) URL", f"{where}.image_url.url",
                          "invalid_type")
    return url


async def image_bytes(url: str, where: str, limits: ImageLimits) -> bytes:
    """The bytes behind a data: URL, or behind an http(s) URL when remote images are enabled."""
    if url.startswith("data:"):
        return _data_url(url, where)
    if url.startswith(("http://", "https://")):
        if not limits.allow_remote:
            raise bad_request(f"'{where}': remote image URLs are not enabled on this backend (send the image as a "
                              "data: URL, or start it with --allow-remote-images)", where, "remote_image_disabled")
        return await _fetch(url, where, limits)
    raise bad_request(f"'{where}': the image URL must be a data: URL" +
                      (" or an http(s) URL" if limits.allow_remote else ""), where, "invalid_image_url")


def _data_url(url: str, where: str) -> bytes:
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise bad_request(f"'{where}': a data: URL must be data:image/...;base64,DATA", where, "invalid_image_url")
    mime = head[5:-7].lower()
    if mime not in FORMATS.values():
        raise bad_request(f"'{where}': images must be PNG, JPEG or WebP, not {mime or 'unlabelled data'}", where,
                          "unsupported_image_format")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"'{where}': the data: URL is not valid base64", where, "invalid_image") from None


async def _fetch(url: str, where: str, limits: ImageLimits) -> bytes:
    import httpx

    body = bytearray()
    try:
        async with httpx.AsyncClient(timeout=limits.remote_timeout_s, follow_redirects=False) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise bad_request(f"'{where}': fetching the image gave HTTP {resp.status_code}", where,
                                      "image_fetch_failed")
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > limits.remote_max_bytes:
                        raise bad_request(f"'{where}': the image is larger than {limits.remote_max_bytes} bytes",
                                          where, "image_too_large")
    except httpx.HTTPError as exc:
        raise bad_request(f"'{where}': fetching the image failed ({type(exc).__name__}; limit "
                          f"{limits.remote_timeout_s:g} s)", where, "image_fetch_failed") from None
    return bytes(body)


def decode_image(data: bytes, where: str, limits: ImageLimits) -> Any:
    """A fully decoded RGB PIL image, or a 400: not an image, not PNG/JPEG/WebP, too many pixels, corrupt."""
    from PIL import Image, UnidentifiedImageError

    # `limits.max_pixels`, checked below from the header, replaces Pillow's own bomb check (which would
    # refuse without saying the size, and warn on sizes the limit allows).
    Image.MAX_IMAGE_PIXELS = None
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        raise bad_request(f"'{where}' is not a readable image", where, "invalid_image") from None
    if img.format not in FORMATS:
        raise bad_request(f"'{where}': images must be PNG, JPEG or WebP, not {img.format or 'unknown'}", where,
                          "unsupported_image_format")
    width, height = img.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(where, (width, height), limits)
    try:
        img.load()
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError):
        raise bad_request(f"'{where}': the {img.format} image is corrupt or truncated", where,
                          "invalid_image") from None


def _too_many_pixels(where: str, size: tuple[int, int], limits: ImageLimits) -> Exception:
    dims = f"{size[0]:,} x {size[1]:,} = {size[0] * size[1]:,} pixels"
    return bad_request(f"'{where}': the image has {dims}; at most {limits.max_pixels:,} per image", where,
                       "image_too_large")
