"""Image parts in process: data: URLs, remote URLs (off by default; size and time capped when on, against
a real HTTP server on loopback) and the decoder's refusals, each an APIError naming the part."""

from __future__ import annotations

import asyncio

import pytest

from gpu_backend.errors import APIError
from gpu_backend.images import ImageLimits, decode_image, image_bytes
from testkit.media_files import data_url, gif, photo, png_bomb

WHERE = "messages[0].content[1]"


def _code(exc: pytest.ExceptionInfo[APIError]) -> str:
    assert exc.value.status == 400 and exc.value.param == WHERE and WHERE in exc.value.message
    return str(exc.value.code)


async def _serve(body: bytes, delay: float = 0.0) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(delay)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/shot.png"


def test_remote_urls_are_refused_unless_enabled_then_capped() -> None:
    image = photo(1, 40, 40)

    async def run() -> None:
        server, url = await _serve(image)
        slow, slow_url = await _serve(image, delay=2.0)
        try:
            with pytest.raises(APIError) as off:
                await image_bytes(url, WHERE, ImageLimits())
            assert _code(off) == "remote_image_disabled"
            assert await image_bytes(url, WHERE, ImageLimits(allow_remote=True)) == image
            with pytest.raises(APIError) as big:
                await image_bytes(url, WHERE, ImageLimits(allow_remote=True, remote_max_bytes=len(image) - 1))
            assert _code(big) == "image_too_large"
            with pytest.raises(APIError) as late:
                await image_bytes(slow_url, WHERE, ImageLimits(allow_remote=True, remote_timeout_s=0.3))
            assert _code(late) == "image_fetch_failed"
        finally:
            server.close()
            slow.close()

    asyncio.run(run())


@pytest.mark.parametrize(("data", "limits", "code"), [
    (photo(2, 64, 48)[:150], ImageLimits(), "invalid_image"),
    (b"not an image at all", ImageLimits(), "invalid_image"),
    (gif(), ImageLimits(), "unsupported_image_format"),
    (png_bomb(), ImageLimits(), "image_too_large"),
    (photo(3, 64, 48), ImageLimits(max_pixels=64 * 48 - 1), "image_too_large"),
])
def test_decoder_refusals(data: bytes, limits: ImageLimits, code: str) -> None:
    with pytest.raises(APIError) as exc:
        decode_image(data, WHERE, limits)
    assert _code(exc) == code


def test_png_jpeg_webp_decode_to_rgb_and_data_urls_must_say_image() -> None:
    for fmt in ("PNG", "JPEG", "WEBP"):
        img = decode_image(photo(4, 30, 20, fmt), WHERE, ImageLimits())
        assert img.mode == "RGB" and img.size == (30, 20)
    assert asyncio.run(image_bytes(data_url(b"abc"), WHERE, ImageLimits())) == b"abc"
    for url in (data_url(b"abc", "text/plain"), "data:image/png,raw", "ftp://host/x.png"):
        with pytest.raises(APIError) as exc:
            asyncio.run(image_bytes(url, WHERE, ImageLimits()))
        assert _code(exc) in ("unsupported_image_format", "invalid_image_url")


@pytest.mark.parametrize(("flag", "count"), [("image=3", 3), ('{"image": 10}', 10), ("image=0", 0)])
def test_limit_mm_per_prompt_takes_vllms_two_spellings(flag: str, count: int) -> None:
    from gateway.cli import build_parser
    from gpu_backend.cli import _image_limits

    args = build_parser().parse_args(["backend", "--model", "m", "--limit-mm-per-prompt", flag,
                                      "--max-image-pixels", "1000", "--allow-remote-images"])
    limits = _image_limits(args)
    assert (limits.max_images, limits.max_pixels, limits.allow_remote) == (count, 1000, True)
    with pytest.raises(SystemExit, match="limit-mm-per-prompt"):
        _image_limits(build_parser().parse_args(["backend", "--model", "m", "--limit-mm-per-prompt", "img:3"]))


def test_mm_processor_kwargs_flag_takes_pixel_bounds_only() -> None:
    from gpu_backend.cli import _processor_kwargs

    assert _processor_kwargs('{"max_pixels": 5000000}') == {"max_pixels": 5000000}
    assert _processor_kwargs(None) == {}
    for bad in ('{"fps": 2}', "max_pixels=5", '{"max_pixels": -1}'):
        with pytest.raises(SystemExit, match="mm-processor-kwargs"):
            _processor_kwargs(bad)
