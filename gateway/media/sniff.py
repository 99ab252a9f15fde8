"""Identify media by its magic bytes: a part's declared type is never trusted on its own."""

from __future__ import annotations

SNIFF_BYTES = 12  # enough for every signature below (RIFF containers name their kind at 8..12)

# MIME type -> the input_audio `format` OpenAI uses for it (audio only)
AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}
FORMAT_MIME = {fmt: mime for mime, fmt in AUDIO_FORMATS.items()}
ALIASES = {"image/jpg": "image/jpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
           "audio/mp3": "audio/mpeg"}


def sniff(head: bytes) -> str | None:
    """The MIME type the first bytes of a file show, or None when none of the known kinds."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def normalise(mime: str) -> str:
    """Lower-cased, parameters dropped, common aliases folded (`image/jpg` is `image/jpeg`)."""
    base = mime.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)
