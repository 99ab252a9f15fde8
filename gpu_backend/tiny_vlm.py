"""Tiny random-weight vision-language models, built offline like `gpu_backend.tiny` builds text ones.

Each is a real transformers architecture (GLM-4.1V, Qwen2.5-VL, Idefics3) with a few layers, a one-block vision
tower and the byte-level tokenizer of `gpu_backend.tiny` extended with the family's special tokens and a
chat template shaped like the family's own. The directory they are saved to loads with
AutoModelForImageTextToText and `gpu_backend.vlm.load_processor`, as a downloaded checkpoint would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_backend.tiny import build_tokenizer

_IMAGE_PARTS = "{% for item in m.content %}{% if item.type == 'image' %}IMAGE{% elif item.type == 'text' %}" \
               "{{ item.text }}{% endif %}{% endfor %}"


def _template(prefix: str, turn: str, end: str, generation: str, image: str) -> str:
    """A chat template taking string or [image/text parts] content, in the family's layout."""
    parts = _IMAGE_PARTS.replace("IMAGE", image)
    return (prefix + "{% for m in messages %}" + turn + "{% if m.content is string %}{{ m.content }}"
            "{% else %}" + parts + "{% endif %}" + end + "{% endfor %}"
            "{% if add_generation_prompt %}" + generation + "{% endif %}")


IDEFICS3_IMAGE_TOKENS = 1  # per 28 px tile: (28 / 14)^2 patches, merged 2 x 2 by the connector


@dataclass(frozen=True)
class Family:
    """What differs between the architectures: tokens, template, config class and image processor."""

    arch: str
    specials: tuple[str, ...]
    eos: str
    chat_template: str


GLM4V = Family(
    "glm4v",
    ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>", "<|end_of_image|>",
     "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"),
    "<|user|>",
    _template("[gMASK]<sop>", "<|{{ m.role }}|>\n", "", "<|assistant|>\n",
              "<|begin_of_image|><|image|><|end_of_image|>"),
)
QWEN2_5_VL = Family(
    "qwen2_5_vl",
    ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
    "<|im_end|>",
    _template("", "<|im_start|>{{ m.role }}\n", "<|im_end|>\n", "<|im_start|>assistant\n",
              "<|vision_start|><|image_pad|><|vision_end|>"),
)
IDEFICS3 = Family(
    "idefics3",
    ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
     *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))),
    "<end_of_utterance>",
    _template("<|im_start|>", "{{ m.role | capitalize }}:", "<end_of_utterance>\n", "Assistant:", "<image>"),
)
FAMILIES = {f.arch: f for f in (GLM4V, QWEN2_5_VL, IDEFICS3)}


def make_tiny_vlm(out_dir: str | Path, arch: str = "glm4v", seed: int = 0, context: int = 4096) -> Path:
    """Write a random-weight image-text-to-text model of family `arch` with its processor to `out_dir`."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    family = FAMILIES[arch]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": list(family.specials)})
    tokenizer.chat_template = family.chat_template
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in family.specials}
    eos = [tokenizer.convert_tokens_to_ids(family.eos), tokenizer.eos_token_id]
    config = _config(arch, len(tokenizer), ids, context, {"bos_token_id": None, "eos_token_id": eos,
                                                           "pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    # What a checkpoint ships for its processor: tokenizer, image processor config and chat template
    # (a real one also has the video processor's config, which needs torchvision to load).
    if arch == "idefics3":  # no video part: the whole processor saves and loads as is
        from transformers import Idefics3Processor

        Idefics3Processor(_image_processor(arch), tokenizer, image_seq_len=IDEFICS3_IMAGE_TOKENS,
                          chat_template=family.chat_template).save_pretrained(out)
        return out
    tokenizer.save_pretrained(out)
    _image_processor(arch).save_pretrained(out)
    (out / "chat_template.jinja").write_text(family.chat_template)
    return out


def _config(arch: str, vocab: int, ids: dict[str, int], context: int, tokens: dict[str, Any]) -> Any:
    # Wide init (as in gpu_backend.tiny) keeps greedy decoding far from argmax ties; the small rope
    # sections fit a head dimension of 16.
    text = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": context,
            "initializer_range": 0.5, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 3, 3]}, **tokens}
    vision = {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "initializer_range": 0.5}
    if arch == "idefics3":
        from transformers import Idefics3Config

        llama = {k: v for k, v in text.items() if k != "rope_parameters"}
        return Idefics3Config(**tokens, text_config={**llama, "model_type": "llama"}, scale_factor=2,
                              vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                             "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
                                             "initializer_range": 0.5},
                              image_token_id=ids["<image>"])
    if arch == "glm4v":
        from transformers import Glm4vConfig

        # GLM rotates half of each head: 8 of 16 dimensions, 4 frequencies split over (t, h, w).
        text["rope_parameters"].update(partial_rotary_factor=0.5, mrope_section=[1, 1, 2])
        return Glm4vConfig(**tokens, text_config=text, vision_config={**vision, "image_size": 28},
                           image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                           image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
                           video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"])
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(**tokens, text_config=text, vision_config={**vision, "window_size": 56, "fullatt_block_indexes": [0]},
                            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _image_processor(arch: str) -> Any:
    from gpu_backend.vlm import image_processor_class

    if arch == "idefics3":
        # Resized to at most 56 px, cut into 28 px tiles (at most 2 x 2 plus the whole image).
        return image_processor_class(arch)(size={"longest_edge": 56}, max_image_size={"longest_edge": 28})

    # Few pixels per image: 28x28 to 112x112 (1 to 16 merged tokens).
    return image_processor_class(arch)(size={"shortest_edge": 28 * 28, "longest_edge": 112 * 112},
                                       patch_size=14, temporal_patch_size=2, merge_size=2)
