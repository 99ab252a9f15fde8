"""Config for media parts: per-route limits (`routes[].media`) and which pool models accept media."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import cast

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import RouteConfig
from gateway.media.sniff import normalise

DEFAULT_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "audio/wav", "audio/mpeg")
KNOWN_MIME_TYPES = DEFAULT_MIME_TYPES
REMOTE_SCHEMES = ("http", "https")  # the only schemes a route may let through; the backend fetches them
DEFAULT_REMOTE_URLS = ("https",)


@dataclass(frozen=True)
class MediaLimits:
    """What one request may carry in media parts on a route (the defaults apply without `media:`)."""

    max_bytes: int = 4 << 20  # decoded media bytes per request, all parts together
    max_parts: int = 8  # image and audio parts per request, remote URLs included
    mime_types: tuple[str, ...] = DEFAULT_MIME_TYPES  # checked against the sniffed type
    remote_urls: tuple[str, ...] = DEFAULT_REMOTE_URLS  # schemes of image URLs forwarded for the backend to fetch


DEFAULT_LIMITS = MediaLimits()
NAME = "media"


def route_limits(route: RouteConfig) -> MediaLimits:
    """A route's media limits (the defaults without `media:`)."""
    return cast(MediaLimits, route.sections.get(NAME, DEFAULT_LIMITS))


def parse_route_part(route: Section, frame: Frame) -> MediaLimits | None:
    return parse_media_limits(route.section("media")) if route.has("media") else None


def parse_media_limits(sec: Section) -> MediaLimits:
    mime_types = tuple(normalise(m) for m in sec.str_list("mime_types", list(DEFAULT_MIME_TYPES)))
    for mime in mime_types:
        if mime not in KNOWN_MIME_TYPES:
            raise sec.error("mime_types", f"{mime!r} cannot be recognised by its bytes "
                                          f"(known: {', '.join(KNOWN_MIME_TYPES)})")
    remote_urls = tuple(s.lower() for s in sec.str_list("remote_urls", list(DEFAULT_REMOTE_URLS)))
    for scheme in remote_urls:
        if scheme not in REMOTE_SCHEMES:
            raise sec.error("remote_urls", f"{scheme!r} URLs are never forwarded (choose from "
                                           f"{', '.join(REMOTE_SCHEMES)}, or [] for none)")
    limits = MediaLimits(
        max_bytes=sec.int("max_bytes", 4 << 20, min=0, max=1 << 30),
        max_parts=sec.int("max_parts", 8, min=0, max=256),
        mime_types=mime_types,
        remote_urls=remote_urls,
    )
    sec.done()
    return limits


def accepts(patterns: tuple[str, ...], model: str | None) -> bool:
    """Whether `model` matches one of a pool's `image_models` / `audio_models` patterns."""
    return model is not None and any(fnmatchcase(model, p) for p in patterns)


def modalities(image_models: tuple[str, ...], audio_models: tuple[str, ...], model: str) -> list[str]:
    """The input modalities a model accepts, as `/v1/models` lists them under `capabilities`."""
    out = ["text"]
    if accepts(image_models, model):
        out.append("image")
    if accepts(audio_models, model):
        out.append("audio")
    return out
