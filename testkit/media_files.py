"""Real media files made in memory for the MessagePack and media tests: a PNG, a WAV, a GIF."""

from __future__ import annotations

import io
import struct
import wave
import zlib


def png(width: int = 4, height: int = 4, pad_bytes: int = 0) -> bytes:
    """A valid RGB PNG; `pad_bytes` of incompressible pixels make it about that much larger."""
    import random

    rng = random.Random(width * 7919 + height)
    if pad_bytes:
        width = max(width, 64)
        height = max(height, pad_bytes // (width * 3) + 1)
    rows = b"".join(b"\x00" + bytes(rng.getrandbits(8) for _ in range(width * 3)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 0))
            + chunk(b"IEND", b""))


def wav(samples: int = 800) -> bytes:
    """A valid 8 kHz mono 16-bit WAV of a ramp."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", (i * 37) % 32768) for i in range(samples)))
    return out.getvalue()


def gif() -> bytes:
    """A 1x1 GIF."""
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def photo(seed: int, width: int, height: int, fmt: str = "PNG") -> bytes:
    """A noisy RGB image in `fmt` (PNG, JPEG, WEBP, GIF) made with Pillow."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    img = Image.frombytes("RGB", (width, height), bytes(rng.getrandbits(8) for _ in range(width * height * 3)))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels (400 million for 20,000) in about 50 kB."""
    row = b"\x00" + bytes((side + 7) // 8)
    pack = zlib.compressobj(9)
    data = b"".join(pack.compress(row) for _ in range(side)) + pack.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode()
