"""A chat request for an image-text-to-text model -> prompt ids and the processor's image arrays.

Runs in the HTTP process, like tokenization for text models: the image parts are checked and decoded
(gpu_backend.images), the messages rendered with the model's chat template, and the processor expands
each image into its placeholder tokens and computes its pixel arrays. Usage counts those placeholders
as prompt tokens, as OpenAI and vLLM do.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu_backend.errors import bad_request
from gpu_backend.images import ImageLimits, decode_image, image_bytes
from gpu_backend.validation import messages


@dataclass(frozen=True)
class VisionPrompt:
    """One prompt: its ids (image placeholders included), the arrays the engine passes to the model at
    prefill (numpy: they cross the pipe to the engine process), and the digest of its images' bytes
    (what a prefix cache keys the images by: same ids, other pixels must not match; see `cache_key`)."""

    ids: list[int]
    arrays: dict[str, np.ndarray] | None
    images: int
    digest: str
    image_token_id: int | None = None

    def cache_key(self) -> tuple[Any, ...]:
        """One hashable item per position for a prefix cache: the token ids, except that the k-th image
        placeholder becomes ("image", digest, k). Placeholder ids are the same for every image; keyed by
        the digest of all this prompt's images, two prompts share a prefix through an image only when
        their images are the same bytes (a prompt whose later images differ shares only the text before
        its first image: conservative, never wrong)."""
        if not self.images or self.image_token_id is None:
            return tuple(self.ids)
        key: list[Any] = []
        k = 0
        for t in self.ids:
            if t == self.image_token_id:
                key.append(("image", self.digest, k))
                k += 1
            else:
                key.append(t)
        return tuple(key)


async def vision_prompt(processor: Any, body: dict[str, Any], limits: ImageLimits) -> VisionPrompt:
    msgs = messages(body, images=True)
    image_parts = [p for m in msgs if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"]
    if len(image_parts) > limits.max_images:
        where = image_parts[limits.max_images]["where"]
        raise bad_request(f"'{where}': at most {limits.max_images} images per request (this one has "
                          f"{len(image_parts)}); see --limit-mm-per-prompt", where, "too_many_images")
    datas = [await image_bytes(p["url"], p["where"], limits) for p in image_parts]
    images = await asyncio.to_thread(lambda: [decode_image(d, p["where"], limits)
                                              for d, p in zip(datas, image_parts, strict=True)])
    for m in msgs:  # the template sees {"type": "image"} placeholders; the pixels go to the processor
        if isinstance(m["content"], list):
            m["content"] = [{"type": "image"} if p["type"] == "image" else p for p in m["content"]]
    try:
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # no template, or the template rejects the roles given
        raise bad_request(f"cannot apply the model's chat template: {exc}", "messages") from exc
    try:
        out = await asyncio.to_thread(processor, text=[text], images=images or None, return_tensors="np")
    except Exception as exc:  # e.g. an image the processor cannot resize (an extreme aspect ratio)
        raise bad_request(f"the model's processor refused the request: {exc}", "messages",
                          "invalid_image") from exc
    ids = [int(t) for t in out["input_ids"][0]]
    arrays = {k: np.asarray(v) for k, v in out.items() if k not in ("input_ids", "attention_mask")}
    digest = hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in datas)).hexdigest()
    return VisionPrompt(ids, arrays if images else None, len(images), digest,
                        getattr(processor, "image_token_id", None))
