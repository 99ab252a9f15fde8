"""Image-text-to-text models: telling them from text-only ones, and loading model + processor.

The model is transformers' own (AutoModelForImageTextToText) and so is the processor (AutoProcessor: the
family's image processor, tokenizer and chat template). One exception: processors of families that also
take video (GLM-4.1V, Qwen2.5-VL, SmolVLM) need torchvision for their video processor, even for images.
Where torchvision is missing, `load_processor` builds the same processor class without the video part
(`image_only`): images go through exactly the same code, videos are not accepted anyway.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


def is_vision_model(model_dir: Path) -> bool:
    """Whether `model_dir`'s config is an image-text-to-text architecture (GLM-4.1V, Qwen2.5-VL,
    Idefics3/SmolVLM, ...), judged by transformers' own mapping of model types."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load_vision_model(model_dir: Path, device: Any, dtype: Any) -> tuple[Any, Any]:
    """Model (eval mode, on `device`) and its tokenizer from a local directory; never the hub."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
    return model.to(device).eval(), load_processor(model_dir).tokenizer


def load_processor(model_dir: Path) -> Any:
    """The model's processor (image processor + tokenizer + chat template) from `model_dir`."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available() or "video_processor" not in _processor_class(model_dir).get_attributes():
        return AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    images = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    return image_only(_processor_class(model_dir))(image_processor=images, tokenizer=tokenizer,
                                                   video_processor=None, chat_template=_chat_template(model_dir, tokenizer))


def _chat_template(model_dir: Path, tokenizer: Any) -> str | None:
    """Where checkpoints keep a processor's template: chat_template.jinja, or the older chat_template.json."""
    jinja, legacy = model_dir / "chat_template.jinja", model_dir / "chat_template.json"
    if jinja.exists():
        return jinja.read_text()
    if legacy.exists():
        template = json.loads(legacy.read_text()).get("chat_template")
        if isinstance(template, str):
            return template
    return tokenizer.chat_template


def _processor_class(model_dir: Path) -> Any:
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    return getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type])


PROCESSOR_KWARGS = ("max_pixels", "min_pixels")


def apply_processor_kwargs(processor: Any, kwargs: dict[str, int]) -> None:
    """vLLM's `--mm-processor-kwargs` for the keys GLM-4.1V and Qwen2.5-VL deployments use: `max_pixels` and
    `min_pixels`, the pixel-count bounds their image processors resize each image into (`size.longest_edge`
    and `size.shortest_edge` there). Raises ValueError for other keys or another kind of image processor."""
    unknown = sorted(set(kwargs) - set(PROCESSOR_KWARGS))
    if unknown:
        raise ValueError(f"--mm-processor-kwargs: unsupported key(s) {unknown}; supported: {list(PROCESSOR_KWARGS)}")
    if not kwargs:
        return
    images = processor.image_processor
    size = images.size
    current = {k: size.get(k) if isinstance(size, dict) else getattr(size, k, None)
               for k in ("shortest_edge", "longest_edge")}
    if None in current.values():
        raise ValueError(f"--mm-processor-kwargs: {type(images).__name__} does not bound images by pixel count "
                         "(max_pixels/min_pixels apply to GLM-4.1V and Qwen2.5-VL)")
    images.size = {"shortest_edge": int(kwargs.get("min_pixels", current["shortest_edge"])),
                   "longest_edge": int(kwargs.get("max_pixels", current["longest_edge"]))}


@cache
def image_only(cls: type) -> type:
    """`cls` (a processor class with a video processor) that may be built with video_processor=None."""

    class ImageOnly(cls):  # type: ignore[valid-type,misc]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    return ImageOnly


def image_processor_class(arch: str) -> Any:
    """The image processor class of a family that works without torchvision (`gpu_backend.tiny_vlm`)."""
    import transformers

    name = {"glm4v": "Glm4vImageProcessor", "qwen2_5_vl": "Qwen2VLImageProcessor",
            "idefics3": "Idefics3ImageProcessor"}[arch]
    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)
